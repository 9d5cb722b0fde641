#!/usr/bin/env python3
"""The fleet store at scale (issue 26): `--hosts` simulated hosts x `--guests` bindings each
on a 3-member Raft cluster of Debian's ovsdb-server on loopback (`wlbridge fleet start`).

    .venv/bin/python bench/bench_fleet.py [--hosts 50] [--guests 20] [--samples 30] [--json F]

Each simulated host is the controller's own client (`wlbridge.host.fleet_store.FleetStore`,
the `ovs` IDL in a thread), all in this process.  Measured:

* ``visible``: one host publishes one more binding -> every other host's view has it
  (p50, p99; target p99 <= 200 ms), `--samples` times, from hosts in turn;
* ``fill``: every host publishing its guests at once -> every host sees them all;
* the members' CPU time (over the whole run) and RSS (at the end), from /proc;
* an idle client's wake-ups per second (its thread's context switches over `--idle` s).

No root needed; nothing outside its own directory and ports.  Exit 0 when p99 <= 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import summary, table
from wlbridge.cli.main import main as wlbridge
from wlbridge.host import fleet_server
from wlbridge.host.fleet_store import FleetStore

TARGET_P99 = 0.200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) if m else 0


def thread_switches(tid: int) -> int:
    text = Path(f"/proc/self/task/{tid}/status").read_text()
    return sum(int(v) for v in re.findall(r"ctxt_switches:\s+(\d+)", text))


class Host:
    def __init__(self, remote: str, name: str, guests: int) -> None:
        self.name, self.guests = name, guests
        self.claims: set[tuple[str, str]] = set()
        self.first_seen: dict[tuple[str, str], float] = {}   # claim -> when it reached us
        self.changed = threading.Condition()
        self.store = FleetStore(remote, name, f"br-{name}", "lab", self.on_view)
        self.thread = threading.Thread(target=self.store.run, daemon=True)
        self.thread.start()
        self.extra: list[str] = []

    def on_view(self, hosts, claims) -> None:
        at = time.monotonic()
        seen = {(c.host, c.ip) for c in claims}
        for claim in seen - self.claims:
            self.first_seen.setdefault(claim, at)
        with self.changed:
            self.claims = seen
            self.changed.notify_all()

    def ips(self) -> list[str]:
        n = int(self.name[1:])
        return [f"10.{n // 200}.{n % 200}.{g + 1}" for g in range(self.guests)] + self.extra

    def publish(self) -> None:
        now = time.time()
        self.store.publish({"station_mac": "02:5a:00:00:00:01", "conflicts": {}, "bindings": [
            {"ip": ip, "mac": "02:00:00:00:00:01", "guest": "g", "source": "arp",
             "claimed_at": now, "lease_end": None} for ip in self.ips()]})

    def wait_seen(self, host: str, ip: str, timeout: float) -> float | None:
        """When the claim reached this host's view (None: not within `timeout` s)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (host, ip) not in self.claims:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
        return self.first_seen[(host, ip)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--guests", type=int, default=20)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    dirs = [root / f"m{i}" for i in range(3)]
    client = [f"tcp:127.0.0.1:{free_port()}" for _ in dirs]
    raft = [f"tcp:127.0.0.1:{free_port()}" for _ in dirs]
    hosts: list[Host] = []
    try:
        for i, d in enumerate(dirs):
            join = ["--join", raft[0]] if i else []
            if wlbridge(["fleet", "start", "--dir", str(d), "--listen", client[i],
                         "--cluster", raft[i], *join]) != 0:
                return 2
        pids = [fleet_server.pid_of(str(d)) for d in dirs]
        cpu0 = [cpu_seconds(p) for p in pids]
        remote = ",".join(client)
        hosts = [Host(remote, f"h{i}", args.guests) for i in range(args.hosts)]
        started = time.monotonic()
        for h in hosts:
            h.publish()
        last = hosts[-1]
        for h in hosts:
            for other in (hosts[0], last):
                if other.wait_seen(h.name, h.ips()[0], 120) is None:
                    print(f"{other.name} never saw {h.name}'s bindings", file=sys.stderr)
                    return 1
        fill = time.monotonic() - started
        visible = []
        for s in range(args.samples):
            h = hosts[s % len(hosts)]
            h.extra.append(f"10.250.{s // 250}.{s % 250 + 1}")
            t0 = time.monotonic()
            h.publish()
            ends = [o.wait_seen(h.name, h.extra[-1], 10) for o in hosts if o is not h]
            if any(e is None for e in ends):
                print(f"sample {s}: not seen everywhere within 10 s", file=sys.stderr)
                return 1
            visible.append(max(ends) - t0)
        # idle: one client's thread, nothing changing
        tid = hosts[0].thread.native_id
        w0 = thread_switches(tid)
        time.sleep(args.idle)
        wakeups = (thread_switches(tid) - w0) / args.idle
        cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu0)]
        rss = [rss_kib(p) for p in pids]
        vis = summary(visible)
        print(table(f"fleet store: {args.hosts} hosts x {args.guests} guests, 3-member "
                    f"cluster on loopback", ["what", "value"], [
                        ["all hosts' bindings seen by the first and last host (s)", round(fill, 2)],
                        ["one binding -> all others' views, p50 (ms)", round(vis["median"] * 1000, 1)],
                        ["... p99 (ms)", round(vis["p99"] * 1000, 1)],
                        ["... max (ms)", round(vis["max"] * 1000, 1)],
                        ["members' CPU over the run (s)", [round(c, 2) for c in cpu]],
                        ["members' RSS (MiB)", [round(r / 1024, 1) for r in rss]],
                        ["an idle client's wake-ups per second", round(wakeups, 2)]]))
        if args.json:
            Path(args.json).write_text(json.dumps({
                "hosts": args.hosts, "guests": args.guests, "fill_s": fill,
                "visible_s": visible, "visible": vis, "members_cpu_s": cpu,
                "members_rss_kib": rss, "idle_wakeups_per_s": wakeups}, indent=1))
        return 0 if vis["p99"] <= TARGET_P99 else 1
    finally:
        for h in hosts:
            h.store.stop()
        for d in dirs:
            pid = fleet_server.pid_of(str(d))
            if pid is not None:
                os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
