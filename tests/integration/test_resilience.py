"""Resilience in the emulated Wi-Fi LAN (issue #6): controller and OVS restarts, a station MAC
change, a flooding guest.

The OVS restart test restarts the one ovs-vswitchd of this machine (there is no other): any
other OVS test running at that moment sees its switch vanish for about a second.  It is kept
short, and always leaves ovs-vswitchd running.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import ap_foreign, wait_for

from topologies.ovs import vsctl

OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
VSWITCHD_PID = Path("/var/run/openvswitch/ovs-vswitchd.pid")
NEW_STATION = "02:5a:6e:00:00:42"


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def diag(world, wl, n: int = 40) -> str:
    lines = [ln for ln in wl.logs().splitlines() if " pyroute2" not in ln and " asyncio" not in ln]
    log = "\n".join(lines[-n:])
    try:
        counters = wl.counters()
    except OSError as exc:
        counters = f"(status unavailable: {exc})"
    return (f"--- controller log (tail) ---\n{log}\n--- counters ---\n{counters}\n"
            f"--- flows ---\n{wl.flows()}\n--- AP ---\n{world.ap_counters()}")


def learned(world, wl, guest) -> dict:
    """The guest speaks once, the controller binds its address; returns the binding."""
    assert guest.ping(ip_of(world.peers[0]), count=2), diag(world, wl)
    return wl.wait_bound(ip_of(guest), guest.port)


def saved_bindings(wl) -> dict:
    try:
        data = json.loads((wl.state_dir / f"{wl.bridge}.json").read_text())
    except (OSError, ValueError):
        return {}
    return {b["ip"]: b for b in data.get("bindings", [])}


class ContinuousPing:
    """``ping -i 0.05`` from a host, counting requests and replies."""

    def __init__(self, host, dst: str, seconds: float, interval: float = 0.05) -> None:
        count = int(seconds / interval)
        self.proc = host.popen("ping", "-n", "-i", str(interval), "-W", "1", "-c", str(count),
                               dst)

    def result(self, timeout: float = 60) -> tuple[int, int]:
        self.proc.wait(timeout)
        out = self.proc.output()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------- controller restart
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_controller_killed_and_restarted_during_a_ping_loses_nothing(make_world, wlbridge_on,
                                                                     sig):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    # IPv4 only: the guest's MLD reports would bind its link-local address too (restored as
    # well; IPv6 restarts have their own tests in test_ipv6)
    g1.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=True)
    wl = wlbridge_on(world)
    before = learned(world, wl, g1)
    # state saves are coalesced (at most one each 0.5 s): wait until it is on disk
    wait_for(lambda: ip_of(g1) in saved_bindings(wl), timeout=5, what="the state file")
    generation = wl.status()["generation"]

    ping = ContinuousPing(peer, ip_of(g1), seconds=8)
    time.sleep(1.5)
    killed_at = time.time()
    wl.stop(sig)
    time.sleep(1.0)  # down for a while: the switch forwards on its own (fail_mode=secure)
    wl.start()
    status = wl.status()
    sent, received = ping.result()

    assert sent - received == 0, f"lost {sent - received} of {sent}\n{diag(world, wl)}"
    # the new process programmed the guest from the state file, not from its traffic
    assert status["generation"] > generation
    after = wl.bound(ip_of(g1))
    assert after is not None, status
    assert after["source"] == before["source"] == "arp"
    assert after["learned_at"] == before["learned_at"] < killed_at
    assert status["counters"].get("bindings.restored") == 1, status["counters"]
    assert not status["counters"].get("bindings.learned.arp"), status["counters"]
    assert g1.ping(ip_of(peer), count=2) and peer.ping(ip_of(g1), count=2)
    assert ap_foreign(world) == 0


# ---------------------------------------------------------------- OVS restart
def _vswitchd_pid() -> int | None:
    try:
        pid = int(VSWITCHD_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _ports_ready(bridge: str) -> bool:
    try:
        names = vsctl("list-ifaces", bridge).split() + [bridge]
        return all(vsctl("get", "Interface", n, "ofport").strip().lstrip("-").isdigit()
                   and int(vsctl("get", "Interface", n, "ofport")) > 0 for n in names)
    except Exception:  # noqa: BLE001 - OVS still coming up
        return False


def restart_vswitchd(bridge: str) -> float:
    """Stop ovs-vswitchd (its flows go with it) and start it again; returns when the bridge's
    ports are back.  ovsdb-server keeps running, so bridges and ports persist."""
    old = _vswitchd_pid()
    subprocess.run(["ovs-appctl", "-t", "ovs-vswitchd", "exit"], capture_output=True,
                   timeout=15, check=False)
    wait_for(lambda: old is None or not Path(f"/proc/{old}").exists(), timeout=10,
             what="ovs-vswitchd to exit")
    started = time.time()
    res = subprocess.run([OVS_CTL, "--no-ovsdb-server", "start"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(_vswitchd_pid, timeout=20, what="ovs-vswitchd to start")
    wait_for(lambda: _ports_ready(bridge), timeout=20, what=f"the ports of {bridge}")
    return started


def _ensure_vswitchd() -> None:
    if _vswitchd_pid() is None:
        subprocess.run([OVS_CTL, "--no-ovsdb-server", "start"], capture_output=True,
                       timeout=60, check=False)


def _tx_checksum_off(ifname: str) -> bool:
    out = subprocess.run(["ethtool", "-k", ifname], capture_output=True, text=True,
                         check=False).stdout
    return "tx-checksumming: off" in out


def test_ovs_restart_guests_reachable_within_2s_of_reconnect_without_relearning(
        make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    # IPv4 only: a late MLD report of the guest would learn its link-local address meanwhile
    g1.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=True)
    wl = wlbridge_on(world)
    before = learned(world, wl, g1)
    assert peer.ping(ip_of(g1), count=1)
    status = wl.status()
    generation, counters = status["generation"], status["counters"]
    offload = {n: _tx_checksum_off(n) for n in (g1.port, world.uplink)}

    try:
        started = restart_vswitchd(wl.bridge)
    finally:
        _ensure_vswitchd()

    def reconnected():
        try:
            s = wl.status()
        except OSError:
            return None
        return s if s["connected"] and s["generation"] > generation else None

    status = wait_for(reconnected, timeout=30, interval=0.05, what="the switch to reconnect")
    reconnect_at = time.monotonic()
    reconnected_after = time.time() - started
    wait_for(lambda: peer.ping(ip_of(g1), count=1, timeout=0.3), timeout=10, interval=0.02,
             what="the guest to be reachable again")
    took = time.monotonic() - reconnect_at
    ports = [(g["port"], [b["ip"] for b in g["ips"]]) for g in status["guests"]]
    assert took < 2.0, (f"reachable {took:.2f}s after reconnect (guests then: {ports})\n"
                        f"{diag(world, wl)}")

    # the bindings came from the controller's memory: nothing was learned again
    after = wl.bound(ip_of(g1))
    assert after["learned_at"] == before["learned_at"]
    learned_keys = [k for k in status["counters"] if k.startswith("bindings.learned.")]
    for key in learned_keys:
        assert status["counters"][key] == counters.get(key), (key, status["counters"])
    assert g1.ping(ip_of(peer), count=2)
    # veths keep their offload settings across the restart (a kernel property)
    assert {n: _tx_checksum_off(n) for n in offload} == offload
    host_addr = subprocess.run(["ip", "-o", "-4", "addr", "show", wl.bridge], capture_output=True,
                               text=True, check=False).stdout
    print(f"reconnected {reconnected_after:.2f}s after ovs-vswitchd was started; guest "
          f"reachable {took:.2f}s after the reconnect; host address on {wl.bridge} after the "
          f"restart: {'kept' if wl.station_ip in host_addr else 'LOST'}")


# ---------------------------------------------------------------- station MAC change
def test_station_mac_change_guests_reachable_within_2s(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world)
    old = world.station.mac
    learned(world, wl, g1)
    generation = wl.status()["generation"]
    assert peer.ping(ip_of(g1), count=2)  # the peer caches g1's address at the old MAC

    # a reconnect with a new MAC: the AP knows it (association) before data flows
    world.configure_ap(station_mac=NEW_STATION)
    changed_at = time.monotonic()
    world.set_station_mac(NEW_STATION, update_ap=False)
    wait_for(lambda: wl.status()["station_mac"] == NEW_STATION, timeout=5, interval=0.02,
             what="the controller to notice the new station MAC")
    noticed = time.monotonic() - changed_at
    noticed_at = time.monotonic()
    wait_for(lambda: peer.ping(ip_of(g1), count=1, timeout=0.3), timeout=10, interval=0.02,
             what="the guest to be reachable again")
    took = time.monotonic() - noticed_at
    assert took < 2.0, f"reachable {took:.2f}s after the change was seen\n{diag(world, wl)}"

    assert g1.ping(ip_of(peer), count=2), diag(world, wl)
    flows = wl.flows()
    assert old not in flows and NEW_STATION in flows
    wait_for(lambda: _link_mac(wl.bridge) == NEW_STATION, timeout=5,
             what="the bridge's internal port to take the station MAC")
    assert world.station.ping(ip_of(peer), src=wl.station_ip, count=2)
    # from now on nothing with a foreign MAC reaches the AP
    foreign = ap_foreign(world)
    assert g1.ping(ip_of(peer), count=3) and peer.ping(ip_of(g1), count=3)
    assert ap_foreign(world) == foreign
    assert wl.counters().get("station.mac_changes") == 1
    # the datapath id is pinned before the bridge MAC changes: no reconnect, no resync
    assert wl.status()["generation"] == generation
    print(f"change seen after {noticed:.2f}s, guest reachable {took:.2f}s later")


def _link_mac(ifname: str) -> str | None:
    out = subprocess.run(["ip", "-o", "link", "show", ifname], capture_output=True, text=True,
                         check=False).stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    return m.group(1) if m else None


# ---------------------------------------------------------------- flood
FLOODER = r"""
import os, random, socket, struct, sys, time
ifname, own, seconds, pps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(6)
def mac(): return bytes([2] + [rnd.randrange(256) for _ in range(5)])
def ip(): return bytes([10, rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255)])
OWN = bytes.fromhex(own.replace(":", ""))
BC = b"\xff" * 6
def arp(src, sha, spa, tpa):
    return BC + src + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + sha + spa \
        + bytes(6) + tpa + bytes(18)
def discover(src, chaddr):
    bootp = struct.pack("!BBBBIHH", 1, 1, 6, 0, rnd.getrandbits(32), 0, 0) + bytes(16) \
        + chaddr + bytes(10) + bytes(192) + b"\x63\x82\x53\x63" + b"\x35\x01\x01\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                      bytes(4), b"\xff" * 4)
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16); s = (s & 0xFFFF) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
    return BC + src + b"\x08\x00" + hdr + udp
frames = []
for i in range(4000):
    k = i % 5
    m = mac()
    if k == 0: frames.append(arp(m, m, ip(), ip()))          # spoofed source MAC
    elif k == 1:
        a = ip(); frames.append(arp(OWN, OWN, a, a))         # random addresses claimed
    elif k == 2: frames.append(discover(m, m))               # spoofed DHCP client
    elif k == 3: frames.append(discover(OWN, m))             # someone else's chaddr
    else: frames.append(discover(OWN, OWN))                  # own, a new xid each time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
start = time.monotonic(); sent = 0
while True:
    now = time.monotonic() - start
    if now >= seconds: break
    due = int(now * pps)
    while sent < due:
        s.send(frames[sent % len(frames)]); sent += 1
    time.sleep(0.002)
print(f"sent {sent} in {time.monotonic() - start:.2f}s", flush=True)
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("meters", [True, False], ids=["meters", "rate-limit-only"])
def test_flooding_guest_does_not_stop_another_guests_dhcp(make_world, wlbridge_on, tmp_path,
                                                          meters):
    """With meters (the default) each guest port gets ``meter_pps`` packet-ins a second; without
    (a switch lacking meters) only the bridge's controller_rate_limit (1000/s, set by
    `wlbridge setup`) protects the controller, which OVS shares fairly among ports."""
    world = make_world(n_guests=2, static_guests=False)
    flooder, g2 = world.guests
    peer = world.peers[0]
    conf = tmp_path / "wlbridge.ini"
    conf.write_text(f"[wlbridge]\nmeters = {str(meters).lower()}\n")
    wl = wlbridge_on(world, extra=("--config-file", str(conf)))
    net = world.subnet
    flooder.set_addr(f"{net.network_address + 51}/{net.prefixlen}")
    assert flooder.ping(ip_of(peer), count=2), diag(world, wl)  # its MAC: the first seen
    wl.wait_bound(str(net.network_address + 51), flooder.port)
    rss_before = _rss_kib(wl.proc.pid)
    before = wl.counters()

    seconds, pps = 12.0, 5000
    flood = flooder.popen(sys.executable, "-c", FLOODER, flooder.ifname, flooder.mac,
                          str(seconds), str(pps))
    time.sleep(2.0)  # the flood is on
    started = time.monotonic()
    lease = g2.dhcp("dhclient", timeout=15)
    took = time.monotonic() - started
    flood_running = flood.alive
    mid = wl.counters()
    flood.wait(seconds + 10)
    after = wl.counters()
    rss_after = _rss_kib(wl.proc.pid)

    assert flood_running, flood.output()
    m = re.search(r"sent (\d+) in ([\d.]+)s", flood.output())
    assert m and int(m.group(1)) / float(m.group(2)) > 2000, flood.output()
    assert lease, f"no lease during the flood\n{diag(world, wl)}"
    assert took < 15
    assert wl.bound(lease)["source"] == "dhcp"
    assert g2.ping(ip_of(peer), count=2) and peer.ping(lease, count=2)
    # the meter of the flooding port held its packet-ins to ~meter_pps (else: ~1000/s)
    packet_ins = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("packet_in."))
    assert packet_ins < (250 if meters else 1100) * (seconds + 5), (packet_ins, diag(world, wl))
    assert ("meter:" in wl.flows()) == meters
    # spoofed MACs: guests behind the port up to max_macs_per_port, then refused
    assert after.get("refused.mac-limit", 0) + after.get("refused.spoofed-mac", 0) > 100, after
    assert after.get("errors.internal", 0) == 0 and after.get("errors.handler", 0) == 0
    # bounded state: the flooder holds at most max_ips_per_port addresses
    status = wl.status()
    mine = next(g for g in status["guests"] if g["port"] == flooder.port)
    assert len([a for a in mine["ips"] if ":" not in a["ip"]]) <= 16  # (IPv6 counted apart)
    assert len(status["counters"]) < 60, status["counters"]
    assert rss_after - rss_before < 20 * 1024, (rss_before, rss_after)
    print(f"meters={meters}: flood {m.group(1)} frames in {m.group(2)}s; lease after {took:.1f}s; packet-ins "
          f"{packet_ins}; controller RSS {rss_before} -> {rss_after} KiB; mid-flood counters "
          f"refused={ {k: v for k, v in mid.items() if k.startswith('refused.')} }")
