#!/usr/bin/env python3
"""Issue 16: wlbridge on a real 802.11 stack (the Wi-Fi test bed VM), as ratios in one run.

In the VM (`topologies.wifibed`): hwsim radios, a WPA2-PSK hostapd AP bridged to a LAN,
the station wlan1 associated by wpa_supplicant, `wlbridge setup --uplink wlan1` with its
defaults (kernel `system` datapath) and `wlbridge run`, one static guest.  Measured:

* TCP (iperf3, ``--time`` s) LAN peer <- guest through wlbridge, and <- the station host
  itself (its address on br-wl) over the same radio, alternating, ``--runs`` rounds; result =
  median(guest) / median(host).  Software emulation (TCG) makes absolute numbers meaningless.
* packet-ins per 1,000 data packets: a 1,000-packet ping flood guest -> peer (target 0).

    sudo .venv/bin/python bench/bench_wifi.py [--runs 3] [--time 3] [--json FILE]

The host part boots the VM and prints what the guest part (``--in-bed``) printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from common import base_parser, machine, table, write_json

from topologies.procs import Proc, wait_for

RESULT = "bench-wifi.json"


def iperf(run, seconds: int) -> float:
    from topologies.wifibed.bed import PEER_IP

    out = run("iperf3", "-c", PEER_IP, "-t", str(seconds), "-O", "1", "-J")
    try:
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError):
        return 0.0


def in_bed(args) -> int:
    from topologies.wifibed.bed import PEER_IP, PEER_NS, STATION, STATION_IP, Bed, sh
    from topologies.wifibed.product import BRIDGE, Wlbridge

    out = Path(os.environ.get("WLBRIDGE_WIFIBED_OUT", "/tmp"))
    bed = Bed(out / "logs")
    wl = Wlbridge(bed.logs)
    try:
        bed.start()
        if not bed.wait_associated(90):
            print("the station never associated", file=sys.stderr)
            return 1
        sh("ip", "addr", "add", f"{STATION_IP}/24", "dev", STATION)
        wl.setup()
        wl.start()
        g = bed.add_guest("bench", BRIDGE)
        g.run("ip", "addr", "add", "10.77.0.61/24", "dev", "eth0")
        assert wait_for(lambda: g.ping(PEER_IP), 30), "the guest cannot reach the peer"
        server = Proc("iperf3-server", PEER_NS, ["iperf3", "-s"], bed.logs / "iperf3-s.out")
        wait_for(lambda: "listening" in server.output(), 20, 0.2)
        guest_bps, host_bps = [], []
        for _ in range(args.runs):
            guest_bps.append(iperf(lambda *a: g.run(*a, timeout=120).stdout, args.time))
            host_bps.append(iperf(lambda *a: sh(*a, check=False, timeout=120), args.time))
        server.stop()
        before = wl.packet_ins()
        flood = g.run("ping", "-n", "-q", "-f", "-c", "1000", "-W", "1", PEER_IP,
                      timeout=300).stdout
        packet_ins = wl.packet_ins() - before
        result = {
            "machine": machine(), "datapath": sh("ovs-vsctl", "get", "bridge", BRIDGE,
                                                 "datapath_type").strip(),
            "guest_bps": guest_bps, "host_bps": host_bps,
            "ratio": (statistics.median(guest_bps) / statistics.median(host_bps)
                      if min(host_bps) > 0 else None),
            "packet_ins_per_1000": packet_ins, "flood": flood.strip().splitlines()[-2:],
        }
        (out / RESULT).write_text(json.dumps(result, indent=1))
        return 0
    finally:
        wl.stop()
        bed.stop()


def main() -> int:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--time", type=int, default=3)
    ap.add_argument("--in-bed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_bed:
        return in_bed(args)
    from topologies.wifibed import image, vm

    problem = vm.problem()
    if problem:
        print(f"bench_wifi: the VM cannot start: {problem}", file=sys.stderr)
        return 2
    img = image.prepare()
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"wf-bench-wifi-{os.getpid()}"
    here = Path(__file__).resolve().parent.parent
    cmd = (f"{sys.executable} bench/bench_wifi.py --in-bed --runs {args.runs} "
           f"--time {args.time}")
    env = {"WLBRIDGE_WIFIBED": "1", "WLBRIDGE_WIFIBED_OUT": image.OUT_MOUNT,
           "PYTHONPATH": os.environ.get("PYTHONPATH", f"{here}/controller:{here}")}
    rc = vm.run(img, out, vm.guest_job(cmd, env, str(here)), timeout=900, echo=None)
    if rc != 0 or not (out / RESULT).exists():
        print(f"bench_wifi: the run failed (rc={rc}); console and logs in {out}",
              file=sys.stderr)
        return 1
    result = json.loads((out / RESULT).read_text())
    mbit = [[i + 1, g / 1e6, h / 1e6] for i, (g, h) in
            enumerate(zip(result["guest_bps"], result["host_bps"]))]
    print(table(f"TCP to the LAN peer over the radio ({result['datapath']} datapath, TCG VM)",
                ["round", "guest via wlbridge Mbit/s", "station host Mbit/s"], mbit))
    print(f"ratio of medians guest/host: {result['ratio']:.2f}" if result["ratio"] else
          "ratio: n/a (the host transferred nothing)")
    print(f"packet-ins per 1,000 data packets: {result['packet_ins_per_1000']} (target 0)")
    write_json(args.json, result)
    return 0 if result["packet_ins_per_1000"] == 0 and result["ratio"] else 1


if __name__ == "__main__":
    sys.exit(main())
