#!/usr/bin/env python3
"""`wlbridge attach --dhcp` (issue 22), root: attach -> reachable from the LAN peer beside
the DHCP exchange itself; attach/detach cycles leaving nothing behind.

The emulated one-MAC LAN with the real `wlbridge setup` / `wlbridge run`, no guests wired by
the topology.  A fresh network namespace per run is attached with the real command (`wlbridge
attach NAME --netns NS --dhcp`), timed until the LAN peer's ping of its leased address is
answered (target: median <= 1.5 s); the floor beside it is one DHCP exchange (busybox udhcpc
until bound) through wlbridge in a namespace already attached.  Then ``--cycles`` attach
--dhcp / detach cycles of one namespace, and what they left: ports, flows, bindings, meters,
DHCP leases (the server's lease file).

    sudo .venv/bin/python bench/bench_attach.py [--runs 10] [--cycles 100] [--json FILE]
"""

from __future__ import annotations

import subprocess
import sys
import time

from common import (
    Bench,
    base_parser,
    dhcp_exchange,
    flows,
    left_behind,
    machine,
    meters,
    settle,
    summary,
    table,
    unreleased,
    wait_until,
    write_json,
)
from harness import wlbridge as wlbridge_cli

TARGET_S = 1.5


def ns_ipv4(ns: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=False).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else ""


def main() -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="attach -> reachable, median of")
    ap.add_argument("--cycles", type=int, default=100, help="attach/detach cycles")
    args = ap.parse_args()
    bench = Bench(keep_logs=args.keep_logs)
    bench.require_root()
    result: dict = {"machine": machine()}
    made: list[str] = []
    try:
        world = bench.world(n_guests=0)
        peer = world.peers[0]
        wl = bench.wlbridge(world, guests=[])
        run_dir = bench.workdir / "attach-run"
        leases0 = {lease.mac for lease in world.leases()}
        result["dhcp_exchange"] = dhcp_exchange(world, wl, run_dir, args.runs)
        print(f"  DHCP exchange: {result['dhcp_exchange']}", flush=True)
        # the baseline after the first leases: the LAN's subnet-directed broadcast flow
        # (one per LAN, made once a DHCP reply has told the subnet) is no guest's leftover
        flows0, meters0 = flows(wl.bridge), meters(wl.bridge)

        def attach(name: str) -> None:
            wlbridge_cli("attach", name, "--bridge", wl.bridge, "--netns", name, "--dhcp",
                         "--lease-timeout", "20", "--run-dir", str(run_dir))

        def detach(name: str) -> None:
            wlbridge_cli("detach", name, "--bridge", wl.bridge)

        times, log0 = [], len(world.dnsmasq_log())
        for i in range(args.runs):
            name = f"{world.prefix}a{i}"
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
            t0 = time.monotonic()
            attach(name)
            ip = ns_ipv4(name)
            wait_until(lambda ip=ip: ip and peer.ping(ip, count=1, timeout=1), timeout=30,
                       what=f"{name} reachable")
            times.append(time.monotonic() - t0)
            detach(name)
            print(f"  run {i + 1}: {times[-1]:.2f}s", flush=True)
        result["attach_to_reachable"] = summary(times)
        settle(world, wl, leases0)
        result["runs_never_released"] = len(set(unreleased(world, log0)) - leases0)

        name = f"{world.prefix}cy"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        t0, log0 = time.monotonic(), len(world.dnsmasq_log())
        for _ in range(args.cycles):
            attach(name)
            detach(name)
        cycles_s = time.monotonic() - t0
        settle(world, wl, leases0)
        result["cycles"] = {"cycles": args.cycles, "seconds": round(cycles_s, 1),
                            "left": left_behind(world, wl, flows0, meters0, leases0, log0)}
        print(f"  cycles: {result['cycles']}", flush=True)
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)
        bench.close()
    rows = [[what, *(f"{s[k]:.2f}" for k in ("median", "min", "max")), s["n"]]
            for what, s in (("wlbridge attach --dhcp -> reachable from the LAN peer",
                             result["attach_to_reachable"]),
                            ("the DHCP exchange through wlbridge (floor)",
                             result["dhcp_exchange"]))]
    print()
    print(table("attach (s)", ["", "median", "min", "max", "runs"], rows))
    ok = (result["attach_to_reachable"]["median"] <= TARGET_S
          and not result["runs_never_released"] and not any(result["cycles"]["left"].values()))
    print(f"\nleases never released after the {args.runs} runs: "
          f"{result['runs_never_released']}\ncycles left behind: {result['cycles']['left']}\n"
          f"targets (median <= {TARGET_S} s, nothing left): {'met' if ok else 'NOT met'}")
    result["met"] = ok
    write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
