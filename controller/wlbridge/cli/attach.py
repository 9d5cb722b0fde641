"""`wlbridge attach NAME (--netns NS | --pid PID) [--dhcp | --address ADDR/PLEN ...]`: a network
namespace (``ip netns add``'s, or a container's, by the PID of a process in it) wired to the
bridge as a guest port, by a veth pair named ``wl-NAME``; addresses by DHCP (a client kept
running for the guest's life, DNS into the namespace's own resolv.conf) or static, IPv6 by
SLAAC on its own.  Idempotent: attaching again as before changes nothing (a stopped DHCP client
is started again).  A refusal changes nothing; a step failing half-way is rolled back.  See
`wlbridge.host.attach` and docs/attaching-guests.md.
"""

from __future__ import annotations

import argparse

from wlbridge.cli.common import add_bridge_arguments, require_root

DEFAULT_RUN_DIR = "/run/wlbridge/attach"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help="the guest's name: its port is wl-NAME (shortened with a hash "
                        "past 15 characters), `wlbridge detach NAME` removes it")
    # exclusive pairs (--netns/--pid, --dhcp/--address) are checked by attach.check_request
    parser.add_argument("--netns", metavar="NS",
                        help="a named network namespace (ip netns); this or --pid is required")
    parser.add_argument("--pid", metavar="PID",
                        help="a process in the container's network namespace (e.g. docker "
                        "inspect -f '{{.State.Pid}}' CONTAINER)")
    parser.add_argument("--dhcp", action="store_true",
                        help="get an IPv4 address by DHCP (busybox udhcpc, kept running for "
                        "the guest's life; DNS into the namespace's own resolv.conf)")
    parser.add_argument("--address", action="append", default=[], metavar="ADDR/PLEN",
                        help="a static IPv4 or IPv6 address (repeatable; default: none, IPv6 "
                        "by SLAAC still works)")
    parser.add_argument("--gateway", action="append", default=[], metavar="IP",
                        help="default route via IP (repeatable: one IPv4, one IPv6; default: "
                        "none, or the DHCP server's router)")
    parser.add_argument("--dns", action="append", default=[], metavar="IP",
                        help="DNS server written to the namespace's own resolv.conf "
                        "(repeatable; default: none, or the DHCP server's)")
    parser.add_argument("--mac", default=None, metavar="MAC",
                        help="the guest interface's MAC (default: derived from NAME, the same "
                        "at every attach)")
    parser.add_argument("--ifname", default="eth0", metavar="IFNAME",
                        help="the interface's name inside the namespace")
    parser.add_argument("--lease-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="with --dhcp, how long to wait for the first lease before "
                        "returning (the client keeps trying)")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, metavar="DIR",
                        help="where the DHCP client's script and logs are kept")
    add_bridge_arguments(parser)


def request(args: argparse.Namespace):
    from wlbridge.host import attach

    return attach.check_request(attach.Request(
        name=args.name, bridge=args.bridge, netns=args.netns,
        pid=attach.parse_pid(args.pid) if args.pid is not None else None,
        ifname=args.ifname, dhcp=args.dhcp, addresses=tuple(args.address),
        gateways=tuple(args.gateway), dns=tuple(args.dns), mac=args.mac))


def main(args: argparse.Namespace) -> int:
    from wlbridge.host import attach, hostnet, ovsdb

    req = request(args)           # bad input is refused before anything is read
    require_root("attach")
    with ovsdb.connect(args.db, args.timeout) as db, hostnet.HostNet() as net:
        attach.attach(req, db, net, args.run_dir, lease_timeout=args.lease_timeout)
    return 0
