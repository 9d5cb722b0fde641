"""`wlbridge fleet`: a fleet store member on this machine (see docs/fleet.md).

Open vSwitch's ovsdb-server and ovsdb-tool do the work (`wlbridge.host.fleet_server`):

    wlbridge fleet start --dir D --listen tcp:IP:6641                      # standalone
    wlbridge fleet start --dir D --listen tcp:IP:6641 --cluster tcp:IP:6643 # first member
    wlbridge fleet start --dir D --listen ... --cluster tcp:IP2:6643 --join tcp:IP:6643
    wlbridge fleet status --dir D      # the member's Raft status
    wlbridge fleet leave --dir D       # leave the cluster, stop
    wlbridge fleet stop --dir D        # stop (the member stays in the cluster)
    wlbridge fleet pki --dir P --name a --name b   # a CA and certificates (ovs-pki)
    wlbridge fleet schema              # the schema file's path

`wlbridge status --fleet REMOTE` shows every host and guest the store holds.
"""

from __future__ import annotations

import argparse
import json

from wlbridge.errors import UserError

ACTIONS = ("start", "stop", "leave", "status", "pki", "schema")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS,
                   help="start (create if new) / stop / leave the cluster / Raft status of "
                        "the member in --dir; pki: a CA and certificates in --dir; schema: "
                        "print the schema file's path")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="the member's directory (database, pid file, log, control socket); "
                        "pki: the CA's directory")
    p.add_argument("--listen", metavar="ADDR", action="append", default=[],
                   help="where controllers connect, tcp:IP:PORT or ssl:IP:PORT (repeatable)")
    p.add_argument("--cluster", metavar="ADDR", default=None,
                   help="this member's Raft address (tcp:IP:PORT or ssl:IP:PORT); unset: a "
                        "standalone store")
    p.add_argument("--join", metavar="ADDR", action="append", default=[],
                   help="a member already in the cluster to join through (repeatable); "
                        "unset with --cluster: create the cluster, this its first member")
    p.add_argument("--private-key", metavar="FILE", default=None,
                   help="this member's key (PEM) for ssl: addresses")
    p.add_argument("--certificate", metavar="FILE", default=None,
                   help="this member's certificate (PEM) for ssl: addresses")
    p.add_argument("--ca-cert", metavar="FILE", default=None,
                   help="the CA certificate (PEM) that signed every member's and host's")
    p.add_argument("--name", metavar="NAME", action="append", default=[],
                   help="pki: a member or host to make a key and certificate for "
                        "(repeatable)")


def main(args: argparse.Namespace) -> int:
    from wlbridge.host import fleet_server
    from wlbridge.host.fleet_store import schema_path

    if args.action == "schema":
        print(schema_path())
        return 0
    if not args.dir:
        raise UserError(f"fleet {args.action} needs --dir")
    if args.action == "pki":
        if not args.name:
            raise UserError("fleet pki needs at least one --name")
        print(json.dumps(fleet_server.pki(args.dir, args.name), indent=2))
        return 0
    if args.action == "start":
        if not args.listen:
            raise UserError("fleet start needs --listen (where controllers connect)")
        tls = _tls(args)
        pid = fleet_server.start(args.dir, schema_path(), args.listen, args.cluster,
                                 args.join, tls)
        kind = ("standalone" if args.cluster is None else
                f"cluster member {args.cluster}" + (f", joining {', '.join(args.join)}"
                                                    if args.join else ", first"))
        print(f"fleet store running from {args.dir} (pid {pid}, {kind}); controllers: "
              f"fleet = {','.join(args.listen)}")
        return 0
    if args.action == "stop":
        print("stopped" if fleet_server.stop(args.dir) else f"no fleet store runs from "
              f"{args.dir}")
        return 0
    if args.action == "leave":
        fleet_server.leave(args.dir)
        print(f"left the cluster and stopped; the database is kept as {args.dir}/"
              f"{fleet_server.DB}.left")
        return 0
    if fleet_server.pid_of(args.dir) is None:
        raise UserError(f"no fleet store runs from {args.dir}")
    print(fleet_server.cluster_status(args.dir), end="")
    return 0


def _tls(args: argparse.Namespace):
    from wlbridge.host.fleet_server import Tls

    given = [args.private_key, args.certificate, args.ca_cert]
    if not any(given):
        return None
    if not all(given):
        raise UserError("TLS needs all three of --private-key, --certificate and --ca-cert")
    return Tls(*given)
