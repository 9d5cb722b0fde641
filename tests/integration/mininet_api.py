"""Mininet's Python API driving the wifilan topology, run by Debian's python3 (which has
Mininet) for tests/integration/test_mininet.py:

    python3 mininet_api.py '{"switch": "wt1a2s1", "prefix": "wt1a2", "port": 6653, ...}'

Builds ``Mininet(topo=WifiLan(...), controller=RemoteController(...))`` (``port`` null: no
controller), runs ISC dhclient in every guest, pings, prints one JSON line with what it saw and
tears down.  ``hold``: print the JSON, then wait (the test kills it: a crashed Mininet).
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import RemoteController

from topologies.mininet_wifi import WifiLan


def wait(pred, timeout: float):
    """Poll pred until true or timeout; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def main() -> None:
    args = json.loads(sys.argv[1])
    # SIGTERM tears down as the end of the run does (a kill -9 is the crash).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    setLogLevel("warning")
    topo = WifiLan(guests=args.get("guests", 2), switch=args["switch"], prefix=args["prefix"],
                   dhcp=args.get("dhcp", "dnsmasq"), ipv6=args.get("ipv6", 0),
                   ap_m2u=args.get("ap_m2u", 0), datapath=args.get("datapath"))
    port = args.get("port")
    net = Mininet(topo=topo, controller=None, autoSetMacs=False)
    if port:
        net.addController(RemoteController("c0", ip="127.0.0.1", port=port))
    try:
        net.start()
        if port and not net.waitConnected(timeout=args.get("connect_timeout", 60)):
            raise SystemExit(f"{args['switch']} did not connect to the controller")
        ap, router, peer = net.get("ap"), net.get("router"), net.get("peer")
        guests = [h for h in net.hosts if h.name.startswith("g")]
        before = ap.counters()
        out = {"leased": {g.name: g.dhcp(timeout=args.get("dhcp_timeout", 20)) for g in guests}}
        if args.get("static"):       # the positive control: a static address on g1
            g1 = guests[0]
            g1.cmd(f"ip addr add {args['static']} dev {g1.defaultIntf()}")
            out["g1_ping_peer"] = "1 received" in g1.cmd(f"ping -c2 -W1 {peer.IP()}")
        else:
            out["loss"] = net.pingAll(timeout=2)
        if args.get("ipv6"):
            addr6 = topo.graph.nodes["peer1"]["addr6"].split("/")[0]
            out["ping6"] = {g.name: wait(lambda g=g: "1 received" in
                                         g.cmd(f"ping -6 -c1 -W1 {addr6}"), 30)
                            for g in guests}
            out["guest_addr6"] = {g.name: g.cmd(f"ip -6 -o addr show dev {g.defaultIntf()} "
                                                "scope global") for g in guests}
        after = ap.counters()
        out["ap"] = {k: after[k].packets - before[k].packets for k in after}
        out["leases"] = [[lease.mac, lease.ip] for lease in router.leases()]
        out["guest_macs"] = {g.name: g.MAC() for g in guests}
        out["flows"] = net.get(args["switch"]).cmd(
            f"ovs-ofctl -O OpenFlow13 dump-flows {args['switch']}")
        out["datapath_type"] = net.get(args["switch"]).cmd(
            f"ovs-vsctl get Bridge {args['switch']} datapath_type").strip()
        out["pids"] = {n.name: n.pid for n in net.hosts + [ap]}
        print(json.dumps(out), flush=True)
        if args.get("hold"):
            time.sleep(600)
    finally:
        net.stop()


if __name__ == "__main__":
    main()
