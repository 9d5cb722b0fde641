#!/usr/bin/env python3
"""Containers through the plugins (issue 23), root: `docker run` -> reachable from the LAN
peer beside its floors; a burst of containers started at once; run/rm cycles leaving nothing
behind, through the Docker plugin and through Podman's CNI backend.

A private dockerd (no iptables, no default bridge, vfs storage) and `wlbridge docker-plugin`
on the emulated one-MAC LAN, as in tests/integration/test_docker_plugin.py; Podman as in
tests/integration/test_cni.py.  Beside `docker run` -> reachable (median of ``--runs``):

* the DHCP exchange itself (the floor of any DHCP-addressed container): one busybox udhcpc
  run until bound, in a namespace attached to the bridge (`wlbridge attach`, no addressing);
* `docker run --network none` (the runtime's own floor);
* the same container on Docker's default NAT bridge, by a second dockerd run inside a
  network namespace made for it (its docker0 and iptables rules stay there): `docker run`
  until the container answers a ping from its Docker host (a NAT container is not reachable
  from the LAN; its host is the nearest "reachable").

Then ``--burst`` containers started at once (all leased, no controller errors, and packet-ins
per 1,000 data packets of ping floods between some of them and the LAN peer afterwards), and
``--cycles`` `docker run`/`rm` and ``--podman-cycles`` `podman run`/`rm` cycles, each run to
left-overs: ports, flows, bindings, meters, DHCP leases (the server's lease file).

    sudo .venv/bin/python bench/bench_containers.py [--runs 10] [--burst 50] [--cycles 100]
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    FLOOD,
    Bench,
    base_parser,
    dhcp_exchange,
    flows,
    leases,
    left_behind,
    machine,
    meters,
    packet_in_changes,
    settle,
    summary,
    table,
    unreleased,
    wait_until,
    write_json,
)

from topologies.runtimes import Docker, DockerPlugin, Podman, busybox_tar, close

CNI_PATH = "/usr/lib/cni"
IMAGE = "xct-busybox"


def in_pid_ns(pid: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)


def ip_of_container(docker: Docker, name: str) -> str:
    pid = docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
    out = in_pid_ns(pid, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else ""


def ping_stats(res: subprocess.CompletedProcess) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", res.stdout)
    if not m:
        raise RuntimeError(f"ping flood failed: {res.stdout} {res.stderr}")
    return int(m.group(1)), int(m.group(2))


# ---- the floors -------------------------------------------------------------------------
def nat_bridge(runs: int) -> dict:
    """`docker run` on Docker's default NAT bridge until the container answers its host, by
    a dockerd inside a namespace of its own."""
    ns = f"xc-nat{os.getpid()}"
    base = Path(tempfile.mkdtemp(prefix="xct-nat-"))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    docker = Docker(base, netns=ns)
    try:
        docker.start()
        docker("import", str(busybox_tar(base)), IMAGE)
        times = []
        for i in range(runs):
            t0 = time.monotonic()
            docker("run", "-d", "--name", f"nat{i}", IMAGE, "sleep", "3600")
            ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", f"nat{i}"
                        ).stdout.strip()
            wait_until(lambda ip=ip: subprocess.run(
                ["nsenter", f"--net=/run/netns/{ns}", "--", "ping", "-n", "-c", "1", "-W", "1",
                 ip], capture_output=True, check=False).returncode == 0,
                timeout=30, what=f"nat{i} reachable from its host")
            times.append(time.monotonic() - t0)
            docker("rm", "-f", f"nat{i}")
        return summary(times)
    finally:
        docker("rm", "-f", *docker("ps", "-aq", check=False).stdout.split(), check=False)
        docker.stop()
        for d in ("exec", "data"):
            subprocess.run(["umount", "-R", str(base / d)], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


# ---- packet-ins after the burst ---------------------------------------------------------
def packet_ins_per_1000(wl, peer, pids: list[str], ips: list[str]) -> dict:
    """Ping floods container -> peer and peer -> container for each given container: the
    controller's packet-ins per 1,000 data packets (requests and replies both ways)."""
    # the containers' start-up chatter first: wait until no packet-in comes for 3 s
    last = [wl.packet_ins(), time.monotonic()]

    def quiet() -> bool:
        now = wl.packet_ins()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= 3

    wait_until(quiet, timeout=60, interval=0.5, what="the controller quiet")
    before, c_before = wl.packet_ins(), wl.counters()
    data = 0
    for pid, ip in zip(pids, ips):
        s, r = ping_stats(in_pid_ns(pid, "ping", "-n", "-q", "-f", "-c", str(FLOOD), "-W", "1",
                                    peer.ip))
        data += s + r
        res = peer.run("ping", "-n", "-q", "-f", "-c", str(FLOOD), "-W", "1", ip, timeout=60)
        s, r = ping_stats(res)
        data += s + r
    delta = wl.packet_ins() - before
    return {"containers": len(pids), "data_packets": data, "packet_ins": delta,
            "per_1000_data_packets": round(delta * 1000 / data, 3) if data else None,
            "by_counter": packet_in_changes(c_before, wl.counters())}


def main() -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="docker run -> reachable, median of")
    ap.add_argument("--burst", type=int, default=50, help="containers started at once")
    ap.add_argument("--flooded", type=int, default=3,
                    help="containers of the burst the ping floods run from and to")
    ap.add_argument("--cycles", type=int, default=100, help="docker run/rm cycles")
    ap.add_argument("--podman-cycles", type=int, default=100,
                    help="podman run/rm cycles (CNI plugin); 0: none")
    ap.add_argument("--no-nat", action="store_true",
                    help="skip the baseline on Docker's default NAT bridge")
    args = ap.parse_args()
    bench = Bench(keep_logs=args.keep_logs)
    bench.require_root()
    result: dict = {"machine": machine()}
    base = Path(tempfile.mkdtemp(prefix="xct-bench-"))
    docker = plugin = pm = None
    try:
        world = bench.world(n_guests=0)
        peer = world.peers[0]
        wl = bench.wlbridge(world, guests=[])
        leases0 = {lease.mac for lease in world.leases()}
        flows0, meters0 = flows(wl.bridge), meters(wl.bridge)
        result["dhcp_exchange"] = dhcp_exchange(world, wl, base / "floor", args.runs)
        print(f"  DHCP exchange: {result['dhcp_exchange']}", flush=True)
        if not args.no_nat:
            result["run_nat_bridge"] = nat_bridge(args.runs)
            print(f"  NAT bridge: {result['run_nat_bridge']}", flush=True)

        docker, plugin = Docker(base), DockerPlugin(wl.bridge, world.prefix, base)
        plugin.start()
        docker.start()
        docker("import", str(busybox_tar(base)), IMAGE)
        docker("network", "create", "-d", world.prefix, "--ipam-driver", world.prefix, "wl")

        def run_reachable(name: str) -> float:
            t0 = time.monotonic()
            docker("run", "-d", "--name", name, "--network", "wl", IMAGE, "sleep", "3600")
            ip = ip_of_container(docker, name)
            wait_until(lambda: peer.ping(ip, count=1, timeout=1), timeout=30,
                       what=f"{name} reachable")
            return time.monotonic() - t0

        def run_none(name: str) -> float:
            t0 = time.monotonic()
            docker("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "3600")
            return time.monotonic() - t0

        reach, none, log0 = [], [], len(world.dnsmasq_log())
        for i in range(args.runs):
            none.append(run_none(f"n{i}"))
            reach.append(run_reachable(f"r{i}"))
            docker("rm", "-f", f"n{i}", f"r{i}")
            print(f"  run {i + 1}: wlbridge {reach[-1]:.2f}s, --network none {none[-1]:.2f}s",
                  flush=True)
        settle(world, wl, leases0)
        result["run_to_reachable"], result["run_network_none"] = summary(reach), summary(none)
        result["runs_never_released"] = len(set(unreleased(world, log0)) - leases0)
        print(f"  leases never released after the runs: {result['runs_never_released']}",
              flush=True)

        t0, log0 = time.monotonic(), len(world.dnsmasq_log())
        names = [f"b{i}" for i in range(args.burst)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.burst) as pool:
            started = list(pool.map(lambda n: docker("run", "-d", "--name", n, "--network",
                                                     "wl", IMAGE, "sleep", "3600",
                                                     check=False).returncode == 0, names))
        burst_s = time.monotonic() - t0
        ips = [ip_of_container(docker, n) for n, ok in zip(names, started) if ok]
        errors = [line for line in wl.logs().splitlines() if " ERROR " in line]
        result["burst"] = {"containers": args.burst, "started": sum(started),
                           "with_address": sum(1 for ip in ips if ip),
                           "leases": leases(world, leases0), "seconds": round(burst_s, 2),
                           "controller_errors": len(errors)}
        print(f"  burst: {result['burst']}", *errors[:3], sep="\n  ", flush=True)
        flooded = [n for n, ok in zip(names, started) if ok][:args.flooded]
        result["burst"]["after"] = packet_ins_per_1000(
            wl, peer, [docker("inspect", "-f", "{{.State.Pid}}", n).stdout.strip()
                       for n in flooded], [ip_of_container(docker, n) for n in flooded])
        print(f"  after the burst: {result['burst']['after']}", flush=True)
        docker("rm", "-f", *names)
        settle(world, wl, leases0)
        result["burst"]["leases_left_after_rm"] = leases(world, leases0)
        result["burst"]["never_released"] = len(set(unreleased(world, log0)) - leases0)
        print(f"  burst after rm: {result['burst']}", flush=True)

        t0, log0 = time.monotonic(), len(world.dnsmasq_log())
        for _ in range(args.cycles):
            docker("run", "-d", "--name", "cycle", "--network", "wl", IMAGE, "sleep", "60")
            docker("rm", "-f", "cycle")
        cycles_s = time.monotonic() - t0
        settle(world, wl, leases0)
        result["cycles"] = {"cycles": args.cycles, "seconds": round(cycles_s, 1),
                            "left": left_behind(world, wl, flows0, meters0, leases0, log0)}
        print(f"  docker cycles: {result['cycles']}", flush=True)
        close(docker, plugin, base)
        docker = plugin = None

        if args.podman_cycles:
            pm = Podman(Path(tempfile.mkdtemp(prefix="xct-pm-")), CNI_PATH)
            pm.start()
            (pm.base / "cni" / "wl.conflist").write_text(json.dumps(
                {"cniVersion": "0.4.0", "name": "wl",
                 "plugins": [{"type": "wlbridge", "bridge": wl.bridge,
                              "ipam": {"type": "dhcp"}, "leaseTimeout": 20}]}))
            t0, log0 = time.monotonic(), len(world.dnsmasq_log())
            rm_retries = 0
            for _ in range(args.podman_cycles):
                pm("run", "-d", "--name", "pcycle", "--network", "wl", f"localhost/{IMAGE}",
                   "sleep", "60")
                # podman 4.3 under gVisor now and then fails to unmount the container's shm
                # ("device or resource busy"): its network is torn down by then; rm again
                for _ in range(5):
                    rm = pm("rm", "-f", "-t", "0", "pcycle", check=False)
                    if rm.returncode == 0:
                        break
                    print("  podman rm:", rm.stderr.strip()[-300:], flush=True)
                    rm_retries += 1
                    time.sleep(0.5)
            pm_s = time.monotonic() - t0
            settle(world, wl, leases0)
            print("  podman ps -a:", pm("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}",
                                        check=False).stdout, flush=True)
            result["podman_cycles"] = {"cycles": args.podman_cycles, "seconds": round(pm_s, 1),
                                       "rm_retries": rm_retries,
                                       "left": left_behind(world, wl, flows0, meters0,
                                                           leases0, log0)}
            print(f"  podman cycles: {result['podman_cycles']}", flush=True)
    finally:
        if docker is not None and plugin is not None:
            close(docker, plugin, base)
        if pm is not None:
            pm.close()
        bench.close()
    rows = [[name, *(f"{v:.2f}" for v in (s["median"], s["min"], s["max"])), s["n"]]
            for name, s in (("docker run -> reachable from the LAN peer (wlbridge, DHCP)",
                             result["run_to_reachable"]),
                            ("the DHCP exchange through wlbridge (floor)",
                             result["dhcp_exchange"]),
                            ("docker run (--network none)", result["run_network_none"]),
                            ("docker run -> reachable from its host (default NAT bridge)",
                             result.get("run_nat_bridge")))
            if s is not None]
    print()
    print(table("containers (s)", ["", "median", "min", "max", "runs"], rows))
    b = result["burst"]
    lefts = [result["cycles"]["left"]] + ([result["podman_cycles"]["left"]]
                                          if "podman_cycles" in result else [])
    ok = (b["with_address"] == b["containers"] and b["controller_errors"] == 0
          and not b["never_released"] and not result["runs_never_released"]
          and b["after"]["packet_ins"] == 0 and not any(v for left in lefts
                                                         for v in left.values()))
    print(f"\nburst: {b}\ncycles left behind: {lefts}\ntargets: {'met' if ok else 'NOT met'}")
    result["met"] = ok
    write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
