"""Another network over the air (issue 24 item 4): the station leaves the bed's network for
another SSID on another AP (AP2, wlan2) bridged to a LAN of its own (another subnet, another
dnsmasq), then comes back.  A guest attached with ``wlbridge attach --dhcp`` gets a lease of
each LAN in turn, `wlbridge status` names the LAN, and a capture on each LAN's server shows
no frame carrying the guest's address of the LAN the station came from.

The host's address on br-wl is static in the bed (`conftest.bed`); the test sets the new
LAN's address and default route as the host's DHCP client would.  Timings are recorded."""

from __future__ import annotations

import ipaddress
import re
import time

from conftest import record

from topologies.procs import Proc, wait_for
from topologies.wifibed.bed import (
    LAN,
    LAN2,
    SRV2_IP,
    SRV2_NS,
    SRV_IP,
    SRV_NS,
    SSID,
    SSID2,
    STATION_IP,
    STATION_IP2,
    ping,
    sh,
)
from topologies.wifibed.product import BRIDGE, wlbridge_cli

NAME = "lc1"
NS = f"wf-{NAME}"


def host_on(station_ip: str, gateway: str) -> None:
    sh("ip", "-4", "addr", "flush", "dev", BRIDGE)
    sh("ip", "addr", "add", f"{station_ip}/24", "dev", BRIDGE)
    sh("ip", "route", "replace", "default", "via", gateway, "dev", BRIDGE)


def guest_ip() -> str | None:
    out = sh("ip", "-4", "-o", "addr", "show", "dev", "eth0", netns=NS, check=False)
    m = re.search(r"inet (\S+)/", out)
    return m.group(1) if m else None


def guest_in(net) -> str | None:
    ip = guest_ip()
    return ip if ip and ipaddress.ip_address(ip) in net else None


def lan_known(wlbridge) -> str | None:
    lan = wlbridge.status().get("lan")
    return lan["subnet"] if lan and lan.get("confirmed") else None


def capture_on(bed, netns: str, name: str) -> Proc:
    """tcpdump's lines for ARP and IPv4 on a LAN server's interface."""
    return bed.start_proc(name, netns, ["tcpdump", "-n", "-l", "-i", "eth0", "arp", "or", "ip"])


def sent_from(capture: Proc, addr: str) -> list[str]:
    """Captured lines where `addr` is the sender (an ARP's "tell", an IPv4 source)."""
    pattern = re.compile(rf"(tell {re.escape(addr)}\b|IP {re.escape(addr)}(\.\d+)? >)")
    return [line for line in capture.output().splitlines() if pattern.search(line)]


def test_the_station_moves_to_another_network_and_back(bed, wlbridge):
    host_on(STATION_IP, SRV_IP)
    sh("ip", "netns", "add", NS)
    try:
        wlbridge_cli("attach", NAME, "--netns", NS, "--dhcp", "--lease-timeout", "60")
        assert wait_for(lambda: lan_known(wlbridge) == str(LAN), 60, 0.5), wlbridge.status()
        old = wait_for(lambda: guest_in(LAN), 60, 0.5)
        assert old, guest_ip()
        bed.start_second_lan()
        moves = {}
        for ssid, ap, (net, station_ip, gateway, srv_ns), left in (
                (SSID2, "wlan2", (LAN2, STATION_IP2, SRV2_IP, SRV2_NS), old),
                (SSID, "wlan0", (LAN, STATION_IP, SRV_IP, SRV_NS), None)):
            capture = capture_on(bed, srv_ns, f"tcpdump-{ssid}")
            wait_for(lambda c=capture: "listening on" in c.output(), 10, 0.2)
            left = left or guest_ip()
            t0 = time.monotonic()
            bed.join(ssid)
            assert wait_for(lambda a=ap: bed.associated() == bed.ap_macs[a], 90, 0.2), \
                bed.wpa_status()
            associated = time.monotonic() - t0
            host_on(station_ip, gateway)
            assert wait_for(lambda n=net: lan_known(wlbridge) == str(n), 60, 0.2), \
                wlbridge.status().get("lan")
            known = time.monotonic() - t0
            new = wait_for(lambda n=net: guest_in(n), 90, 0.2)
            releases = time.monotonic() - t0
            assert new, (guest_ip(), wlbridge.status())
            # the barrier: the guest reaches the new LAN's server (through the capture)
            assert wait_for(lambda g=gateway: ping(g, NS), 30, 0.5)
            assert wait_for(lambda c=capture, a=new: sent_from(c, a), 10, 0.2), \
                capture.output()[-2000:]
            leaked = sent_from(capture, left)
            assert not leaked, leaked
            capture.stop()
            moves[ssid] = {"associated": round(associated, 2), "lan_known": round(known, 2),
                           "guest_re_leased": round(releases, 2)}
            record("lan_change", to=ssid, **moves[ssid])
        assert wlbridge.status()["lan"]["changes"] == 2
    finally:
        wlbridge_cli("detach", NAME, check=False)
        sh("ip", "netns", "del", NS, check=False)
