#!/usr/bin/env python3
"""Controller start and restart times through the real `wlbridge run` (issue 15), root.

    sudo .venv/bin/python bench/bench_start.py [--runs 5] [--json FILE] [--keep-logs]

One emulated Wi-Fi LAN with one guest, `wlbridge setup` as a user runs it; the guest's address
is learned once.  Then, alternately, ``--runs`` times each:

* ``start``: `wlbridge run` with an empty state directory, from the process start to
  ``/status`` saying the switch is connected;
* ``restart``: SIGTERM, then `wlbridge run` again with the state file, from the process start
  to the resync being done: the switch connected under a new generation and the saved guest
  address confirmed (bound to its port again, not "unconfirmed").

Both include the interpreter and framework start-up and Open vSwitch's reconnection backoff
(the bridge's ``max_backoff``, set by `wlbridge setup`).  ``/status`` is polled every 10 ms.
Medians are printed; the target (issue 15) is < 1 s each.  Exit status 0 when met.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time

from common import (
    Bench,
    base_parser,
    interpreter_baseline,
    ip_of,
    machine,
    summary,
    table,
    wait_until,
    write_json,
)

TARGET = 1.0
POLL = 0.01


def timed_start(wl, done) -> float:
    """Start the controller; seconds until done(status) holds."""
    started = time.monotonic()
    wl.start(wait=False)

    def check():
        if wl.proc.poll() is not None:
            raise RuntimeError(f"controller exited {wl.proc.returncode}:\n{wl.logs()[-3000:]}")
        try:
            snap = wl.status()
        except OSError:
            return None
        return snap if done(snap) else None

    wait_until(check, timeout=30, interval=POLL, what="the controller")
    return time.monotonic() - started


def main() -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bench = Bench(keep_logs=args.keep_logs)
    bench.require_root()
    starts: list[float] = []
    restarts: list[float] = []
    try:
        world = bench.world(n_guests=1)
        g1, peer = world.guests[0], world.peers[0]
        wl = bench.wlbridge(world)
        assert g1.ping(ip_of(peer), count=2), wl.logs()
        wait_until(lambda: wl.bound(ip_of(g1)), timeout=10, what="the guest's address")

        def resynced(snap) -> bool:
            return snap["connected"] and any(
                g.get("confirmed", True) and any(b["ip"] == ip_of(g1) for b in g["ips"])
                for g in snap["guests"])

        for run in range(args.runs):
            wl.stop(signal.SIGTERM)
            kept = wl.state_dir.with_name("kept")
            shutil.rmtree(kept, ignore_errors=True)
            wl.state_dir.rename(kept)  # a first start: no state
            starts.append(timed_start(wl, lambda s: s["connected"]))
            wl.stop(signal.SIGTERM)
            shutil.rmtree(wl.state_dir)
            kept.rename(wl.state_dir)
            restarts.append(timed_start(wl, resynced))
            print(f"  run {run + 1}: start {starts[-1]:.3f}s, restart {restarts[-1]:.3f}s",
                  flush=True)
        wl.stop(signal.SIGTERM)
    finally:
        bench.close()
    base = interpreter_baseline()
    rows = [[name, *(f"{v:.3f}" for v in (s["median"], s["min"], s["max"])), s["n"]]
            for name, s in (("start -> switch connected", summary(starts)),
                            ("restart -> resync done", summary(restarts)),
                            *base.items())]
    print()
    print(table("controller start (s)", ["", "median", "min", "max", "runs"], rows))
    ok = summary(starts)["median"] < TARGET and summary(restarts)["median"] < TARGET
    print(f"\ntarget: median < {TARGET:.1f}s each: {'met' if ok else 'NOT met'}")
    write_json(args.json, {"machine": machine(), "start": summary(starts),
                           "restart": summary(restarts), "baseline": base, "target": TARGET,
                           "met": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
