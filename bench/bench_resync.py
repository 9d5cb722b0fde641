#!/usr/bin/env python3
"""Resync cost and memory of the controller core at 1,000 guests (issue 6), in-process.

    .venv/bin/python bench/bench_resync.py [--guests 1000] [--ips 2] [--repeat 3] [--verify]

A state file with N guests of ``--ips`` addresses each (the first from DHCP with a lease, the
others ARP-learned) is restored into a fresh core, which then connects to a stand-in switch
(no OVS, no root).  Measured, best of ``--repeat`` (process CPU time):

* ``restore``: parsing and checking the saved state (`Core.restore_state`);
* ``connect``: `Core.switch_connected` after a controller restart: every flow and meter
  computed, validated and built as OpenFlow messages;
* ``serialise``: those messages to bytes, as os-ken's ``Datapath.send_msg`` does;
* ``reconnect``: a second `switch_connected` on the same core (OVS restarted);
* ``cleanup``: `Core.flow_stats` on the switch's cookies (deleting older generations);
* ``save``: `StateStore.save` (JSON, fsync, atomic rename) of the same state.

Memory: the core's Python heap (tracemalloc: allocated while restoring and connecting, the
messages dropped) and the process RSS before and after.  ``--verify`` also applies the
messages to the fake switch of the unit tests (tests/ofsim.py) and checks the flow count.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
import tracemalloc

from resilience_fixtures import (
    HERE,
    Core,
    CoreConfig,
    ports,
    rss_kib,
    saved_state,
    serialise,
    stand_in_datapath,
)
from wlbridge.app.persist import StateStore

MAX_METER = 262144


def best(fn, repeat: int):
    """(best CPU seconds, last result) of `repeat` calls of fn()."""
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return min(times), result


def main() -> int:
    logging.getLogger("wlbridge").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--ips", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--verify", action="store_true", help="apply to the unit tests' fake switch")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    n, ips = args.guests, args.ips
    state = json.loads(json.dumps(saved_state(n, ips)))
    port_list = ports(n)
    dp = stand_in_datapath()
    config = CoreConfig(uplink="wlan0", meters=True, max_bindings=max(4096, n * ips))

    def restored() -> Core:
        core = Core(config)
        core.restore_state(state)
        return core

    def connected() -> tuple[Core, list]:
        core = restored()
        core.meter_info(MAX_METER, [], 1000.0)
        return core, core.switch_connected(0xAB, port_list, 1000.0)

    r = {}
    r["restore"], _ = best(restored, args.repeat)
    gc.collect()
    t0 = time.process_time()
    core, msgs = connected()
    r["connect"] = time.process_time() - t0 - r["restore"]
    for _ in range(args.repeat - 1):
        gc.collect()
        t0 = time.process_time()
        core, msgs = connected()
        r["connect"] = min(r["connect"], time.process_time() - t0 - r["restore"])
    flow_mods = sum(1 for m in msgs if type(m).__name__ == "OFPFlowMod")
    meters = sum(1 for m in msgs if type(m).__name__ == "OFPMeterMod")
    r["serialise"], wire = best(lambda: serialise(msgs, dp), args.repeat)

    def reconnect():
        core.switch_disconnected(1001.0)
        core.meter_info(MAX_METER, [], 1001.0)
        return core.switch_connected(0xAB, port_list, 1001.0)

    r["reconnect"], _ = best(reconnect, args.repeat)
    from wlbridge.flows import cookies

    stale = [cookies.make(cookies.Purpose.GUEST_IP, core.generation - 1, 2)] * flow_mods
    current = [cookies.make(cookies.Purpose.GUEST_IP, core.generation, 2)] * flow_mods
    r["cleanup"], deletes = best(lambda: core.flow_stats(stale + current, 1002.0), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(tmp, "br-wl")
        store.check_writable()
        r["save"], _ = best(lambda: store.save(core.export_state()), args.repeat)
        state_bytes = os.path.getsize(store.path)
    msgs = core = None  # free them before measuring memory

    # memory of a core at this size, messages dropped
    gc.collect()
    rss0 = rss_kib()
    tracemalloc.start()
    core = restored()
    core.meter_info(MAX_METER, [], 1000.0)
    msgs = core.switch_connected(0xAB, port_list, 1000.0)
    peak_with_msgs = tracemalloc.get_traced_memory()[1]
    msgs = None
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss1 = rss_kib()

    verified = None
    if args.verify:
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from ofsim import Switch

        sw = Switch({1: "wlan0", **{p.port_no: p.name for p in port_list[2:]}})
        fresh = restored()
        fresh.meter_info(MAX_METER, [], 1000.0)
        sw.apply([m for m in fresh.switch_connected(0xAB, port_list, 1000.0)
                  if type(m).__name__ in ("OFPFlowMod", "OFPMeterMod")])
        verified = len(sw)
        assert verified == flow_mods, (verified, flow_mods)

    print(f"resync of {n} guests x {ips} addresses ({len(core.bindings)} bindings), "
          f"best of {args.repeat}, process CPU time (Python {sys.version.split()[0]})")
    print(f"  messages: {flow_mods} flow-mods + {meters} meter-mods, {wire / 1e6:.2f} MB "
          "serialised")
    for key, what in (("restore", "restore_state (parse the saved state)"),
                      ("connect", "switch_connected: compute, validate, build messages"),
                      ("serialise", "serialise every message (os-ken send_msg)"),
                      ("reconnect", "switch_connected again on the same core (OVS restart)"),
                      ("cleanup", (f"flow_stats on {2 * flow_mods} cookies -> "
                                   f"{len(deletes)} delete(s)")),
                      ("save", f"state save ({state_bytes / 1024:.0f} KiB JSON, fsync)")):
        print(f"  {r[key] * 1000:8.1f} ms  {what}")
    total = r["restore"] + r["connect"] + r["serialise"]
    print(f"  {total * 1000:8.1f} ms  restart total (restore + connect + serialise)")
    print(f"  memory: core heap {heap / 1024 / 1024:.1f} MiB (tracemalloc; peak with the "
          f"resync messages {peak_with_msgs / 1024 / 1024:.1f} MiB), process RSS "
          f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
    if verified is not None:
        print(f"  verified: the fake switch holds {verified} flows")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"guests": n, "ips": ips, "seconds": r, "flow_mods": flow_mods,
                       "meter_mods": meters, "wire_bytes": wire, "state_bytes": state_bytes,
                       "heap_bytes": heap, "peak_bytes": peak_with_msgs,
                       "rss_kib": [rss0, rss1]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
