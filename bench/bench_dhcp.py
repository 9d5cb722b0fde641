#!/usr/bin/env python3
"""Issue 4: DHCP through wlbridge vs a plain wired-style bridge; controller time per packet-in.

Live part: two emulated LANs side by side, each with one address-less guest:

* baseline: AP without the one-MAC rule (``basic_lan(filter=False)``), a netdev OVS bridge
  with a single ``NORMAL`` flow (a wired LAN: the server's unicast replies reach the guest);
* wlbridge: AP with the one-MAC rule, the real ``wlbridge setup`` / ``wlbridge run``
  (``--dhcp-mode broadcast``: the controller sets the BOOTP broadcast flag for the guest).

The same client runs alternately on both, ``--runs`` times each, and the time from client
start to the leased address being on the interface is measured (its script writes a
timestamp right after ``ip addr replace``).  Clients:

* ``udhcpc``: busybox ``udhcpc -f -q -n`` *without* ``-B`` (no broadcast flag from the
  client: wlbridge must add it); busybox sends its DISCOVER at once and the REQUEST as soon
  as an OFFER arrives: no random delays, no ARP check (no ``-a``).
* ``dhclient``: ISC dhclient 4.4, ``-d -1``, fresh lease file each run (so it starts with a
  DISCOVER, not an INIT-REBOOT REQUEST), ``initial-delay`` 0 (its default; set explicitly),
  ``select-timeout 0`` (take the first offer at once).

dnsmasq runs with ``--no-ping`` (topologies' ``ping_check=False`` default): no ICMP check
of the address before the OFFER.  Result: ratio of the medians (target <= 1.2) of the time
from client start; printed alongside, the ratios from the client's first script call and from
its DISCOVER on the wire (tcpdump on the guest's port) to the bound address.

In-process part: `wlbridge.core.Core` wired to nothing, fed DISCOVER/REQUEST from a guest
and OFFER/ACK from the uplink (frames built with os-ken's packet library), timing each
``core.packet_in`` call (and, separately, the serialisation of what it returns).

    sudo .venv/bin/python bench/bench_dhcp.py [--runs 30] [--clients udhcpc,dhclient]
                                                  [--core-only] [--json FILE]
"""

from __future__ import annotations

import gc
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from common import (
    Bench,
    base_parser,
    machine,
    offload_report,
    rotation,
    summary,
    table,
    wait_until,
    write_json,
)

from topologies.capture import TCPDUMP

TARGET_RATIO = 1.2
BOUND_TIMEOUT = 30.0

# A client script that only configures the address (like topologies' scripts) and stamps
# the wall clock after each event is done, into a file of "event epoch-seconds" lines.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
  bound|renew) ip -4 addr replace "$ip/${{mask:-24}}" dev "$interface" ;;
esac
echo "$1 $(date +%s.%N) ${{ip:-}}" >> {stamps}
exit 0
"""

DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
esac
echo "$reason $(date +%s.%N) ${{new_ip_address:-}}" >> {stamps}
exit 0
"""

DHCLIENT_CONF = """initial-delay 0;
select-timeout 0;
initial-interval 1;
backoff-cutoff 2;
timeout 30;
retry 2;
request subnet-mask, broadcast-address;
"""

BOUND_EVENTS = {"udhcpc": "bound", "dhclient": "BOUND"}
START_EVENTS = {"udhcpc": "deconfig", "dhclient": "PREINIT"}


# ================================================================== live measurement
class Client:
    """One DHCP client of one guest, with private files under `workdir`."""

    def __init__(self, kind: str, guest, workdir: Path) -> None:
        self.kind, self.guest = kind, guest
        self.dir = workdir / f"{guest.prefix}-{kind}"
        self.dir.mkdir(parents=True)
        self.stamps = self.dir / "stamps"
        self.script = self.dir / "script"
        template = UDHCPC_SCRIPT if kind == "udhcpc" else DHCLIENT_SCRIPT
        self.script.write_text(template.format(stamps=self.stamps))
        self.script.chmod(0o755)
        self.conf = self.dir / "dhclient.conf"
        self.conf.write_text(DHCLIENT_CONF)
        self.leases = self.dir / "dhclient.leases"

    def argv(self) -> list[str]:
        if self.kind == "udhcpc":
            return ["busybox", "udhcpc", "-f", "-q", "-n", "-i", self.guest.ifname,
                    "-s", str(self.script), "-t", "4", "-T", "2"]
        return ["dhclient", "-4", "-d", "-1", "-cf", str(self.conf), "-lf", str(self.leases),
                "-pf", str(self.dir / "dhclient.pid"), "-sf", str(self.script),
                self.guest.ifname]

    def _events(self) -> list[tuple[str, float, str]]:
        if not self.stamps.exists():
            return []
        out = []
        for line in self.stamps.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append((parts[0], float(parts[1]), parts[2] if len(parts) > 2 else ""))
        return out

    def once(self) -> dict:
        """One acquisition from scratch: (seconds from start, seconds from the start event)."""
        g = self.guest
        g.flush_addr()
        self.stamps.unlink(missing_ok=True)
        self.leases.unlink(missing_ok=True)
        bound = BOUND_EVENTS[self.kind]
        t0 = time.time()
        proc = g.popen(*self.argv(), name=f"{g.prefix}-{self.kind}")
        try:
            ev = wait_until(lambda: next((e for e in self._events() if e[0] == bound), None),
                            BOUND_TIMEOUT, interval=0.002, what=f"{self.kind} lease")
        finally:
            proc.stop()
            g.processes.procs.remove(proc)
        start = next((e for e in self._events() if e[0] == START_EVENTS[self.kind]), None)
        ip = ev[2]
        if ip not in g.ips():
            # the client's stop may have removed it (dhclient STOP); it was there when stamped
            pass
        return {"total": ev[1] - t0, "exchange": ev[1] - start[1] if start else None,
                "ip": ip, "events": [e[0] for e in self._events()], "t0": t0, "bound_at": ev[1]}


def dnsmasq_counts(world) -> dict[str, int]:
    log = world.dnsmasq_log()
    return {m: len(re.findall(rf"\bDHCP{m}\(", log)) for m in ("DISCOVER", "REQUEST", "OFFER",
                                                               "ACK")}


class Tcpdump:
    """tcpdump into a file for the length of a measurement (stopped by `stop`, or by the
    bench's cleanup); `lines` stops it and returns what it printed."""

    def __init__(self, bench: Bench, name: str, argv: list[str]) -> None:
        self.out = bench.workdir / f"tcpdump-{name}.txt"
        err = bench.workdir / f"tcpdump-{name}.err"
        self.fh = open(self.out, "w")  # noqa: SIM115 - closed by stop()
        with open(err, "w") as errors:
            self.proc = subprocess.Popen([*TCPDUMP, "-tt", "-l", *argv], stdout=self.fh,
                                         stderr=errors)
        bench.stack.callback(self.stop)
        wait_until(lambda: "listening on" in err.read_text() or self.proc.poll() is not None,
                   5, what=f"tcpdump {' '.join(argv)}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"tcpdump {' '.join(argv)}: {err.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()

    def lines(self) -> list[str]:
        self.stop()
        return self.out.read_text().splitlines()


class OpenFlowCapture(Tcpdump):
    """The controller's OpenFlow connection (loopback): for each packet-in, the time until
    the controller's next message to the switch (its packet-out/flow-mods).  Only segments
    over 300 bytes count: a DHCP packet-in or packet-out carries a whole DHCP frame
    (>= 342 bytes); echo keep-alives and small replies do not."""

    def __init__(self, bench: Bench, of_port: int) -> None:
        self.port = of_port
        super().__init__(bench, f"openflow-{of_port}",
                         ["-i", "lo", "-Q", "inout", "tcp", "port", str(of_port), "and",
                          "greater", "300"])

    def response_times_ms(self) -> list[float]:
        events = []
        for line in self.lines():
            m = re.match(r"(\d+\.\d+) IP [\d.]+\.(\d+) > [\d.]+\.(\d+):", line)
            if m:
                events.append((float(m.group(1)), int(m.group(3)) == self.port))
        return [(b[0] - a[0]) * 1000 for a, b in zip(events, events[1:]) if a[1] and not b[1]]


class ClientMessages(Tcpdump):
    """A guest's host-side port: when each DHCP client message (UDP 68 -> 67) left the
    guest, so that an acquisition can also be timed from its DISCOVER on the wire."""

    def __init__(self, bench: Bench, ifname: str) -> None:
        super().__init__(bench, f"client-{ifname}",
                         ["-i", ifname, "udp", "src", "port", "68", "and", "dst", "port", "67"])

    def times(self) -> list[float]:
        return [float(line.split()[0]) for line in self.lines() if line[:1].isdigit()]


def from_discover(runs: list[dict], sent: list[float]) -> None:
    """Add to each run the time from its first client message on the wire (the DISCOVER:
    the lease file is fresh) to the bound address."""
    for r in runs:
        first = min((t for t in sent if r["t0"] <= t <= r["bound_at"]), default=None)
        r["from_discover"] = None if first is None else r["bound_at"] - first


def live(bench: Bench, clients: list[str], runs: int) -> dict:
    print("building the wired-style baseline LAN (no one-MAC rule, NORMAL bridge) ...",
          flush=True)
    wa = bench.world(n_guests=1, filter=False, static_guests=False)
    plain = bench.plain_bridge(wa)
    print("building the Wi-Fi LAN with wlbridge ...", flush=True)
    wb = bench.world(n_guests=1, filter=True, static_guests=False)
    ctl = bench.wlbridge(wb)
    out: dict = {"offload": {"plain": offload_report(wa, plain.name),
                             "wlbridge": offload_report(wb, ctl.bridge)}, "clients": {}}
    for kind in clients:
        sides = {"plain": Client(kind, wa.guests[0], bench.workdir),
                 "wlbridge": Client(kind, wb.guests[0], bench.workdir)}
        times: dict[str, list[dict]] = {"plain": [], "wlbridge": []}
        dn_before = {"plain": dnsmasq_counts(wa), "wlbridge": dnsmasq_counts(wb)}
        pi_before = ctl.counters()
        capture = OpenFlowCapture(bench, ctl.of_port)
        wire = {side: ClientMessages(bench, c.guest.port) for side, c in sides.items()}
        for i, side in rotation(["plain", "wlbridge"], runs):
            r = sides[side].once()
            times[side].append(r)
            print(f"  {kind:<8} run {i + 1:>2} {side:<8} {r['total'] * 1000:7.1f} ms "
                  f"(after start event {r['exchange'] * 1000:6.1f} ms) {r['ip']}", flush=True)
        dn_after = {"plain": dnsmasq_counts(wa), "wlbridge": dnsmasq_counts(wb)}
        pi_after = ctl.counters()
        rtt = capture.response_times_ms()
        for side, cap in wire.items():
            from_discover(times[side], cap.times())
        res: dict = {"runs": times, "controller_response_ms": summary(rtt) if rtt else None}
        for metric in ("total", "exchange", "from_discover"):
            med = {s: statistics.median(r[metric] for r in times[s] if r[metric] is not None)
                   for s in times}
            res[f"median_{metric}_s"] = med
            res[f"ratio_{metric}"] = med["wlbridge"] / med["plain"]
        res["first_run_s"] = {s: times[s][0]["total"] for s in times}
        res["dnsmasq_messages"] = {s: {k: dn_after[s][k] - dn_before[s][k] for k in dn_after[s]}
                                   for s in dn_after}
        res["controller_counters"] = {k: v - pi_before.get(k, 0) for k, v in pi_after.items()
                                      if v != pi_before.get(k, 0)}
        res["target_met"] = res["ratio_total"] <= TARGET_RATIO
        out["clients"][kind] = res
    return out


# ================================================================== in-process core timing
def core_timing(iterations: int, n_guests: int = 32) -> dict:
    from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp
    from os_ken.ofproto import ofproto_protocol
    from wlbridge.compat import ofp
    from wlbridge.core import Core, CoreConfig
    from wlbridge.model.state import Port

    station, router, router_ip = "02:5a:00:00:00:01", "02:10:00:00:00:01", "10.0.0.1"
    uplink = 1
    guests = list(range(2, 2 + n_guests))

    def mac(p: int) -> str:
        return f"02:00:00:00:{p // 256:02x}:{p % 256:02x}"

    def opt(tag: int, value: bytes) -> dhcp.option:
        return dhcp.option(tag=tag, value=value)

    def frame(client: bool, msg_type: int, chaddr: str, xid: int, yiaddr: str = "0.0.0.0",
              eth_src: str = "", eth_dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
        opts = [opt(dhcp.DHCP_MESSAGE_TYPE_OPT, bytes([msg_type]))]
        if client:
            opts.append(opt(dhcp.DHCP_PARAMETER_REQUEST_LIST_OPT, b"\x01\x03\x06"))
        if msg_type == dhcp.DHCP_REQUEST:
            opts += [opt(50, bytes(map(int, yiaddr.split(".")))),
                     opt(54, bytes(map(int, router_ip.split("."))))]
            yiaddr = "0.0.0.0"
        if not client:
            opts += [opt(54, bytes(map(int, router_ip.split(".")))),
                     opt(51, struct.pack("!I", 3600)), opt(1, b"\xff\xff\xff\x00")]
        d = dhcp.dhcp(op=1 if client else 2, chaddr=chaddr, xid=xid, yiaddr=yiaddr,
                      options=dhcp.options(option_list=opts))
        p = packet.Packet()
        p.add_protocol(ethernet.ethernet(eth_dst, eth_src or (chaddr if client else router),
                                         0x0800))
        p.add_protocol(ipv4.ipv4(src="0.0.0.0" if client else router_ip,
                                 dst="255.255.255.255", proto=17))
        p.add_protocol(udp.udp(68 if client else 67, 67 if client else 68))
        p.add_protocol(d)
        p.serialize()
        return bytes(p.data)

    core = Core(CoreConfig(uplink="wlan0", max_bindings=100000))
    now = 1000.0
    ports = [Port(uplink, "wlan0", station), Port(ofp.OFPP_LOCAL, "br-wl", station)]
    ports += [Port(p, f"g{p}", f"fe:00:00:00:{p // 256:02x}:{p % 256:02x}") for p in guests]
    core.switch_connected(0xAB, ports, now)
    core.host_addresses(["10.0.0.2"], now)
    for p in guests:  # first frame of each guest: its MAC is learned (not timed)
        core.packet_in(p, frame(True, dhcp.DHCP_DISCOVER, mac(p), 1), now)
    desc = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)

    kinds = ("discover", "offer", "request", "ack_new", "ack_same")
    core_ns: dict[str, list[int]] = {k: [] for k in kinds}
    cpu_ns: dict[str, list[int]] = {k: [] for k in kinds}
    ser_ns: dict[str, list[int]] = {k: [] for k in kinds}
    replies: dict[str, list[int]] = {k: [] for k in kinds}

    def timed(kind: str, in_port: int, data: bytes) -> None:
        c = time.thread_time_ns()
        t = time.perf_counter_ns()
        msgs = core.packet_in(in_port, data, now)
        t1 = time.perf_counter_ns()
        cpu_ns[kind].append(time.thread_time_ns() - c)
        for m in msgs:
            m.datapath = desc
            m.serialize()
        t2 = time.perf_counter_ns()
        core_ns[kind].append(t1 - t)
        ser_ns[kind].append(t2 - t1)
        replies[kind].append(len(msgs))

    counters_before = dict(core.counters.items())
    # warm-up round (imports, caches), not recorded
    for i in range(iterations + n_guests):
        p = guests[i % n_guests]
        m, xid = mac(p), 0x1000 + i
        # each round a new address for the guest: the ACK replaces its previous lease
        ip = f"10.{1 + (i // 60000) % 200}.{(i // 250) % 240}.{10 + i % 240}"
        record = i >= n_guests
        seq = [("discover", p, frame(True, dhcp.DHCP_DISCOVER, m, xid)),
               ("offer", uplink, frame(False, dhcp.DHCP_OFFER, m, xid, yiaddr=ip)),
               ("request", p, frame(True, dhcp.DHCP_REQUEST, m, xid, yiaddr=ip)),
               ("ack_new", uplink, frame(False, dhcp.DHCP_ACK, m, xid, yiaddr=ip)),
               ("ack_same", uplink, frame(False, dhcp.DHCP_ACK, m, xid, yiaddr=ip))]
        for kind, port, data in seq:
            if record:
                timed(kind, port, data)
            else:
                core.packet_in(port, data, now)
        now += 0.001
    counters = {k: v - counters_before.get(k, 0) for k, v in core.counters.items()
                if v != counters_before.get(k, 0)}
    bad = {k: v for k, v in counters.items() if "refused" in k or "malformed" in k
           or "unknown" in k or "error" in k}
    if bad:
        raise RuntimeError(f"core did not take the frames as expected: {bad}")

    def us(values: list[int]) -> dict:
        s = summary([v / 1000 for v in values])
        s["mean"] = statistics.fmean(v / 1000 for v in values)
        return s

    all_core = [v for k in kinds for v in core_ns[k]]
    return {
        "iterations": iterations, "guests": n_guests, "gc": gc.isenabled(),
        "core_us": {k: us(v) for k, v in core_ns.items()},
        "core_cpu_us": {k: us(v) for k, v in cpu_ns.items()},
        "core_cpu_us_all": us([v for k in kinds for v in cpu_ns[k]]),
        "serialize_us": {k: us(v) for k, v in ser_ns.items()},
        "messages_returned": {k: statistics.median(v) for k, v in replies.items()},
        "core_us_all": us(all_core),
        "core_plus_serialize_us_all": us([a + b for k in kinds
                                          for a, b in zip(core_ns[k], ser_ns[k])]),
        "counters": counters,
    }


# ================================================================== main
def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30,
                    help="acquisitions per client and bridge (default 30)")
    ap.add_argument("--clients", default="udhcpc,dhclient",
                    help="comma-separated: udhcpc, dhclient (default both)")
    ap.add_argument("--iterations", type=int, default=3000,
                    help="DHCP exchanges fed to the in-process core (default 3000)")
    ap.add_argument("--core-only", action="store_true",
                    help="only the in-process core timing (no root needed)")
    args = ap.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if not set(clients) <= set(BOUND_EVENTS):
        ap.error(f"unknown client in {clients}")
    result: dict = {"benchmark": "dhcp", "issue": 4, "machine": machine(),
                    "params": {"runs": args.runs, "clients": clients,
                               "iterations": args.iterations}}
    t_start = time.monotonic()
    if not args.core_only:
        bench = Bench(keep_logs=args.keep_logs)
        bench.require_root()
        try:
            result["live"] = live(bench, clients, args.runs)
        finally:
            bench.close()
    print("timing the in-process core ...", flush=True)
    result["core"] = core_timing(args.iterations)
    result["elapsed_s"] = round(time.monotonic() - t_start, 1)
    result["machine"]["loadavg_end"] = os.getloadavg()

    if "live" in result:
        rows = []
        for kind, r in result["live"]["clients"].items():
            for side in ("plain", "wlbridge"):
                rows.append([kind, side, f"{r['median_total_s'][side] * 1000:.1f}",
                             f"{r['median_exchange_s'][side] * 1000:.1f}",
                             f"{r['median_from_discover_s'][side] * 1000:.1f}",
                             f"{r['first_run_s'][side] * 1000:.1f}",
                             "/".join(str(r["dnsmasq_messages"][side][m])
                                      for m in ("DISCOVER", "OFFER", "REQUEST", "ACK"))])
        print()
        print(table(f"DHCP: client start -> leased address on the interface, median of "
                    f"{args.runs} runs each (alternating)",
                    ["client", "bridge", "total ms", "from start event ms",
                     "from DISCOVER ms", "1st run ms", "server saw D/O/R/A"], rows))
        print()
        print(table("DHCP ratio wlbridge/plain vs target (judged on the total)",
                    ["client", "ratio (total)", "ratio (from start event)",
                     "ratio (from DISCOVER)", "target", "met"],
                    [[k, f"{r['ratio_total']:.2f}", f"{r['ratio_exchange']:.2f}",
                      f"{r['ratio_from_discover']:.2f}", f"<= {TARGET_RATIO}",
                      "yes" if r["target_met"] else "NO"]
                     for k, r in result["live"]["clients"].items()]))
        for k, r in result["live"]["clients"].items():
            rt = r["controller_response_ms"]
            pis = r["controller_counters"].get("packet_in.dhcp", 0)
            if rt:
                print(f"  {k}: {pis / args.runs:.1f} DHCP packet-ins per acquisition; live "
                      f"controller response (packet-in -> its reply on the OpenFlow socket) "
                      f"median {rt['median']:.2f} ms, p99 {rt['p99']:.2f} ms, n={rt['n']}")
    c = result["core"]
    rows = [[k, f"{c['core_us'][k]['median']:.0f}", f"{c['core_us'][k]['p99']:.0f}",
             f"{c['core_cpu_us'][k]['median']:.0f}", f"{c['core_cpu_us'][k]['p99']:.0f}",
             f"{c['serialize_us'][k]['median']:.0f}", c["messages_returned"][k]]
            for k in c["core_us"]]
    rows.append(["all", f"{c['core_us_all']['median']:.0f}", f"{c['core_us_all']['p99']:.0f}",
                 f"{c['core_cpu_us_all']['median']:.0f}", f"{c['core_cpu_us_all']['p99']:.0f}",
                 "", ""])
    print()
    print(table(f"Controller core per DHCP packet-in, {c['iterations']} exchanges over "
                f"{c['guests']} guests (us; wall clock, and CPU time of the thread)",
                ["packet-in", "wall median", "wall p99", "cpu median", "cpu p99",
                 "serialize median", "msgs out"], rows))
    print(f"  elapsed {result['elapsed_s']} s")
    write_json(args.json, result)
    live_ok = all(r["target_met"] for r in result.get("live", {}).get("clients", {}).values())
    return 0 if live_ok else 1


if __name__ == "__main__":
    sys.exit(main())
