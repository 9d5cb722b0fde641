#!/usr/bin/env python3
"""Where the data path's cost goes: the megaflows (datapath flows) of one TCP stream.

    sudo .venv/bin/python bench/bench_megaflows.py [--time 3]

Three bridges, each with one guest and one LAN peer, each carrying one iperf3 stream
(guest -> peer) while the userspace datapath's flows are dumped (``ovs-appctl
dpctl/dump-flows -m``, only the flows whose in_port is one of that bridge's ports):

* ``plain``: a ``NORMAL`` bridge (the baseline of bench_throughput.py);
* ``wlbridge``: the real thing (`wlbridge setup` + `wlbridge run`);
* ``set-field``: a bridge whose flows do only what MAC translation must do on every packet
  (`Bench.set_field_bridge`): the inherent cost.

For each: the megaflows that carried the stream (match fields with their masks, actions,
packets), so the extra per-packet work (actions, masks that split the traffic over more
megaflows, recirculations) is visible side by side.
"""

from __future__ import annotations

import re
import sys
import threading
import time

from common import Bench, base_parser, ip_of, iperf, start_iperf_server

from topologies.procs import run


def dp_flows(ports: set[str]) -> list[str]:
    out = run(None, ["ovs-appctl", "dpctl/dump-flows", "-m"], check=True).stdout
    keep = []
    for line in out.splitlines():
        m = re.search(r"in_port\(([^)]+)\)", line)
        if m and m.group(1) in ports:
            keep.append(line)
    return keep


def busy(line: str) -> int:
    m = re.search(r"packets:(\d+)", line)
    return int(m.group(1)) if m else 0


def show(name: str, flows: list[str]) -> None:
    print(f"\n== {name}: {len(flows)} datapath flows on its ports")
    for line in sorted(flows, key=busy, reverse=True)[:8]:
        line = re.sub(r"ufid:\S+ ", "", line)
        print(f"  {line}")


def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=int, default=3)
    args = ap.parse_args()
    bench = Bench(args.keep_logs)
    bench.require_root()
    try:
        wa = bench.world(n_guests=1, filter=False)
        plain = bench.plain_bridge(wa)
        wb = bench.world(n_guests=1, filter=True)
        ctl = bench.wlbridge(wb)
        wd = bench.world(n_guests=1, filter=False)
        configs = [("plain", wa, plain.name), ("wlbridge", wb, ctl.bridge),
                   ("set-field", wd, bench.set_field_bridge(wd).name)]
        for name, w, _ in configs:
            assert w.guests[0].ping(ip_of(w.peers[0]), count=2), name
            start_iperf_server(w.peers[0], bind=ip_of(w.peers[0]))
        for name, w, br in configs:
            ports = set(run(None, ["ovs-vsctl", "list-ports", br], check=True).stdout.split()) | {br}
            got: list[str] = []
            t = threading.Thread(target=lambda w=w, got=got: got.append(
                iperf(w.guests[0], ip_of(w.peers[0]), args.time)))
            t.start()
            time.sleep(1.0 + args.time / 2)
            flows = dp_flows(ports)
            t.join()
            show(f"{name} ({got[0]['bps'] / 1e6:.0f} Mbit/s)" if got else name, flows)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
