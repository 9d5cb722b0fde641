"""python -m topologies {demo,show,cleanup PREFIX}: the emulated Wi-Fi LAN by hand."""

from __future__ import annotations

import argparse
import os
import sys

from . import OvsBridge, World, basic_lan, cleanup_leftovers, describe, ovs_problem

DEMO_PREFIX = "wdemo"


def demo(prefix: str = DEMO_PREFIX) -> int:
    """Build the LAN, show it, show that a plain NORMAL bridge guest fails, tear down."""
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    problem = ovs_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    cleanup_leftovers(prefix)
    graph = basic_lan(n_guests=1, prefix=prefix)
    print("== The emulated Wi-Fi LAN")
    print("\n".join(describe(graph)))
    with World(graph) as w:
        peer, guest = w.peers[0], w.guests[0]
        ok = w.station.ping(peer.ip)
        print(f"\n== The host itself (station {w.uplink}, {w.station.ip}) pings "
              f"{peer.name} {peer.ip}: {'OK' if ok else 'FAILED'}")
        with OvsBridge(f"{prefix}-br") as br:
            br.add_port(w.uplink)
            br.add_port(guest.port)
            br.normal()
            print(f"\n== Plain OVS bridge {br.name} (NORMAL) with ports {', '.join(br.ports())}")
            before = w.ap_counters()["foreign_src"].packets
            reached = guest.ping(peer.ip, count=3)
            dropped = w.ap_counters()["foreign_src"].packets - before
            print(f"   {guest.name} ({guest.mac}, {guest.ip}) pings {peer.name}: "
                  f"{'reached (unexpected!)' if reached else 'no answer'}")
            print(f"   the AP dropped {dropped} frames whose source MAC was not the station's")
            print("   -> this is the problem wlbridge solves (rewrite guest MACs to the station MAC)")
    print("\n== Torn down")
    return 0 if ok and not reached else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m topologies", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="build the LAN, show a plain bridge failing, tear down")
    show = sub.add_parser("show", help="print the basic_lan topology")
    show.add_argument("--guests", type=int, default=2)
    show.add_argument("--ipv6", action="store_true", help="the dual-stack LAN (radvd, DHCPv6)")
    clean = sub.add_parser("cleanup", help="remove leftovers of a prefix")
    clean.add_argument("prefix")
    args = ap.parse_args(argv)
    if args.cmd == "demo":
        return demo()
    if args.cmd == "show":
        print("\n".join(describe(basic_lan(n_guests=args.guests, prefix=DEMO_PREFIX,
                                           ipv6=args.ipv6))))
        return 0
    print(cleanup_leftovers(args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
