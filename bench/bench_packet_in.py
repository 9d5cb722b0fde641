#!/usr/bin/env python3
"""Packet-ins per second the controller core sustains (issue 6), in-process, no root needed.

    .venv/bin/python bench/bench_packet_in.py [--guests 1000] [--ips 4] [--repeat 5]

A core with N guest ports (MACs known), connected to a stand-in switch, is fed packet-ins
directly (``Core.packet_in``) and its answers are dropped, serialised, or also preceded by
os-ken's parsing of the OpenFlow packet-in message:

* ``arp-learn``: every packet-in a gratuitous ARP announcing a *new* address (the expensive
  case: a binding, six flow-mods and a packet-out each);
* ``flood-refused``: ARP with random spoofed source MACs from one port (each refused);
* ``flood-port-limit``: ARP from the guest's own MAC claiming random addresses once the
  port holds ``max_ips_per_port`` (each refused).

Rates are frames / process CPU time (best of ``--repeat`` runs: the machine is shared, and
CPU time is what the controller would spend; wall-clock rates are printed alongside).
Exit status 0 when ARP learning (core only) reaches the target of 5,000/s.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import random
import struct
import sys
import time

from resilience_fixtures import (
    FIRST_GUEST,
    Core,
    arp_frame,
    core_with_guests,
    guest_ip,
    guest_mac,
    serialise,
    stand_in_datapath,
)
from wlbridge.compat import FRAMEWORK, ofp, parser

TARGET = 5000.0


def packet_in_wire(port: int, data: bytes) -> bytes:
    """The OFPT_PACKET_IN message OVS would send for `data` arriving on `port` (os-ken only
    parses this message, so it is packed here)."""
    match = bytearray()
    parser.OFPMatch(in_port=port).serialize(match, 0)
    body = struct.pack("!IHBBQ", ofp.OFP_NO_BUFFER, len(data), ofp.OFPR_ACTION, 20,
                       0x574C0A0000000000) + bytes(match) + b"\0\0" + data
    return struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, 8 + len(body), 1) + body


OFPROTO_PARSER = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_parser")


def parse_wire(dp, buf: bytes):
    """What os-ken's receive loop does with a message's bytes."""
    version, msg_type, msg_len, xid = OFPROTO_PARSER.header(buf)
    return OFPROTO_PARSER.msg(dp, version, msg_type, msg_len, xid, buf)


def run(label: str, frames: list, make_core, mode: str, repeat: int, freeze: bool) -> dict:
    dp = stand_in_datapath()
    wires = [packet_in_wire(p, f) for p, f in frames] if mode == "shell" else None
    best_cpu, best_wall, out_msgs = float("inf"), float("inf"), 0
    for _ in range(repeat):
        core = make_core()
        gc.collect()
        if freeze:
            gc.freeze()
        out_msgs = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if mode == "core":
            for port, data in frames:
                out_msgs += len(core.packet_in(port, data, 1000.0))
        elif mode == "serialise":
            for port, data in frames:
                msgs = core.packet_in(port, data, 1000.0)
                serialise(msgs, dp)
                out_msgs += len(msgs)
        else:  # "shell": what the app does per packet-in, minus sockets and threads
            for wire in wires:
                msg = parse_wire(dp, wire)
                msgs = core.packet_in(msg.match["in_port"], bytes(msg.data), 1000.0,
                                      msg.table_id, msg.cookie)
                serialise(msgs, dp)
                out_msgs += len(msgs)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if freeze:
            gc.unfreeze()
        best_cpu, best_wall = min(best_cpu, cpu), min(best_wall, wall)
    n = len(frames)
    return {"scenario": label, "mode": mode, "gc_freeze": freeze, "frames": n,
            "messages_out": out_msgs, "per_s_cpu": n / best_cpu, "per_s_wall": n / best_wall,
            "us_per_packet_in": best_cpu / n * 1e6}


def main() -> int:
    logging.getLogger("wlbridge").setLevel(logging.ERROR)  # refusals would be logged
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--ips", type=int, default=4, help="new addresses learned per guest")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    n_guests, ips = args.guests, args.ips
    rnd = random.Random(6)

    learn = [(FIRST_GUEST + i, arp_frame(guest_mac(i), guest_ip(i, k), guest_ip(i, k)))
             for k in range(ips) for i in range(n_guests)]

    def fresh():
        return core_with_guests(n_guests)

    spoofed = []
    for _ in range(n_guests * ips):
        m = "02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5))
        spoofed.append((FIRST_GUEST, arp_frame(m, f"10.9.{rnd.randrange(256)}.1", "10.9.0.1")))
    claims = [(FIRST_GUEST, arp_frame(guest_mac(0), a, a)) for a in
              (f"10.8.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
               for _ in range(n_guests * ips))]

    def full_port() -> Core:
        core = fresh()
        for k in range(core.config.max_ips_per_port):
            core.packet_in(FIRST_GUEST, arp_frame(guest_mac(0), f"10.7.0.{k + 1}", "10.7.0.1"),
                           1000.0)
        return core

    results = []
    for mode in ("core", "serialise", "shell"):
        results.append(run("arp-learn", learn, fresh, mode, args.repeat, False))
    results.append(run("arp-learn", learn, fresh, "shell", args.repeat, True))
    results.append(run("flood-refused", spoofed, fresh, "core", args.repeat, False))
    results.append(run("flood-port-limit", claims, full_port, "core", args.repeat, False))

    print(f"packet-ins per second, {n_guests} guests, {len(learn)} frames per run, "
          f"best of {args.repeat} (Python {sys.version.split()[0]})")
    print(f"{'scenario':<18} {'path':<10} {'gc.freeze':<9} {'/s (CPU)':>10} {'/s (wall)':>10} "
          f"{'us each':>8} {'msgs out':>9}")
    for r in results:
        print(f"{r['scenario']:<18} {r['mode']:<10} {'yes' if r['gc_freeze'] else 'no':<9} "
              f"{r['per_s_cpu']:>10.0f} {r['per_s_wall']:>10.0f} "
              f"{r['us_per_packet_in']:>8.0f} {r['messages_out']:>9}")
    print("paths: core = Core.packet_in only; serialise = + os-ken serialisation of every "
          "answer; shell = + os-ken parsing of the OFPT_PACKET_IN message first")
    core_rate = results[0]["per_s_cpu"]
    ok = core_rate >= TARGET
    print(f"ARP learning, core: {core_rate:.0f}/s (target >= {TARGET:.0f}/s): "
          f"{'met' if ok else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"guests": n_guests, "results": results, "target": TARGET}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
