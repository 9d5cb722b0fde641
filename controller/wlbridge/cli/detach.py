"""`wlbridge detach NAME`: undo `wlbridge attach NAME` (DHCP client stopped, port and veth pair
removed, the resolv.conf attach wrote removed).  A guest that is not attached is not an error:
it says so and exits 0, so detach can always be run (like ``ovs-vsctl --if-exists del-port``).
"""

from __future__ import annotations

import argparse

from wlbridge.cli.common import add_bridge_arguments, require_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the name given to `wlbridge attach`")
    add_bridge_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from wlbridge.host import attach, hostnet, ovsdb

    attach.check_name(args.name)
    require_root("detach")
    with ovsdb.connect(args.db, args.timeout) as db, hostnet.HostNet() as net:
        if not attach.detach(args.name, args.bridge, db, net):
            print(f"{args.name} is not attached to {args.bridge}; nothing to do")
    return 0
