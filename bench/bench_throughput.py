#!/usr/bin/env python3
"""Issue 3: TCP throughput through wlbridge vs a plain NORMAL bridge; packet-ins; flows/binding.

Two emulated Wi-Fi LANs are built side by side, each with one guest and one LAN peer:

* baseline: AP without the one-MAC rule (``basic_lan(filter=False)``), a netdev OVS bridge
  (uplink + guest port) with a single ``NORMAL`` flow;
* wlbridge: AP with the one-MAC rule, the real ``wlbridge setup`` / ``wlbridge run``;
* (diagnosis, unless ``--no-diagnose``) wlbridge behind an AP *without* the one-MAC rule:
  separates the cost of the AP's nftables filter from the cost of wlbridge's flows;
* (unless ``--no-set-field``) ``set-field``: a bridge whose flows do only the MAC rewrites
  wlbridge does to every data packet, then output (`Bench.set_field_bridge`): the
  inherent cost of MAC translation, against which wlbridge's own is measured.

iperf3 (guest -> peer, TCP, ``--time`` s after a 1 s omitted warm-up) runs in rotating order
on each, ``--runs`` times; the ratio of the medians wlbridge/plain is the result (target
>= 0.9); the median of per-round ratios (runs next to each other, same machine load) is
printed too, because the machine may be shared.
Then, on the wlbridge LAN: packet-ins during ping floods (target 0 per 1,000 data packets)
and the number of flows one guest IP binding costs.

    sudo .venv/bin/python bench/bench_throughput.py [--runs 5] [--time 5] [--json FILE]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from functools import partial

from common import (
    FLOOD,
    Bench,
    base_parser,
    by_purpose,
    datapath_cost,
    dump_flows,
    flood_packet_ins,
    flow_cookie,
    flows_for_ip,
    ip_of,
    iperf,
    machine,
    offload_report,
    rotation,
    start_iperf_server,
    table,
    write_json,
)
from wlbridge.flows import cookies

TARGET_RATIO = 0.9


def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="iperf3 runs per bridge (default 5)")
    ap.add_argument("--time", type=int, default=5, help="seconds per iperf3 run (default 5)")
    ap.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                    help="skip the third configuration (wlbridge behind an AP without the "
                    "one-MAC rule), which separates the AP filter's cost from wlbridge's")
    ap.add_argument("--no-set-field", dest="set_field", action="store_false",
                    help="skip the set-field-only bridge (the inherent cost of the rewrites)")
    args = ap.parse_args()
    bench = Bench(keep_logs=args.keep_logs)
    bench.require_root()
    result: dict = {"benchmark": "throughput", "issue": 3, "machine": machine(),
                    "params": {"runs": args.runs, "seconds": args.time, "flood": FLOOD}}
    t_start = time.monotonic()
    try:
        print("building the baseline LAN (no one-MAC rule, NORMAL bridge) ...", flush=True)
        wa = bench.world(n_guests=1, filter=False)
        plain = bench.plain_bridge(wa)
        print("building the Wi-Fi LAN with wlbridge ...", flush=True)
        wb = bench.world(n_guests=1, filter=True)
        ctl = bench.wlbridge(wb)
        configs = [("plain", wa, plain.name), ("wlbridge", wb, ctl.bridge)]
        if args.diagnose:
            print("building a LAN without the one-MAC rule, with wlbridge (diagnosis) ...",
                  flush=True)
            wc = bench.world(n_guests=1, filter=False)
            ctl_c = bench.wlbridge(wc)
            configs.append(("wlbridge-nofilter", wc, ctl_c.bridge))
        if args.set_field:
            print("building a LAN with a set-field-only bridge ...", flush=True)
            wd = bench.world(n_guests=1, filter=False)
            configs.append(("set-field", wd, bench.set_field_bridge(wd).name))
        for name, w, _ in configs:
            g, p = w.guests[0], w.peers[0]
            assert g.ping(ip_of(p), count=2), f"{name}: guest cannot reach its peer"
        ctl.wait_bound(ip_of(wb.guests[0]), wb.guests[0].port)
        result["offload"] = {name: offload_report(w, br) for name, w, br in configs}
        for _, w, _ in configs:
            start_iperf_server(w.peers[0], bind=ip_of(w.peers[0]))

        runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
        upcalls: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
        for i, (name, w, _) in rotation(configs, args.runs):
            r = datapath_cost(partial(iperf, w.guests[0], ip_of(w.peers[0]), args.time))
            upcalls[name].append(r.pop("upcalls"))
            runs[name].append(r)
            print(f"  run {i + 1} {name:<17} {r['bps'] / 1e6:8.1f} Mbit/s "
                  f"(retransmits {r['retransmits']}, ovs-vswitchd "
                  f"{r['vswitchd_cpu_ms_per_gb']:.0f} ms CPU/GB)", flush=True)
        med = {k: statistics.median(r["bps"] for r in v) for k, v in runs.items()}
        ratio = med["wlbridge"] / med["plain"]
        # each round's wlbridge run against the same round's plain run (same load)
        paired = [w["bps"] / p["bps"] for w, p in zip(runs["wlbridge"], runs["plain"])]
        cpu_gb = {k: statistics.median(r["vswitchd_cpu_ms_per_gb"] for r in v)
                  for k, v in runs.items()}
        gb, pb = wb.guests[0], wb.peers[0]

        # -------- packet-ins during data traffic
        guest_ip, peer_ip = ip_of(gb), ip_of(pb)
        pi = flood_packet_ins(ctl, (gb, peer_ip), (pb, guest_ip))

        # -------- flows per binding
        lines = dump_flows(ctl.bridge)
        ip_flows = flows_for_ip(lines, guest_ip)
        port_name = ctl.bound(guest_ip)["port"]
        port_no = next(g["port_no"] for g in ctl.status()["guests"] if g["port"] == port_name)
        port_flows = [ln for ln in lines if (c := cookies.decode(flow_cookie(ln)))
                      and c.subject == port_no
                      and c.purpose not in (cookies.Purpose.GUEST_IP, cookies.Purpose.CONFLICT)]
        total_before = len(lines)
        extra_ip = str(wb.subnet.network_address + 60)
        gb.run("ip", "addr", "add", f"{extra_ip}/{wb.subnet.prefixlen}", "dev", gb.ifname,
               check=True)
        assert gb.ping(peer_ip, src=extra_ip, count=1), "second guest address gets no answer"
        ctl.wait_bound(extra_ip, gb.port)
        total_after = len(dump_flows(ctl.bridge))

        result.update({
            "throughput_bps": {k: [r["bps"] for r in v] for k, v in runs.items()},
            "retransmits": {k: [r["retransmits"] for r in v] for k, v in runs.items()},
            "median_bps": med,
            "ratio": ratio,
            "paired_ratios": paired,
            "vswitchd_cpu_ms_per_gb_median": cpu_gb,
            "cpu_cost_ratio": cpu_gb["plain"] / cpu_gb["wlbridge"],
            # ovs-vswitchd CPU per GB against the same round's plain run (same load)
            "paired_cpu_per_gb_vs_plain": {
                k: statistics.median(r["vswitchd_cpu_ms_per_gb"] / p["vswitchd_cpu_ms_per_gb"]
                                     for r, p in zip(v, runs["plain"]))
                for k, v in runs.items() if k != "plain"},
            "paired_ratio_median": statistics.median(paired),
            "ratio_nofilter": (med["wlbridge-nofilter"] / med["plain"]
                               if "wlbridge-nofilter" in med else None),
            "target_ratio": TARGET_RATIO,
            "ratio_met": ratio >= TARGET_RATIO,
            "datapath_counters_per_run": upcalls,
            "packet_ins": pi,
            "packet_ins_met": pi["delta"] == 0,
            "flows_per_binding": {"matching_ip": len(ip_flows), "by_purpose": by_purpose(ip_flows),
                                  "total_delta_second_ip": total_after - total_before,
                                  "total_flows_one_guest_one_ip": total_before,
                                  "guest_port": port_name, "example": ip_flows,
                                  "per_guest_port_without_ip": len(port_flows)},
            "elapsed_s": round(time.monotonic() - t_start, 1),
        })
        result["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        bench.close()

    rows = [[name, len(runs[name]), f"{med[name] / 1e6:.0f}",
             " ".join(f"{r['bps'] / 1e6:.0f}" for r in runs[name]),
             sum(r["retransmits"] for r in runs[name]), f"{cpu_gb[name]:.0f}"]
            for name in runs]
    print()
    print(table(f"TCP guest -> LAN peer, iperf3 {args.time} s (+1 s omitted), interleaved runs",
                ["bridge", "runs", "median Mbit/s", "each run", "retransmits",
                 "vswitchd CPU ms/GB"], rows))
    fp = result["flows_per_binding"]
    print()
    print(table("wlbridge results vs targets", ["metric", "value", "target", "met"], [
        ["throughput ratio wlbridge/plain", f"{ratio:.3f}", f">= {TARGET_RATIO}",
         "yes" if ratio >= TARGET_RATIO else "NO"],
        ["  median of per-round ratios", f"{result['paired_ratio_median']:.3f}",
         f">= {TARGET_RATIO}", "yes" if result["paired_ratio_median"] >= TARGET_RATIO else "NO"],
        ["  CPU cost ratio plain/wlbridge (ovs-vswitchd CPU per GB)",
         f"{result['cpu_cost_ratio']:.3f}", f">= {TARGET_RATIO}",
         "yes" if result["cpu_cost_ratio"] >= TARGET_RATIO else "NO"],
        *([[f"  vswitchd CPU/GB {k} / plain (median of per-round ratios)", f"{v:.3f}",
             "wlbridge <= 1.03", "-"]
           for k, v in result["paired_cpu_per_gb_vs_plain"].items()]),
        *([["  diagnosis: wlbridge, AP without one-MAC rule / plain",
            f"{result['ratio_nofilter']:.3f}", "-", "-"]] if result["ratio_nofilter"] else []),
        [f"packet-ins per 1,000 data packets ({pi['data_packets']} pkts)",
         f"{pi['per_1000_data_packets']:.2f} ({pi['delta']} total)", "0",
         "yes" if pi["delta"] == 0 else "NO"],
        ["flows per guest IP binding (match names the IP)", fp["matching_ip"], "-", "-"],
        ["flows added by a second IP on the guest", fp["total_delta_second_ip"], "-", "-"],
        ["flows per guest port (MAC known, no IP)", fp["per_guest_port_without_ip"], "-", "-"],
        ["all wlbridge flows, 1 guest with 1 IP", fp["total_flows_one_guest_one_ip"], "-", "-"],
    ]))
    print(f"  flows for {ip_of(wb.guests[0])}: {fp['by_purpose']}")
    off = {k: v for side in result["offload"].values() for k, v in side.items() if v != "off"}
    print(f"  TX checksum offload: {'off on every data-path interface' if not off else off}")
    print(f"  elapsed {result['elapsed_s']} s")
    write_json(args.json, result)
    return 0 if result["ratio_met"] and result["packet_ins_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
