#!/usr/bin/env python3
"""Containers through the Docker plugin (issue 23), root: `docker run` -> reachable from the
LAN peer; a burst of containers started at once; run/rm cycles leaving nothing behind.

A private dockerd (no iptables, no default bridge, vfs storage) and `wlbridge docker-plugin` on
the emulated one-MAC LAN, as in tests/integration/test_docker_plugin.py.  The baseline is the
same `docker run` with `--network none` (the runtime's own floor): Docker's default bridge
(NAT) needs iptables rules on the host, which this benchmark does not touch.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Bench, base_parser, machine, summary, table, wait_until, write_json
from runtimes import Docker, DockerPlugin, busybox_tar, close

from topologies.ovs import ofctl, vsctl


def guest_ports(bridge: str) -> list[str]:
    return [p for p in vsctl("list-ports", bridge).split() if p.startswith("wl-")]


def meters(bridge: str) -> int:
    out = ofctl("-O", "OpenFlow13", "dump-meters", bridge)
    return sum(1 for line in out.splitlines() if "meter=" in line)


def flows(bridge: str) -> int:
    return sum(1 for line in ofctl("-O", "OpenFlow13", "dump-flows", bridge).splitlines()
               if "cookie=" in line)


def docker_leases(world) -> int:
    """The DHCP server's leases of Docker's MACs (02:42:…), the station's own left out."""
    return sum(1 for lease in world.leases() if lease.mac.startswith("02:42:"))


def ip_of_container(docker: Docker, name: str) -> str:
    pid = docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", "ip", "-4", "-o",
                          "addr", "show", "dev", "eth0"], capture_output=True, text=True,
                         check=False).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else ""


def main() -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="docker run -> reachable, median of")
    ap.add_argument("--burst", type=int, default=50, help="containers started at once")
    ap.add_argument("--cycles", type=int, default=100, help="run/rm cycles")
    args = ap.parse_args()
    bench = Bench(keep_logs=args.keep_logs)
    bench.require_root()
    result: dict = {"machine": machine()}
    base = Path(tempfile.mkdtemp(prefix="xct-bench-"))
    docker = plugin = None
    try:
        world = bench.world(n_guests=0)
        peer = world.peers[0]
        wl = bench.wlbridge(world, guests=[])
        docker, plugin = Docker(base), DockerPlugin(wl.bridge, world.prefix, base)
        plugin.start()
        docker.start()
        docker("import", str(busybox_tar(base)), "xct-busybox")
        docker("network", "create", "-d", world.prefix, "--ipam-driver", world.prefix, "wl")

        def run_reachable(name: str) -> float:
            t0 = time.monotonic()
            docker("run", "-d", "--name", name, "--network", "wl", "xct-busybox", "sleep",
                   "3600")
            ip = ip_of_container(docker, name)
            wait_until(lambda: peer.ping(ip, count=1, timeout=1), timeout=30,
                       what=f"{name} reachable")
            return time.monotonic() - t0

        def run_none(name: str) -> float:
            t0 = time.monotonic()
            docker("run", "-d", "--name", name, "--network", "none", "xct-busybox", "sleep",
                   "3600")
            return time.monotonic() - t0

        reach, none = [], []
        for i in range(args.runs):
            none.append(run_none(f"n{i}"))
            reach.append(run_reachable(f"r{i}"))
            docker("rm", "-f", f"n{i}", f"r{i}")
            print(f"  run {i + 1}: wlbridge {reach[-1]:.2f}s, --network none {none[-1]:.2f}s",
                  flush=True)
        wait_until(lambda: guest_ports(wl.bridge) == [], timeout=30, what="ports gone")
        result["run_to_reachable"], result["run_network_none"] = summary(reach), summary(none)

        flows0, meters0 = flows(wl.bridge), meters(wl.bridge)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.burst) as pool:
            names = [f"b{i}" for i in range(args.burst)]
            started = list(pool.map(lambda n: docker("run", "-d", "--name", n, "--network",
                                                     "wl", "xct-busybox", "sleep", "3600",
                                                     check=False).returncode == 0, names))
        burst_s = time.monotonic() - t0
        ips = [ip_of_container(docker, n) for n, ok in zip(names, started) if ok]
        errors = [line for line in wl.logs().splitlines() if " ERROR " in line]
        result["burst"] = {"containers": args.burst, "started": sum(started),
                           "with_address": sum(1 for ip in ips if ip), "leases": docker_leases(world),
                           "seconds": round(burst_s, 2), "controller_errors": len(errors)}
        print(f"  burst: {result['burst']}", *errors[:3], sep="\n  ", flush=True)
        docker("rm", "-f", *names)
        wait_until(lambda: guest_ports(wl.bridge) == [], timeout=120, what="ports gone")
        try:
            wait_until(lambda: not docker_leases(world), timeout=30, what="leases released")
        except RuntimeError:
            pass
        result["burst"]["leases_left_after_rm"] = docker_leases(world)
        print(f"  burst: leases left after rm: {docker_leases(world)}", flush=True)

        for i in range(args.cycles):
            docker("run", "-d", "--name", "cycle", "--network", "wl", "xct-busybox", "sleep",
                   "60")
            docker("rm", "-f", "cycle")
        wait_until(lambda: guest_ports(wl.bridge) == [], timeout=60, what="ports gone")
        try:
            wait_until(lambda: not docker_leases(world), timeout=30, what="leases released")
        except RuntimeError:
            print("  leases left:", [(x.mac, x.ip) for x in world.leases()], flush=True)
        left = {"ports": len(guest_ports(wl.bridge)),
                "bindings": sum(len(g["ips"]) for g in wl.status()["guests"]),
                "leases": docker_leases(world), "flows_added": flows(wl.bridge) - flows0,
                "meters_added": meters(wl.bridge) - meters0}
        result["cycles"] = {"cycles": args.cycles, "left": left}
        print(f"  cycles: {result['cycles']}", flush=True)
    finally:
        if docker is not None and plugin is not None:
            close(docker, plugin, base)
        bench.close()
    rows = [[name, *(f"{v:.2f}" for v in (s["median"], s["min"], s["max"])), s["n"]]
            for name, s in (("docker run -> reachable (wlbridge, DHCP)",
                             result["run_to_reachable"]),
                            ("docker run (--network none)", result["run_network_none"]))]
    print()
    print(table("containers (s)", ["", "median", "min", "max", "runs"], rows))
    b, left = result["burst"], result["cycles"]["left"]
    ok = (b["with_address"] == b["containers"] and b["controller_errors"] == 0
          and not any(left.values()))
    print(f"\nburst: {b}\ncycles left behind: {left}\ntargets: {'met' if ok else 'NOT met'}")
    result["met"] = ok
    write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
