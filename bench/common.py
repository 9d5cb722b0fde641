"""Shared plumbing for wlbridge's benchmarks (bench/bench_*.py): worlds, bridges, statistics.

Every benchmark is a plain script run as root with the project's venv::

    sudo .venv/bin/python bench/bench_throughput.py [--json out.json]

It builds its own emulated Wi-Fi LANs (`topologies`), measures, prints a table and removes
everything it created, also on failure or SIGTERM/SIGINT (`Bench` below).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "controller", ROOT / "tests" / "integration"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from wlbridge.flows import cookies

from topologies import OvsBridge, World, basic_lan, cleanup_leftovers, free_prefix, ovs_problem
from topologies.procs import run, wait_for


# ------------------------------------------------------------------ statistics
def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = max(0, min(len(vals) - 1, int(-(-q * len(vals) // 100)) - 1))
    return vals[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
        "p99": percentile(values, 99),
    }


# ------------------------------------------------------------------ output
def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ovs": cmd("ovs-vsctl", "--version").splitlines()[0] if cmd("ovs-vsctl", "--version")
        else "",
        "loadavg_start": os.getloadavg(),
    }


def base_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the worlds' work directories (dnsmasq, controller logs)")
    return ap


def write_json(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
        print(f"\nresults written to {path}")


# ------------------------------------------------------------------ lifecycle
class Bench:
    """Owns everything a benchmark creates; `close()` removes it in reverse order.

    SIGTERM and SIGHUP raise SystemExit (like Ctrl-C raises KeyboardInterrupt), so the
    ``finally`` of the script always runs and nothing is left behind.
    """

    def __init__(self, keep_logs: bool = False) -> None:
        self.keep_logs = keep_logs
        self.stack = contextlib.ExitStack()
        self.prefixes: list[str] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="wlbench-"))
        self.pid = os.getpid()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if os.getpid() != self.pid:
            # A forked helper (pyroute2 forks to enter namespaces) inherits this handler; it
            # must die as by default, never run our cleanup.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    def require_root(self) -> None:
        if os.geteuid() != 0:
            sys.exit("this benchmark needs root (network namespaces, Open vSwitch)")
        problem = ovs_problem()
        if problem:
            sys.exit(problem)

    def world(self, **kw: Any) -> World:
        """Build a basic_lan world (fresh prefix); torn down by close()."""
        prefix = free_prefix()
        self.prefixes.append(prefix)
        self.stack.callback(cleanup_leftovers, prefix)  # safety net, runs after teardown
        world = World(basic_lan(prefix=prefix, **kw), keep_logs=self.keep_logs)
        self.stack.callback(world.teardown)
        world.build()
        print(f"  world {prefix}: LAN {world.subnet}, AP one-MAC rule "
              f"{'on' if kw.get('filter', True) else 'off'}", flush=True)
        return world

    def plain_bridge(self, world: World, guests=None) -> OvsBridge:
        """The baseline: a netdev OVS bridge, uplink + guest ports, one NORMAL flow."""
        br = OvsBridge(f"{world.prefix}-pb")
        self.stack.callback(br.delete)
        br.create()
        br.add_port(world.uplink)
        for g in world.guests if guests is None else guests:
            br.add_port(g.port)
        br.normal()
        return br

    def set_field_bridge(self, world: World) -> OvsBridge:
        """The inherent cost of MAC translation: a bridge (one guest) whose flows only do
        what wlbridge does to every data packet -- guest -> LAN: source MAC := the station's,
        LAN -> guest: destination MAC (the station's) := the guest's -- then output, no
        NORMAL.  The LAN peer is told (a permanent neighbour entry) that the guest's address
        is at the station MAC, as the one-MAC LAN sees it; ARP passes untranslated (use a LAN
        without the one-MAC rule)."""
        br = self.plain_bridge(world)
        guest, peer, up = world.guests[0], world.peers[0], world.uplink
        station = Path(f"/sys/class/net/{up}/address").read_text().strip()
        run(None, ["ovs-ofctl", "del-flows", br.name])
        for flow in ((f"priority=10,in_port={guest.port},"
                      f"actions=set_field:{station}->eth_src,output:{up}"),
                     (f"priority=10,in_port={up},dl_dst={station},"
                      f"actions=set_field:{guest.mac}->eth_dst,output:{guest.port}"),
                     f"priority=5,in_port={up},actions=output:{guest.port}"):
            run(None, ["ovs-ofctl", "add-flow", br.name, flow])
        peer.run("ip", "neigh", "replace", ip_of(guest), "lladdr", station, "dev",
                 peer.ifname, "nud", "permanent", check=True)
        return br

    def wlbridge(self, world: World, guests=None, *, verbose: bool = False,
                 setup_args: tuple[str, ...] = (), **kw: Any):
        """The real product: `wlbridge setup` (plus `setup_args`), guests attached,
        `wlbridge run` started (without ``-v`` unless `verbose`: debug logging is not how it
        runs in production)."""
        workdir = self.workdir / f"wlbridge-{world.prefix}"
        workdir.mkdir(parents=True)
        ctl = (_VerboseController if verbose else QuietController)(world, workdir, **kw)
        self.stack.callback(ctl.close)
        ctl.setup(*setup_args)
        ctl.attach(*(world.guests if guests is None else guests))
        ctl.start()
        return ctl

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            if not self.keep_logs:
                import shutil

                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                print(f"logs kept in {self.workdir}", file=sys.stderr)


# ------------------------------------------------------------------ interfaces
def tx_checksum(netns: str | None, ifname: str) -> str:
    """'on'/'off' for tx-checksumming of an interface (from ethtool -k)."""
    res = run(netns, ["ethtool", "-k", ifname], check=False)
    for line in res.stdout.splitlines():
        if line.strip().startswith("tx-checksumming:"):
            return line.split(":", 1)[1].split()[0]
    return "?"


def tx_off(netns: str | None, ifname: str) -> None:
    run(netns, ["ethtool", "-K", ifname, "tx", "off"], check=False)


def offload_report(world: World, bridge: str) -> dict[str, str]:
    """TX checksum offload of every interface on the data path (all must be 'off')."""
    report = {f"{g.name}:{g.ifname}": tx_checksum(g.netns, g.ifname) for g in world.guests}
    report.update({f"root:{g.port}": tx_checksum(None, g.port) for g in world.guests})
    report[f"root:{world.uplink}"] = tx_checksum(None, world.uplink)
    report[f"root:{bridge} (internal)"] = tx_checksum(None, bridge)
    for p in world.peers:
        report[f"{p.name}:{p.ifname}"] = tx_checksum(p.netns, p.ifname)
    return report


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = ""):
    """`topologies.procs.wait_for`, raising when time runs out."""
    value = wait_for(pred, timeout, interval)
    if not value:
        raise RuntimeError(f"timed out waiting for {what or pred}")
    return value


def ip_of(host) -> str:
    return str(host.addr).split("/")[0]


# ------------------------------------------------------------------ iperf3 and the datapath
FLOOD = 1000  # echo requests per ping flood


def start_iperf_server(peer, bind: str | None = None, what: str = "iperf3 server") -> None:
    """iperf3 -s in a peer (on `bind` only, else dual-stack), once it listens."""
    peer.popen("iperf3", "-s", *(["-B", bind] if bind else []), name=f"{peer.prefix}-iperf3")
    wait_until(lambda: "LISTEN" in peer.run("ss", "-ltn", "sport = :5201").stdout, 10,
               what=what)


def iperf(client, dst: str, seconds: int, *, src: str | None = None,
          reverse: bool = False) -> dict:
    """One iperf3 TCP run from `client` to `dst` (`reverse`: dst sends) after a 1 s omitted
    warm-up: received bits per second, all bytes sent (incl. the warm-up), retransmits, the
    sender's CPU, the TCP MSS."""
    argv = ["iperf3", "-c", dst, *(["-B", src] if src else []), "-t", str(seconds), "-O", "1",
            "-J", *(["-R"] if reverse else [])]
    for attempt in range(10):
        res = client.run(*argv, timeout=seconds + 30)
        try:
            data = json.loads(res.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 failed: {res.stdout[-500:]} {res.stderr[-500:]}") from None
        # the server may still be closing the previous test (one test at a time)
        if "busy" not in data.get("error", "") or attempt == 9:
            break
        time.sleep(1)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    end = data["end"]
    sent = sum(iv["sum"]["bytes"] for iv in data.get("intervals", []))  # incl. omitted 1st s
    return {"bps": end["sum_received"]["bits_per_second"], "bytes_all": sent,
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "sender_cpu": end.get("cpu_utilization_percent", {}).get("host_total"),
            "mss": data["start"].get("tcp_mss_default")}


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


def datapath_cost(measure: Callable[[], dict]) -> dict:
    """`measure()` (an `iperf` run), with what ovs-vswitchd spent meanwhile: its CPU
    (`vswitchd_cpu_s`, per GB sent), its datapath counters' increase (`upcalls`)."""
    before, cpu0 = pmd_upcalls(), vswitchd_cpu_s()
    r = measure()
    after, cpu1 = pmd_upcalls(), vswitchd_cpu_s()
    r["vswitchd_cpu_s"] = cpu1 - cpu0
    r["vswitchd_cpu_ms_per_gb"] = (cpu1 - cpu0) * 1000 / (r["bytes_all"] / 1e9)
    r["upcalls"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return r


def rotation(configs: list, rounds: int):
    """(round, configuration): each round every configuration once, starting one further
    each round, so no configuration always runs first or last in a round."""
    for i in range(rounds):
        k = i % len(configs)
        for config in configs[k:] + configs[:k]:
            yield i, config


def flood(src, dst_ip: str, src_ip: str | None = None) -> tuple[int, int]:
    """ping -f (-6 for an IPv6 `dst_ip`), FLOOD echo requests; (sent, received)."""
    family = ["-6"] if ":" in dst_ip else []
    res = src.run("ping", *family, "-n", "-q", "-f", "-c", str(FLOOD), "-W", "1",
                  *(["-I", src_ip] if src_ip else []), dst_ip, timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", res.stdout)
    if not m:
        raise RuntimeError(f"ping flood failed: {res.stdout} {res.stderr}")
    return int(m.group(1)), int(m.group(2))


def packet_in_changes(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The controller's packet_in.* counters that changed between two `counters()`."""
    return {k: after[k] - before.get(k, 0) for k in after
            if k.startswith("packet_in.") and after[k] != before.get(k, 0)}


def flood_packet_ins(ctl, there: tuple, back: tuple) -> dict:
    """Packet-ins while `flood(*there)` then `flood(*back)` run (guest -> peer, peer ->
    guest); echo requests and replies both ways are the data packets."""
    pi_before, c_before = ctl.packet_ins(), ctl.counters()
    s1, r1 = flood(*there)
    s2, r2 = flood(*back)
    pi_after, c_after = ctl.packet_ins(), ctl.counters()
    data_packets = s1 + r1 + s2 + r2
    delta = pi_after - pi_before
    return {"before": pi_before, "after": pi_after, "delta": delta,
            "data_packets": data_packets,
            "per_1000_data_packets": delta * 1000 / data_packets if data_packets
            else float("nan"),
            "by_counter": packet_in_changes(c_before, c_after),
            "flood_loss": {"guest_to_peer": s1 - r1, "peer_to_guest": s2 - r2}}


# ------------------------------------------------------------------ what guests leave behind
def guest_ports(bridge: str) -> list[str]:
    """The bridge's guest ports of `wlbridge attach` and the container plugins."""
    from topologies.ovs import vsctl

    return [p for p in vsctl("list-ports", bridge).split() if p.startswith("wl-")]


def meters(bridge: str) -> int:
    from topologies.ovs import ofctl

    out = ofctl("-O", "OpenFlow13", "dump-meters", bridge)
    return sum(1 for line in out.splitlines() if "meter=" in line)


def flows(bridge: str) -> int:
    from topologies.ovs import ofctl

    return sum(1 for line in ofctl("-O", "OpenFlow13", "dump-flows", bridge).splitlines()
               if "cookie=" in line)


_ACK = re.compile(r"DHCPACK\(\S+\) (\S+) ([0-9a-f:]{17})")
_RELEASE = re.compile(r"DHCPRELEASE\(\S+\) (\S+) ([0-9a-f:]{17})")


def unreleased(world, since: int = 0) -> dict[str, str]:
    """MAC -> address of the leases the DHCP server acked after offset `since` of its log
    and that no DHCPRELEASE followed: the leak, whether or not the lease has expired since
    (the lease file forgets an expired lease; dnsmasq's log does not)."""
    held: dict[str, str] = {}
    for line in world.dnsmasq_log()[since:].splitlines():
        if (m := _ACK.search(line)):
            held[m.group(2)] = m.group(1)
        elif (m := _RELEASE.search(line)):
            held.pop(m.group(2), None)
    return held


def leases(world, before: set[str]) -> int:
    """The DHCP server's leases now that were not there at the start (the station's own and
    any other left out)."""
    return len({lease.mac for lease in world.leases()} - before)


def left_behind(world, wl, flows0: int, meters0: int, leases0: set[str],
                log_from: int = 0) -> dict[str, int]:
    """What is left: guest ports, bindings, flows and meters added, leases in the server's
    lease file that were not there at the start, and leases never released since offset
    `log_from` of the server's log (`unreleased`: also those expired meanwhile)."""
    return {"ports": len(guest_ports(wl.bridge)),
            "bindings": sum(len(g["ips"]) for g in wl.status()["guests"]),
            "leases": leases(world, leases0),
            "leases_never_released": len(set(unreleased(world, log_from)) - leases0),
            "flows_added": flows(wl.bridge) - flows0,
            "meters_added": meters(wl.bridge) - meters0}


def settle(world, wl, leases0: set[str]) -> None:
    """Wait (bounded) for the ports and the leases to go; what stays is counted."""
    try:
        wait_until(lambda: guest_ports(wl.bridge) == [], timeout=120, what="ports gone")
    except RuntimeError:
        from topologies.ovs import vsctl

        print("  ports left:", {p: vsctl("get", "Interface", p, "external_ids")
                                for p in guest_ports(wl.bridge)}, flush=True)
    try:
        wait_until(lambda: not leases(world, leases0), timeout=30, what="leases released")
    except RuntimeError:
        print("  leases left:", [(x.mac, x.ip) for x in world.leases()
                                 if x.mac not in leases0], flush=True)


# ------------------------------------------------------------------ the DHCP floor
def dhcp_exchange(world, wl, run_dir: Path, runs: int) -> dict:
    """One DHCP exchange (udhcpc until bound) through wlbridge, `runs` times, in a namespace
    attached to the bridge; the lease released at the end."""
    from harness import wlbridge as _wlbridge_cli
    from wlbridge.host import guest_dhcp

    name = f"{world.prefix}fl"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        _wlbridge_cli("attach", name, "--bridge", wl.bridge, "--netns", name, "--run-dir",
                      str(run_dir))
        times, got = [], None
        for _ in range(runs):
            t0 = time.monotonic()
            got = guest_dhcp.lease_once(f"/run/netns/{name}", "eth0", name, str(run_dir), 20)
            times.append(time.monotonic() - t0)
            if got is None:
                raise RuntimeError("no DHCP lease for the floor's namespace")
        guest_dhcp.lease_once(f"/run/netns/{name}", "eth0", name, str(run_dir), 20,
                              request=got[0], release=True)
    finally:
        _wlbridge_cli("detach", name, "--bridge", wl.bridge, check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
    return summary(times)


# ------------------------------------------------------------------ OpenFlow flows
def dump_flows(bridge: str) -> list[str]:
    out = run(None, ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge]).stdout
    return [ln.strip() for ln in out.splitlines() if "cookie=" in ln]


def flow_cookie(line: str) -> int:
    return int(re.search(r"cookie=(0x[0-9a-f]+|\d+)", line).group(1), 0)


def flows_for_ip(lines: list[str], ip: str) -> list[str]:
    """Flows of ours whose match names this address (arp_spa/arp_tpa/nw_src/nw_dst,
    ipv6_src/ipv6_dst/nd_target)."""
    pat = re.compile(rf"=({re.escape(str(ipaddress.ip_address(ip)))})(,|\s)")
    return [ln for ln in lines
            if cookies.decode(flow_cookie(ln)) and pat.search(ln.split("actions=")[0] + " ")]


def by_purpose(lines: list[str]) -> dict[str, int]:
    """How many of these flows each cookie purpose has ('?': not one of ours)."""
    counts: dict[str, int] = {}
    for ln in lines:
        c = cookies.decode(flow_cookie(ln))
        name = c.purpose.name.lower() if c else "?"
        counts[name] = counts.get(name, 0) + 1
    return counts


# ------------------------------------------------------------------ the controller process
from harness import CLI
from harness import Controller as _VerboseController


class QuietController(_VerboseController):
    """`harness.Controller`, but `wlbridge run` at its default log level (INFO), as a user
    runs it; the harness starts it with ``-v`` (DEBUG), which costs time on every event."""

    def start(self, wait: bool = True) -> None:
        from harness import wait_for as harness_wait_for

        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                CLI + ["run", "--bridge", self.bridge, "--listen-port", str(self.of_port),
                       "--state-dir", str(self.state_dir), "--status-port",
                       str(self.status_port), "--dhcp-mode", self.dhcp_mode, *self.extra],
                stdout=log, stderr=subprocess.STDOUT)
        if wait:
            harness_wait_for(self._connected, timeout=20, what="the switch to connect")


def interpreter_baseline(runs: int = 5, env: dict | None = None) -> dict[str, dict[str, float]]:
    """What no controller start can beat, beside which its start-up is read: the bare
    interpreter (``python -c pass``) and the import of the app module alone, each from
    spawn to exit (seconds; summaries of `runs`; `env`: the environment, e.g. another
    source tree's PYTHONPATH)."""
    out = {}
    for name, code in (("bare interpreter", "pass"), ("import wlbridge_app", "import wlbridge_app")):
        times = []
        for _ in range(runs):
            started = time.monotonic()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            times.append(time.monotonic() - started)
        out[name] = summary(times)
    return out
