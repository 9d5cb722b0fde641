#!/usr/bin/env python3
"""A controller at rest: wake-ups per second and memory (issue 13 item 7).

    sudo .venv/bin/python bench/bench_idle.py [--seconds 30] [--guests 3] [--json F]
        [--tree LABEL=PATH ...] [--rounds N] [--ovs-probe MS]

`wlbridge setup` + `wlbridge run` on a fresh emulated LAN, ``--guests`` guests attached and
bound (they ping a LAN host once), then nothing happens for ``--seconds``.  Measured on the
controller process:

* **wake-ups**: the growth of ``voluntary_ctxt_switches`` summed over every thread
  (``/proc/<pid>/task/*/status``): each is a thread going to sleep after it woke up, so it
  counts wake-ups (timers, polls, socket traffic such as Open vSwitch's echo requests);
  per thread, to show who wakes;
* **RSS** (``VmRSS``) at the end, and where the memory goes: the process's mappings
  (``/proc/<pid>/smaps_rollup``: anonymous vs file-backed).

With ``--tree LABEL=PATH`` (twice or more) each of ``--rounds`` rounds runs the controller of
each source tree in turn on the same LAN (before/after in one run; medians per tree).
``--ovs-probe MS`` sets the bridge's controller ``inactivity_probe`` (Open vSwitch's own echo
requests after MS ms of silence).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import Bench, base_parser, machine, table, write_json

MAX_WAKEUPS = 1.0
MAX_RSS_MIB = 50


def _threads(pid: int) -> dict[str, tuple[str, int]]:
    """tid -> (thread name, voluntary context switches)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = dict(line.split(":", 1) for line in
                          (task / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        found[task.name] = (fields["Name"].strip(), int(fields["voluntary_ctxt_switches"]))
    return found


def _kib(pid: int, key: str, path: str = "status") -> int:
    for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--guests", type=int, default=3)
    ap.add_argument("--run-args", default="", metavar="ARGS",
                    help="more `wlbridge run` options, e.g. '--echo-interval 5 --echo-timeout "
                         "15' (the OpenFlow echo requests are most of the idle wake-ups)")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="alternate between the controllers of these source trees")
    ap.add_argument("--env", action="append", default=[], metavar="LABEL:NAME=VALUE",
                    help="an environment variable for the controller of tree LABEL "
                         "(e.g. 'after:MALLOC_ARENA_MAX=2'; the same PATH may be given "
                         "under two labels)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ovs-probe", type=int, metavar="MS",
                    help="the bridge's controller inactivity_probe (ms)")
    args = ap.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("", None)]
    envs: dict[str, dict[str, str]] = {}
    for item in args.env:
        label, assignment = item.split(":", 1)
        name, value = assignment.split("=", 1)
        envs.setdefault(label, {})[name] = value
    bench = Bench(args.keep_logs)
    bench.require_root()
    results: dict[str, list[dict]] = {label: [] for label, _ in trees}
    try:
        world = bench.world(n_guests=args.guests)
        ctl = bench.wlbridge(world, extra=tuple(args.run_args.split()))
        if args.ovs_probe is not None:
            subprocess.run(["ovs-vsctl", "--", "set", "controller", ctl.bridge,
                            f"inactivity_probe={args.ovs_probe}"], check=True)
        peer = world.peers[0].addr.split("/")[0]
        for _ in range(args.rounds):
            for label, path in trees:
                if path is not None:
                    ctl.stop()
                    root = os.path.abspath(path)
                    os.environ["PYTHONPATH"] = f"{root}/controller:{root}"
                    for name in {n for e in envs.values() for n in e}:
                        os.environ.pop(name, None)
                    os.environ.update(envs.get(label, {}))
                    ctl.start()
                results[label].append(measure(ctl, world, peer, args.seconds, label))
    finally:
        bench.close()
    ok = True
    for label, runs in results.items():
        rate = statistics.median(r["wakeups_per_s"] for r in runs)
        rss = statistics.median(r["rss_kib"] for r in runs) / 1024
        ok = ok and rate <= MAX_WAKEUPS
        rates = ", ".join(f"{r['wakeups_per_s']:.2f}" for r in runs)
        rsses = ", ".join(f"{r['rss_kib'] / 1024:.1f}" for r in runs)
        print(f"{label + ': ' if label else ''}median of {len(runs)}: {rate:.2f} wake-ups/s "
              f"({rates}), RSS {rss:.1f} MiB ({rsses}); target <= "
              f"{MAX_WAKEUPS:g}/s: {'met' if rate <= MAX_WAKEUPS else 'MISSED'}, RSS <= "
              f"{MAX_RSS_MIB} MiB: {'met' if rss <= MAX_RSS_MIB else 'missed'}")
    write_json(args.json, {"machine": machine(), "results": results})
    return 0 if ok else 1


def measure(ctl, world, peer: str, seconds: float, label: str) -> dict:
    """One idle period of the running controller: wake-ups per thread, RSS."""
    for g in world.guests:
        g.ping(peer, count=1)
    time.sleep(3.0)   # the state saved, the learning settled
    pid = ctl.proc.pid
    before = _threads(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    after = _threads(pid)
    elapsed = time.monotonic() - t0
    rows, total = [], 0
    for tid, (name, count) in sorted(after.items()):
        woke = count - before.get(tid, (name, count))[1]
        total += woke
        if woke:
            main = " main" if tid == str(pid) else ""
            rows.append([f"{name} ({tid}{main})", woke, round(woke / elapsed, 2)])
    rss = _kib(pid, "VmRSS")
    anon = _kib(pid, "Anonymous", "smaps_rollup")
    status = ctl.status()
    print(table(f"{label + ': ' if label else ''}idle controller, {len(status['guests'])} "
                f"guests, {sum(len(g['ips']) for g in status['guests'])} bindings, "
                f"{elapsed:.0f} s, load average {os.getloadavg()[0]:.1f}",
                ["thread", "wake-ups", "per s"],
                rows + [["all threads", total, round(total / elapsed, 2)]]))
    print(f"RSS {rss / 1024:.1f} MiB (anonymous {anon / 1024:.1f} MiB, file-backed "
          f"{(rss - anon) / 1024:.1f} MiB), {len(after)} threads", flush=True)
    return {"seconds": elapsed, "wakeups": total, "wakeups_per_s": total / elapsed,
            "rss_kib": rss, "anon_kib": anon,
            "threads": {f"{n} ({t})": c for t, (n, c) in after.items()}}


if __name__ == "__main__":
    sys.exit(main())
