"""802.1X and WPA3 on real 802.11: the AP and the station restarted (same VM, same wlbridge)
in WPA2-Enterprise with hostapd's internal EAP server (PEAP/MSCHAPv2, then EAP-TLS with
certificates made for the run), then in WPA3-SAE with management frame protection required.

In each mode the core checks run again: new dhclient and udhcpc guests get leases, static,
DHCP and SLAAC guests reach the LAN and are reached from it (IPv4 and IPv6), guests reach
each other, no guest MAC in any 802.11 header.  A guest and the LAN peer ping each other
for the whole mode while hostapd reauthenticates the station every `EAP_REAUTH_PERIOD` s
(and rekeys the group every 15 s): the reauthentications happen during the checks and are
asserted.  A guest sending EAPOL (Start, Logoff; to the AP and to the PAE group address, with
its own MAC and with the station's) never reaches the AP: wlbridge refuses it, hostapd never
sees it; an EAPOL frame from the station host does reach hostapd (the positive control).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import sys
from dataclasses import dataclass, field

import pytest
from conftest import BRIDGE, HOSTAPD_REKEYS, STATIC_GUEST_IP, log_since, record

from topologies.dhcp import parse_leases
from topologies.procs import Proc, run, wait_for
from topologies.wifibed.bed import DHCP_RANGE, PEER_IP, PEER_NS, SRV_IP6, SRV_NS, Guest, air_frames
from topologies.wifibed.security import EAP_REAUTH_PERIOD

MODES = ("peap", "tls", "sae")
EAP_MODES = ("peap", "tls")
#: wpa_supplicant's view of each mode (`wpa_cli status`).
KEY_MGMT = {"peap": "WPA2/IEEE 802.1X/EAP", "tls": "WPA2/IEEE 802.1X/EAP", "sae": "SAE"}
EAP_METHOD = {"peap": "PEAP", "tls": "TLS"}
EAP_SUCCESS = "CTRL-EVENT-EAP-SUCCESS"
GROUP_DONE = "WPA: Group rekeying completed"
DISCONNECTED = "CTRL-EVENT-DISCONNECTED"
#: hostapd's 802.1X state machine when `eap_reauth_period` runs out (not an EAPOL-Start).
REAUTH_TIMER = "REAUTH_TIMER entering state REAUTHENTICATE"
PAE_GROUP = "01:80:c2:00:00:03"
#: The EAPOL version the injected frames carry: wpa_supplicant sends version 1 (its default
#: eapol_version), so hostapd's "version=3" log line can only come from an injected frame.
INJECTED_VERSION = 3
SEEN_BY_HOSTAPD = f"IEEE 802.1X: version={INJECTED_VERSION} type="
#: EAPOL packet types the guest sends: Start, Logoff, Encapsulated-ASF-Alert; the control
#: sends only the last, which hostapd logs and ignores (a Start from the station would restart
#: its authentication: three in a row once made it fail, reason 23).
GUEST_KINDS, CONTROL_KIND = "1,2,4", "4"

#: Sends EAPOL frames on an interface: argv = ifname version kinds src dst... (each kind,
#: e.g. "1,2" for EAPOL-Start and EAPOL-Logoff, to each dst, three times).
INJECT = r"""
import socket, sys, time
ifname, version, kinds, src, dsts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
mac = lambda a: bytes.fromhex(a.replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for _ in range(3):
    for dst in dsts:
        for kind in map(int, kinds.split(",")):
            s.send(mac(dst) + mac(src) + b"\x88\x8e" + bytes([version, kind, 0, 0]) + bytes(42))
    time.sleep(0.2)
"""


@dataclass
class Secured:
    mode: str
    bed: object
    guests: dict[str, Guest]            # static (the session's), dhclient, udhcpc (new)
    mark: int                           # wpa_supplicant's log when the mode's checks began
    pingers: list[Proc] = field(default_factory=list)

    def supplicant_log(self) -> str:
        return log_since(self.bed.procs["wpa_supplicant"], self.mark)


@pytest.fixture(scope="module", params=MODES)
def secured(request, bed, guests, wlbridge):
    mode = request.param
    bed.hostapd_extra = dict(HOSTAPD_REKEYS)        # an earlier module's AP settings off
    bssid = bed.use_security(mode)
    assert bssid == bed.ap_macs["wlan0"], (
        f"the station never associated in mode {mode}:\n"
        + bed.procs["wpa_supplicant"].output()[-3000:])
    sec = Secured(mode, bed, {"static": guests["static"]},
                  len(bed.procs["wpa_supplicant"].output()))
    static = guests["static"]
    # Traffic both ways for the whole mode, across reauthentications and rekeys.
    sec.pingers = [
        Proc(f"{mode}-ping-out", static.netns, ["ping", "-n", "-i", "0.5", "-W", "1", PEER_IP],
             bed.logs / f"{mode}-ping-out.out"),
        Proc(f"{mode}-ping-in", PEER_NS, ["ping", "-n", "-i", "0.5", "-W", "1", STATIC_GUEST_IP],
             bed.logs / f"{mode}-ping-in.out")]
    for client in ("dhclient", "udhcpc"):
        sec.guests[client] = bed.add_guest(f"{mode}-{client[:2]}", BRIDGE)
    for client in ("dhclient", "udhcpc"):
        sec.guests[client].dhcp(client, timeout=90)
    try:
        yield sec
    finally:
        for p in sec.pingers:
            p.stop()
        if mode == MODES[-1]:           # the session's mode again, for any module after this
            bed.use_security("psk")


def test_the_station_authenticates_in_the_mode(secured):
    st = secured.bed.wpa_status()
    assert st.get("key_mgmt") == KEY_MGMT[secured.mode], st
    if secured.mode in EAP_MODES:
        assert st.get("EAP state") == "SUCCESS", st
        assert EAP_METHOD[secured.mode] in st.get("selectedMethod", ""), st
    else:   # SAE: management frame protection required by the AP, in use for the station
        sta = secured.bed.hostapd_cli("wlan0", "sta", secured.bed.station_mac)
        assert "[MFP]" in sta, sta
        assert "ieee80211w=2" in (secured.bed.logs / "hostapd-wlan0.conf").read_text()


@pytest.mark.parametrize("client", ["dhclient", "udhcpc"])
def test_dhcp_guests_get_their_own_leases(secured, client):
    g = secured.guests[client]
    ip = g.ip()
    assert ip, f"{client} got no lease ({secured.mode})"
    lo, hi = (ipaddress.ip_address(a) for a in DHCP_RANGE)
    assert lo <= ipaddress.ip_address(ip) <= hi
    leases = parse_leases((secured.bed.logs / "dnsmasq" / "leases").read_text())
    assert (g.mac, ip) in {(le.mac, le.ip) for le in leases}


@pytest.mark.parametrize("name", ["static", "dhclient", "udhcpc"])
def test_guest_and_lan_peer_reach_each_other(secured, name):
    g = secured.guests[name]
    assert wait_for(lambda: g.ping(PEER_IP), 30), f"{name} cannot reach the LAN peer"
    secured.bed.run_in_peer("ip", "neigh", "flush", "all")
    assert wait_for(lambda: secured.bed.peer_ping(g.ip()), 30), f"the peer cannot reach {name}"


@pytest.mark.parametrize("name", ["static", "dhclient", "udhcpc"])
def test_slaac_guest_and_lan_reach_each_other_over_ipv6(secured, name):
    g = secured.guests[name]
    ip6 = wait_for(g.ip6, 60, 0.5)
    assert ip6 and ipaddress.ip_address(ip6) in ipaddress.ip_network("fd77::/64"), ip6
    assert wait_for(lambda: g.ping(SRV_IP6), 30), f"{name} cannot reach {SRV_IP6}"
    run(SRV_NS, ["ip", "-6", "neigh", "flush", "all"], check=False)
    assert wait_for(lambda: secured.bed.srv_ping(ip6), 30), f"the LAN cannot reach {name} {ip6}"


def test_guests_reach_each_other_over_ipv4_and_ipv6(secured):
    for a, b in itertools.permutations(secured.guests, 2):
        src, dst = secured.guests[a], secured.guests[b]
        for addr in (dst.ip(), dst.ip6()):
            assert addr and wait_for(lambda s=src, d=addr: s.ping(d), 20), f"{a} -> {b} {addr}"


def inject(netns: str | None, ifname: str, kinds: str, src: str, *dsts: str) -> None:
    run(netns, [sys.executable, "-c", INJECT, ifname, str(INJECTED_VERSION), kinds, src, *dsts],
        timeout=60)


def test_eapol_from_a_guest_never_reaches_the_ap(secured, wlbridge):
    """EAPOL-Start, -Logoff and -ASF-Alert from a guest (own MAC, then the station's), to the
    AP and to the PAE group: wlbridge refuses them, hostapd never sees one, the station stays
    authenticated.  An EAPOL frame from the station host (br-wl) does reach hostapd."""
    bed, g = secured.bed, secured.guests["udhcpc"]
    hostapd = bed.procs["hostapd-wlan0"]
    mark = len(hostapd.output())
    refused = wlbridge.status()["counters"].get("refused.eapol", 0)
    bssid = bed.ap_macs["wlan0"]
    inject(g.netns, "eth0", GUEST_KINDS, g.mac, bssid, PAE_GROUP)
    inject(g.netns, "eth0", GUEST_KINDS, bed.station_mac, bssid, PAE_GROUP)
    assert wait_for(lambda: wlbridge.status()["counters"].get("refused.eapol", 0) > refused, 20)
    assert wait_for(lambda: g.ping(PEER_IP), 20)        # after the frames, through the same AP
    assert SEEN_BY_HOSTAPD not in log_since(hostapd, mark), "a guest's EAPOL reached the AP"
    assert bed.associated()
    assert not [ln for ln in secured.supplicant_log().splitlines() if DISCONNECTED in ln]
    # Positive control: the station host's own EAPOL frame of that version goes out through
    # br-wl and hostapd logs it.
    inject(None, BRIDGE, CONTROL_KIND, bed.station_mac, PAE_GROUP)
    assert wait_for(lambda: SEEN_BY_HOSTAPD in log_since(hostapd, mark), 30), (
        "the control frame from the station never reached hostapd: the check proves nothing")
    assert bed.wait_associated(60)


def test_no_guest_mac_on_the_air(secured):
    bed = secured.bed
    for g in secured.guests.values():
        assert g.ping(PEER_IP, count=2)
    guest_macs = {g.mac for g in bed.guests.values()}
    allowed_tx = {bed.station_mac, *bed.ap_macs.values()}
    for f in air_frames(bed.logs / "air.pcap"):
        assert not guest_macs & f.addrs, f"a guest MAC on the air: {f}"
        if f.ta is not None:
            assert f.ta in allowed_tx, f"unknown transmitter: {f}"
        if f.to_ds:
            assert not f.from_ds and f.ta == bed.station_mac, f
    log = bed.hostapd_log().lower()
    assert "class 3 frame received from nonassociated sta" not in log
    assert not any(g.mac in log for g in bed.guests.values())
    stations = [line for line in bed.hostapd_cli("wlan0", "all_sta").splitlines()
                if line.count(":") == 5 and "=" not in line]
    assert stations == [bed.station_mac]


def test_traffic_flows_through_reauthentication_and_rekeys(secured, wlbridge):
    """Last in each mode: the reauthentications (802.1X: hostapd's reauthentication timer, not
    an EAPOL-Start; counted by hostapd, completed by the supplicant) and group rekeys happened
    while the checks above ran, without a disconnection, and both pings go on after them."""
    bed = secured.bed
    eap = secured.mode in EAP_MODES

    def happened():
        log = secured.supplicant_log()
        timer = bed.hostapd_log().count(REAUTH_TIMER) >= 1
        return log.count(GROUP_DONE) >= 1 and (not eap or (timer and EAP_SUCCESS in log))

    def reauths() -> int:
        sta = bed.hostapd_cli("wlan0", "sta", bed.station_mac)
        m = re.search(r"dot1xAuthAuthReauthsWhileAuthenticated=(\d+)", sta)
        return int(m.group(1)) if m else 0

    assert wait_for(happened, 2 * EAP_REAUTH_PERIOD + 30, 1), (
        f"hostapd reauthentications: {reauths()}\n" + secured.supplicant_log()[-3000:])
    log = secured.supplicant_log()
    dropped = [ln for ln in log.splitlines() if DISCONNECTED in ln]
    assert not dropped, dropped
    if eap:
        assert wait_for(lambda: bed.wpa_status().get("EAP state") == "SUCCESS", 30)
    assert secured.bed.associated() and wlbridge.connected()
    marks = [p.output().count("bytes from") for p in secured.pingers]
    assert wait_for(lambda: all(p.output().count("bytes from") > m
                                for p, m in zip(secured.pingers, marks)), 20), \
        "a ping stopped getting answers after the reauthentication"
    got = [p.output().count("bytes from") for p in secured.pingers]
    record(f"security_{secured.mode}", eap_successes=log.count(EAP_SUCCESS),
           timer_reauthentications=reauths() if eap else None,
           group_rekeys=log.count(GROUP_DONE), ping_out_received=got[0],
           ping_in_received=got[1])

