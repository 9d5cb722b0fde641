#!/usr/bin/env python3
"""Issue 3: TCP throughput through wlbridge vs a plain NORMAL bridge; packet-ins; flows/binding.

Two emulated Wi-Fi LANs are built side by side, each with one guest and one LAN peer:

* baseline: AP without the one-MAC rule (``basic_lan(filter=False)``), a netdev OVS bridge
  (uplink + guest port) with a single ``NORMAL`` flow;
* wlbridge: AP with the one-MAC rule, the real ``wlbridge setup`` / ``wlbridge run``;
* (diagnosis, unless ``--no-diagnose``) wlbridge behind an AP *without* the one-MAC rule:
  separates the cost of the AP's nftables filter from the cost of wlbridge's flows.

iperf3 (guest -> peer, TCP, ``--time`` s after a 1 s omitted warm-up) runs in rotating order
on each, ``--runs`` times; the ratio of the medians wlbridge/plain is the result (target
>= 0.9); the median of per-round ratios (runs next to each other, same machine load) is
printed too, because the machine may be shared.
Then, on the wlbridge LAN: packet-ins during ping floods (target 0 per 1,000 data packets)
and the number of flows one guest IP binding costs.

    sudo .venv/bin/python bench/bench_throughput.py [--runs 5] [--time 5] [--json FILE]
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

from common import (
    Bench,
    base_parser,
    ip_of,
    machine,
    offload_report,
    table,
    wait_until,
    write_json,
)
from wlbridge.flows import cookies

from topologies.procs import run

TARGET_RATIO = 0.9
FLOOD = 1000


def iperf(guest, peer, seconds: int) -> dict:
    res = guest.run("iperf3", "-c", ip_of(peer), "-t", str(seconds), "-O", "1", "-J",
                    timeout=seconds + 30)
    try:
        data = json.loads(res.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3 failed: {res.stdout[-500:]} {res.stderr[-500:]}") from None
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    end = data["end"]
    sent = sum(iv["sum"]["bytes"] for iv in data.get("intervals", []))  # incl. omitted 1st s
    return {"bps": end["sum_received"]["bits_per_second"], "bytes_sent_all": sent,
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "sender_cpu": end.get("cpu_utilization_percent", {}).get("host_total")}


def start_iperf_server(peer) -> None:
    peer.popen("iperf3", "-s", "-B", ip_of(peer), name=f"{peer.world.prefix}-iperf3")
    wait_until(lambda: "LISTEN" in peer.run("ss", "-ltn", "sport = :5201").stdout, 10,
               what="iperf3 server")


def vswitchd_cpu_s() -> float:
    """CPU seconds (user + system, all threads) used so far by ovs-vswitchd.

    With veths on the userspace datapath, one ovs-vswitchd thread moves every packet, and the
    kernel work of delivering what it sends (veth, the AP's bridge and nftables) runs in its
    system time too: CPU per byte is the cost of a configuration, and unlike throughput it
    hardly changes when other processes compete for the CPU."""
    pid = Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pmd_upcalls() -> dict[str, int]:
    """Datapath counters of ovs-vswitchd (shared by every netdev bridge on the machine)."""
    out = run(None, ["ovs-appctl", "dpif-netdev/pmd-stats-show"], check=False).stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([a-z][a-z ()-]+?):\s+(\d+)\s*(?:\(|$)", line)
        if m:
            key = m.group(1).strip()
            found[key] = found.get(key, 0) + int(m.group(2))
    return found


def flood(src, dst_ip: str) -> tuple[int, int]:
    """ping -f, FLOOD echo requests; (sent, received)."""
    res = src.run("ping", "-n", "-q", "-f", "-c", str(FLOOD), "-W", "1", dst_ip, timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", res.stdout)
    if not m:
        raise RuntimeError(f"ping flood failed: {res.stdout} {res.stderr}")
    return int(m.group(1)), int(m.group(2))


def dump_flows(bridge: str) -> list[str]:
    out = run(None, ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge]).stdout
    return [ln.strip() for ln in out.splitlines() if "cookie=" in ln]


def flow_cookie(line: str) -> int:
    return int(re.search(r"cookie=(0x[0-9a-f]+|\d+)", line).group(1), 0)


def flows_for_ip(lines: list[str], ip: str) -> list[str]:
    """Flows of ours whose match names this IP (arp_spa/arp_tpa/nw_src/nw_dst)."""
    pat = re.compile(rf"=({re.escape(ip)})(,|\s)")
    return [ln for ln in lines
            if cookies.decode(flow_cookie(ln)) and pat.search(ln.split("actions=")[0] + " ")]


def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="iperf3 runs per bridge (default 5)")
    ap.add_argument("--time", type=int, default=5, help="seconds per iperf3 run (default 5)")
    ap.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                    help="skip the third configuration (wlbridge behind an AP without the "
                    "one-MAC rule), which separates the AP filter's cost from wlbridge's")
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
        for name, w, _ in configs:
            g, p = w.guests[0], w.peers[0]
            assert g.ping(ip_of(p), count=2), f"{name}: guest cannot reach its peer"
        ctl.wait_bound(ip_of(wb.guests[0]), wb.guests[0].port)
        result["offload"] = {name: offload_report(w, br) for name, w, br in configs}
        for _, w, _ in configs:
            start_iperf_server(w.peers[0])

        runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
        upcalls: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
        for i in range(args.runs):
            # rotate the order so no configuration always runs first or last in a round
            k = i % len(configs)
            for name, w, _ in configs[k:] + configs[:k]:
                before, cpu0 = pmd_upcalls(), vswitchd_cpu_s()
                r = iperf(w.guests[0], w.peers[0], args.time)
                after, cpu1 = pmd_upcalls(), vswitchd_cpu_s()
                r["vswitchd_cpu_s"] = cpu1 - cpu0
                r["vswitchd_cpu_ms_per_gb"] = (cpu1 - cpu0) * 1000 / (r["bytes_sent_all"] / 1e9)
                upcalls[name].append({k: after.get(k, 0) - before.get(k, 0) for k in after})
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
        pi_before, c_before = ctl.packet_ins(), ctl.counters()
        s1, r1 = flood(gb, peer_ip)
        s2, r2 = flood(pb, guest_ip)
        pi_after, c_after = ctl.packet_ins(), ctl.counters()
        data_packets = s1 + r1 + s2 + r2  # echo requests + replies, both directions
        pi_delta = pi_after - pi_before
        per_1000 = pi_delta * 1000 / data_packets if data_packets else float("nan")
        changed = {k: c_after[k] - c_before.get(k, 0) for k in c_after
                   if k.startswith("packet_in.") and c_after[k] != c_before.get(k, 0)}

        # -------- flows per binding
        lines = dump_flows(ctl.bridge)
        ip_flows = flows_for_ip(lines, guest_ip)
        by_purpose: dict[str, int] = {}
        for ln in ip_flows:
            name = cookies.decode(flow_cookie(ln)).purpose.name.lower()
            by_purpose[name] = by_purpose.get(name, 0) + 1
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
            "paired_ratio_median": statistics.median(paired),
            "ratio_nofilter": (med["wlbridge-nofilter"] / med["plain"]
                               if "wlbridge-nofilter" in med else None),
            "target_ratio": TARGET_RATIO,
            "ratio_met": ratio >= TARGET_RATIO,
            "datapath_counters_per_run": upcalls,
            "packet_ins": {"before": pi_before, "after": pi_after, "delta": pi_delta,
                           "data_packets": data_packets, "per_1000_data_packets": per_1000,
                           "by_counter": changed, "flood_loss": {
                               "guest_to_peer": s1 - r1, "peer_to_guest": s2 - r2}},
            "packet_ins_met": pi_delta == 0,
            "flows_per_binding": {"matching_ip": len(ip_flows), "by_purpose": by_purpose,
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
    pi = result["packet_ins"]
    print()
    print(table("wlbridge results vs targets", ["metric", "value", "target", "met"], [
        ["throughput ratio wlbridge/plain", f"{ratio:.3f}", f">= {TARGET_RATIO}",
         "yes" if ratio >= TARGET_RATIO else "NO"],
        ["  median of per-round ratios", f"{result['paired_ratio_median']:.3f}",
         f">= {TARGET_RATIO}", "yes" if result["paired_ratio_median"] >= TARGET_RATIO else "NO"],
        ["  CPU cost ratio plain/wlbridge (ovs-vswitchd CPU per GB)",
         f"{result['cpu_cost_ratio']:.3f}", f">= {TARGET_RATIO}",
         "yes" if result["cpu_cost_ratio"] >= TARGET_RATIO else "NO"],
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
