#!/usr/bin/env python3
"""Issue 12: IPv6 through wlbridge vs IPv4 through wlbridge (same LAN, same run); packet-ins; flows.

One emulated dual-stack Wi-Fi LAN (``basic_lan(ipv6=True)``: radvd on the router, SLAAC
prefix; AP with the one-MAC rule), one guest, one LAN peer, the real ``wlbridge setup
--address-manager keep`` / ``wlbridge run``. The guest forms its SLAAC address from the
router's adverts; the benchmark waits until ``/status`` lists it as bound.

iperf3 TCP (``--time`` s after a 1 s omitted warm-up) runs interleaved in rotating order,
``--runs`` rounds, four ways: guest -> peer over IPv4 and over IPv6 (global addresses), and
peer -> guest (``-R``) over both. Result: median(IPv6) / median(IPv4) per direction (target
>= 0.95), and the median of per-round ratios (runs next to each other, same machine load).
Then: packet-ins during ``ping -6 -f`` floods both ways once bound (target 0 per 1,000 data
packets), and the flows one IPv6 binding costs (a second global address added to the guest).
Diagnosis: the same IPv4/IPv6 guest -> peer runs through a plain ``NORMAL`` bridge on a second
dual-stack LAN (AP without the one-MAC rule) in the same rotation, unless ``--no-diagnose``
(IPv6/IPv4 there is the protocol's own cost on this datapath); the datapath flows
(``ovs-appctl dpctl/dump-flows -m``) during an IPv6 run, the datapath's upcalls per run and
ovs-vswitchd CPU per GB, the TCP MSS of each family.

    sudo .venv/bin/python bench/bench_ipv6.py [--runs 5] [--time 5] [--no-diagnose] [--json FILE]
"""

from __future__ import annotations

import ipaddress
import os
import re
import statistics
import sys
import threading
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
    flows_for_ip,
    ip_of,
    iperf,
    machine,
    offload_report,
    packet_in_changes,
    rotation,
    start_iperf_server,
    table,
    wait_until,
    write_json,
)

from topologies import slaac_address
from topologies.procs import run

TARGET_RATIO = 0.95


def bindings(status: dict, ip: str) -> list[dict]:
    """Every binding of `ip` in a /status snapshot, whichever list of a guest entry holds it."""
    want = ipaddress.ip_address(ip)
    found = []
    for g in status.get("guests", []):
        for value in g.values():
            for b in value if isinstance(value, list) else ():
                if isinstance(b, dict) and "ip" in b:
                    try:
                        same = ipaddress.ip_address(b["ip"]) == want
                    except ValueError:
                        continue
                    if same:
                        found.append({**b, "port": g.get("port"), "mac": g.get("mac")})
    return found


def datapath_flows() -> list[str]:
    out = run(None, ["ovs-appctl", "dpctl/dump-flows", "-m"], check=False).stdout
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def busy_megaflows(lines: list[str], ports: set[str], min_packets: int = 100) -> list[str]:
    """Megaflows of our ports that carried at least `min_packets`."""
    keep = []
    for ln in lines:
        m = re.search(r"packets:(\d+)", ln)
        if m and int(m.group(1)) >= min_packets and any(f"in_port({p})" in ln for p in ports):
            keep.append(ln)
    return keep


def mtu(netns: str | None, ifname: str) -> int:
    out = run(netns, ["cat", f"/sys/class/net/{ifname}/mtu"], check=False).stdout.strip()
    return int(out) if out.isdigit() else -1


def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="iperf3 rounds (default 5)")
    ap.add_argument("--time", type=int, default=5, help="seconds per iperf3 run (default 5)")
    ap.add_argument("--no-reverse", dest="reverse", action="store_false",
                    help="skip peer -> guest (iperf3 -R)")
    ap.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                    help="skip the plain NORMAL bridge on a second dual-stack LAN (IPv6/IPv4 "
                    "there separates the protocol's own cost from wlbridge's)")
    args = ap.parse_args()
    bench = Bench(keep_logs=args.keep_logs)
    bench.require_root()
    result: dict = {"benchmark": "ipv6", "issue": 12, "machine": machine(),
                    "params": {"runs": args.runs, "seconds": args.time, "flood": FLOOD,
                               "reverse": args.reverse}}
    t_start = time.monotonic()
    try:
        print("building the dual-stack Wi-Fi LAN with wlbridge ...", flush=True)
        w = bench.world(n_guests=1, ipv6=True)
        ctl = bench.wlbridge(w, setup_args=("--address-manager", "keep"))
        g, p = w.guests[0], w.peers[0]
        g4, p4 = ip_of(g), ip_of(p)
        p6 = p.addr6.split("/")[0]
        g6 = str(slaac_address(w.subnet6, g.mac))
        t0 = time.monotonic()
        if not g.wait_ip6(g6, timeout=30):
            raise RuntimeError(f"the guest formed no SLAAC address {g6}: {g.addrs6()}")
        assert g.ping(p4, count=2), "guest cannot reach its peer over IPv4"
        assert g.ping6(p6, src=g6, count=2), "guest cannot reach its peer over IPv6"
        ctl.wait_bound(g4, g.port)
        wait_until(lambda: bindings(ctl.status(), g6), 15, what=f"{g6} bound")
        bound_s = time.monotonic() - t0
        print(f"  guest {g4} / {g6} bound ({bound_s:.1f} s after attaching); peer {p4} / {p6}",
              flush=True)
        result["offload"] = offload_report(w, ctl.bridge)
        result["mtu"] = {"guest": mtu(g.netns, g.ifname), "peer": mtu(p.netns, p.ifname),
                         "uplink": mtu(None, w.uplink), "guest_port": mtu(None, g.port)}
        start_iperf_server(p)  # dual-stack listener

        configs = [("ipv4 up", g, p4, g4, False), ("ipv6 up", g, p6, g6, False)]
        if args.reverse:
            configs += [("ipv4 down", g, p4, g4, True), ("ipv6 down", g, p6, g6, True)]
        if args.diagnose:
            # the same protocols through a plain NORMAL bridge (AP without the one-MAC rule):
            # what IPv6 costs against IPv4 on this datapath and these veths without wlbridge
            print("building a dual-stack LAN with a plain NORMAL bridge (diagnosis) ...",
                  flush=True)
            wp = bench.world(n_guests=1, ipv6=True, filter=False)
            bench.plain_bridge(wp)
            gp, pp = wp.guests[0], wp.peers[0]
            gp6 = str(slaac_address(wp.subnet6, gp.mac))
            pp6 = pp.addr6.split("/")[0]
            if not gp.wait_ip6(gp6, timeout=30):
                raise RuntimeError(f"plain: the guest formed no SLAAC address {gp6}")
            assert gp.ping6(pp6, src=gp6, count=2), "plain: guest cannot reach its peer (IPv6)"
            assert gp.ping(ip_of(pp), count=2), "plain: guest cannot reach its peer (IPv4)"
            start_iperf_server(pp, what="iperf3 server (plain)")
            configs += [("plain ipv4 up", gp, ip_of(pp), ip_of(gp), False),
                        ("plain ipv6 up", gp, pp6, gp6, False)]
        runs: dict[str, list[dict]] = {c[0]: [] for c in configs}
        pi_iperf6 = 0
        pi_iperf6_by: dict[str, int] = {}
        for i, (name, client, dst, src, rev) in rotation(configs, args.runs):
            c0 = ctl.counters()
            r = datapath_cost(partial(iperf, client, dst, args.time, src=src, reverse=rev))
            r["packet_ins"] = packet_in_changes(c0, ctl.counters())
            if name.startswith("ipv6"):
                pi_iperf6 += sum(r["packet_ins"].values())
                for x, v in r["packet_ins"].items():
                    pi_iperf6_by[x] = pi_iperf6_by.get(x, 0) + v
            runs[name].append(r)
            print(f"  run {i + 1} {name:<13} {r['bps'] / 1e6:8.1f} Mbit/s (retransmits "
                  f"{r['retransmits']}, MSS {r['mss']}, ovs-vswitchd "
                  f"{r['vswitchd_cpu_ms_per_gb']:.0f} ms CPU/GB, upcalls "
                  f"{r['upcalls'].get('upcalls', r['upcalls'].get('miss with success upcall', '?'))}, "
                  f"packet-ins {r['packet_ins'] or 0}) load {os.getloadavg()[0]:.2f}",
                  flush=True)
        med = {k: statistics.median(r["bps"] for r in v) for k, v in runs.items()}
        cpu_gb = {k: statistics.median(r["vswitchd_cpu_ms_per_gb"] for r in v)
                  for k, v in runs.items()}
        directions = ["up"] + (["down"] if args.reverse else [])
        ratios = {d: med[f"ipv6 {d}"] / med[f"ipv4 {d}"] for d in directions}
        paired = {d: [a["bps"] / b["bps"] for a, b in zip(runs[f"ipv6 {d}"], runs[f"ipv4 {d}"])]
                  for d in directions}
        cpu_ratio = {d: cpu_gb[f"ipv4 {d}"] / cpu_gb[f"ipv6 {d}"] for d in directions}
        if args.diagnose:
            ratios_plain = med["plain ipv6 up"] / med["plain ipv4 up"]
            paired_plain = [a["bps"] / b["bps"]
                            for a, b in zip(runs["plain ipv6 up"], runs["plain ipv4 up"])]

        # -------- the datapath during an IPv6 run (diagnosis)
        holder: dict = {}
        th = threading.Thread(target=lambda: holder.update(r=iperf(g, p6, 6, src=g6)))
        th.start()
        ports = {g.port, w.uplink}
        dp, busy = [], []
        for _ in range(4):  # several samples: the run may start late (server still busy)
            time.sleep(1.2)
            sample = datapath_flows()
            if len(busy_megaflows(sample, ports)) >= len(busy):
                dp, busy = sample, busy_megaflows(sample, ports)
        th.join()

        # -------- packet-ins during IPv6 data traffic
        pi = flood_packet_ins(ctl, (g, p6, g6), (p, g6, p6))

        # -------- flows per IPv6 binding
        lines = dump_flows(ctl.bridge)
        ip_flows = flows_for_ip(lines, g6)
        total_before = len(lines)
        extra6 = str(w.subnet6.network_address + 0x60)
        g.run("ip", "-6", "addr", "add", f"{extra6}/64", "dev", g.ifname, "nodad", check=True)
        wait_until(lambda: g.ping6(p6, src=extra6, count=1), 10, interval=0.5,
                   what="a second IPv6 address answering")
        wait_until(lambda: bindings(ctl.status(), extra6), 10, what=f"{extra6} bound")
        time.sleep(0.5)
        lines_after = dump_flows(ctl.bridge)
        total_after = len(lines_after)

        def key(ln: str) -> str:  # the flow without its counters
            return re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*", "", ln)

        old_keys = {key(ln) for ln in lines}
        added = [ln for ln in lines_after if key(ln) not in old_keys]

        result.update({
            "addresses": {"guest4": g4, "guest6": g6, "peer4": p4, "peer6": p6,
                          "second6": extra6},
            "bound_after_s": bound_s,
            "throughput_bps": {k: [r["bps"] for r in v] for k, v in runs.items()},
            "runs": runs,
            "median_bps": med,
            "ratio_ipv6_ipv4": ratios,
            "paired_ratios": paired,
            "paired_ratio_median": {d: statistics.median(v) for d, v in paired.items()},
            "vswitchd_cpu_ms_per_gb_median": cpu_gb,
            "cpu_cost_ratio_ipv4_ipv6": cpu_ratio,
            "target_ratio": TARGET_RATIO,
            "plain_ratio_ipv6_ipv4_up": ratios_plain if args.diagnose else None,
            "plain_paired_ratio_median_up": statistics.median(paired_plain)
            if args.diagnose else None,
            "ratio_met": all(v >= TARGET_RATIO for v in ratios.values()),
            "packet_ins_during_ipv6_iperf": {"total": pi_iperf6, "by_counter": pi_iperf6_by},
            "packet_ins": pi,
            "packet_ins_met": pi["delta"] == 0,
            "datapath_during_ipv6": {"busy_megaflows": busy, "all_megaflows": len(dp)},
            "flows_per_binding6": {"matching_ip": len(ip_flows), "by_purpose": by_purpose(ip_flows),
                                   "total_delta_second_ip": total_after - total_before,
                                   "second_ip_added_by_purpose": by_purpose(added),
                                   "second_ip_added": added,
                                   "total_flows": total_before, "example": ip_flows},
            "elapsed_s": round(time.monotonic() - t_start, 1),
        })
        result["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        bench.close()

    rows = [[name, len(runs[name]), f"{med[name] / 1e6:.0f}",
             " ".join(f"{r['bps'] / 1e6:.0f}" for r in runs[name]),
             sum(r["retransmits"] for r in runs[name]), runs[name][0]["mss"],
             f"{cpu_gb[name]:.0f}"] for name in runs]
    print()
    print(table(f"TCP through wlbridge, iperf3 {args.time} s (+1 s omitted), interleaved runs "
                "(up: guest -> peer, down: peer -> guest)",
                ["run", "runs", "median Mbit/s", "each run", "retransmits", "MSS",
                 "vswitchd CPU ms/GB"], rows))
    fp = result["flows_per_binding6"]
    yes = {True: "yes", False: "NO"}
    target_rows = []
    for d in directions:
        target_rows += [
            [f"throughput ratio IPv6/IPv4 ({d})", f"{ratios[d]:.3f}", f">= {TARGET_RATIO}",
             yes[ratios[d] >= TARGET_RATIO]],
            ["  median of per-round ratios", f"{result['paired_ratio_median'][d]:.3f}",
             f">= {TARGET_RATIO}", yes[result["paired_ratio_median"][d] >= TARGET_RATIO]],
            ["  CPU cost ratio IPv4/IPv6 (ovs-vswitchd CPU per GB)", f"{cpu_ratio[d]:.3f}",
             "-", "-"]]
    if args.diagnose:
        target_rows += [
            ["  diagnosis: plain NORMAL bridge, IPv6/IPv4 (up)",
             f"{result['plain_ratio_ipv6_ipv4_up']:.3f}", "-", "-"],
            ["    median of per-round ratios",
             f"{result['plain_paired_ratio_median_up']:.3f}", "-", "-"]]
    print()
    print(table("IPv6 through wlbridge vs targets", ["metric", "value", "target", "met"], [
        *target_rows,
        [f"packet-ins per 1,000 IPv6 data packets ({pi['data_packets']} pkts, ping -6 -f)",
         f"{pi['per_1000_data_packets']:.2f} ({pi['delta']} total)", "0", yes[pi["delta"] == 0]],
        ["packet-ins during the IPv6 iperf3 runs", result["packet_ins_during_ipv6_iperf"]["total"],
         "0", "-"],
        ["flows per IPv6 binding (match names the address)", fp["matching_ip"], "-", "-"],
        ["flows added by a second IPv6 address on the guest", fp["total_delta_second_ip"],
         "-", "-"],
        ["all wlbridge flows, 1 guest (IPv4 + link-local + SLAAC)", fp["total_flows"], "-", "-"],
    ]))
    print(f"  flows for {result['addresses']['guest6']}: {fp['by_purpose']}; added with a "
          f"second address: {fp['second_ip_added_by_purpose']}")
    for ln in fp["second_ip_added"]:
        if "=" + result["addresses"]["second6"] not in ln:  # the others: not the binding's
            print(f"    {ln}")
    if pi["by_counter"] or result["packet_ins_during_ipv6_iperf"]["by_counter"]:
        print(f"  packet-ins by counter: flood {pi['by_counter']}, "
              f"iperf3 {result['packet_ins_during_ipv6_iperf']['by_counter']}")
    print(f"  busy datapath megaflows during an IPv6 run "
          f"({result['datapath_during_ipv6']['all_megaflows']} in all):")
    for ln in result["datapath_during_ipv6"]["busy_megaflows"]:
        print(f"    {ln}")
    off = {k: v for k, v in result["offload"].items() if v != "off"}
    print(f"  TX checksum offload: {'off on every data-path interface' if not off else off}")
    print(f"  MTU: {result['mtu']}")
    la0, la1 = result["machine"]["loadavg_start"], result["machine"]["loadavg_end"]
    print(f"  load average (1/5/15 min) start {la0}, end {tuple(round(x, 2) for x in la1)}")
    print(f"  elapsed {result['elapsed_s']} s")
    write_json(args.json, result)
    return 0 if result["ratio_met"] and result["packet_ins_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
