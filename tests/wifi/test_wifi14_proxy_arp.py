"""A Hotspot 2.0 / "proxy ARP" AP (issue 25 item 2): hostapd with ``proxy_arp=1``,
``ap_isolate=1``, ``disable_dgaf=1`` and ``na_mcast_to_ucast=1`` (WPA2-PSK).

Such an AP delivers no group-addressed frame to its stations (a LAN host's broadcast ARP
request never reaches the station) and answers ARP for them itself from its bridge's
neighbour table, which its DHCP snooping (keyed on the BOOTP chaddr: one address per
station) and gratuitous ARP from the station (hostapd turns ``arp_accept`` on for the
bridge) fill.  wlbridge announces every newly bound guest address from the station MAC and
re-announces each on its round (`policy.policing`), so the AP learns every guest address as
the station's.  Measured here: hostapd's unicast copies of a broadcast DHCP reply carry the
UDP checksum the server left to offload (the first positive control: a guest's kernel drops
them), which wlbridge corrects.  wlbridge tells the AP apart by itself (no group frame from
the LAN for ``group_quiet``, `policy.apmode`).  The second positive control: an address of
the station host that was never announced (the kernel sends no gratuitous ARP for an added
address) is unreachable from a peer that has to ask for it.
"""

from __future__ import annotations

import ipaddress

import pytest
from conftest import BRIDGE, record

from topologies.procs import Proc, run, wait_for
from topologies.wifibed.bed import AP_NS, PEER_IP, SRV_IP6, SRV_NS, STATION

PROXY_ARP_AP = {"proxy_arp": "1", "ap_isolate": "1", "disable_dgaf": "1",
                "na_mcast_to_ucast": "1"}
CONTROL_IP = "10.77.0.60"     # a second address of the station host, never announced


def ap_neighbours() -> dict[str, str]:
    """The AP bridge's IPv4 and IPv6 neighbour entries: what its proxy answers for."""
    out = run(AP_NS, ["ip", "neigh", "show", "dev", "br-lan"], check=False).stdout
    found = {}
    for line in out.splitlines():
        words = line.split()
        if "lladdr" in words and "FAILED" not in words and "INCOMPLETE" not in words:
            found[words[0]] = words[words.index("lladdr") + 1]
    return found


@pytest.fixture(scope="module")
def parp(bed, guests, wlbridge):
    """Only AP 1, restarted as a proxy-ARP AP; the station reconnects to it."""
    bed.stop_ap("wlan2")
    bed.hostapd_extra.pop("multicast_to_unicast", None)     # (test_wifi6's, if it ran)
    bed.hostapd_extra.update(PROXY_ARP_AP)
    bed.start_ap("wlan0")
    assert bed.wait_associated(90) == bed.ap_macs["wlan0"]
    conf = bed.hostapd_conf("wlan0").read_text()
    assert all(f"{k}={v}" in conf for k, v in PROXY_ARP_AP.items())
    try:
        yield bed
    finally:
        for key in PROXY_ARP_AP:
            bed.hostapd_extra.pop(key, None)
        bed.start_ap("wlan0")
        bed.wait_associated(90)


@pytest.fixture(scope="module")
def adapted(parp, wlbridge):
    """wlbridge has told the proxy-ARP AP apart (``group_quiet``, 300 s, after the
    reassociation): the round every 30 s, the host's addresses in it."""
    def mode():
        st = wlbridge.status()
        return st if st["ap"]["mode"] == "no-group-delivery" else None
    st = wait_for(mode, 600, 2)
    assert st, f"wlbridge never told the proxy-ARP AP apart: {wlbridge.status()['ap']}"
    assert st["dhcp_mode"] == "broadcast", st["dhcp_mode"]     # (as configured)
    record("proxy_arp_ap_detected", why=st["ap"]["why"],
           unreachable=st["ap"].get("unreachable_from_lan"))
    return parp


def forget(bed) -> None:
    """The peer's ARP and neighbour entries expire."""
    bed.run_in_peer("ip", "neigh", "flush", "all")


def dhcp_counters(wlbridge) -> dict:
    return {k: v for k, v in wlbridge.status()["counters"].items() if "dhcp" in k}


def dhcp_through(bed, wlbridge, name: str, client: str, timeout: float):
    """A new guest's DHCP, the station's DHCP frames captured: (address or None, what
    to say when it got none)."""
    g = bed.add_guest(name, BRIDGE)
    before = dhcp_counters(wlbridge)
    cap = Proc(f"{name}-dhcp", None, ["tcpdump", "-n", "-e", "-vv", "-l", "-i", STATION,
                                      "udp", "port", "67", "or", "udp", "port", "68"],
               bed.logs / f"{name}-dhcp.out")
    try:
        ip = g.dhcp(client, timeout=timeout)
    finally:
        cap.stop()
    return g, ip, (f"DHCP on {STATION}:\n{cap.output()[-3000:]}\nwlbridge's DHCP "
                   f"counters before {before}, after {dhcp_counters(wlbridge)}")


def test_hostapds_copies_of_broadcast_replies_are_repaired_and_the_guest_leased(parp,
                                                                             wlbridge):
    """hostapd turns the server's broadcast DHCP reply into a unicast copy for each station,
    taken from its bridge before the server's checksum offload filled the UDP checksum in:
    the station receives it with a wrong checksum (the positive control: what a guest's
    kernel drops without wlbridge), wlbridge corrects it and the guest is leased."""
    key = "dhcp.reply.checksum_repaired"
    before = wlbridge.status()["counters"].get(key, 0)
    _g, ip, diag = dhcp_through(parp, wlbridge, "parp-bc", "dhclient", 90)
    bad = "bad udp cksum" in diag
    record("proxy_arp_dhcp_copies", leased=bool(ip), bad_checksum_on_the_air=bad)
    assert bad, f"hostapd's copies carried right checksums: no control; {diag}"
    assert ip, f"no lease through the proxy-ARP AP; {diag}"
    assert wlbridge.status()["counters"].get(key, 0) > before


@pytest.mark.xfail(strict=False, reason=(
    "open (issue 25): passes alone, but after test_wifi12_lan_change/test_wifi13_resume the "
    "peer reaches the never-announced address; cause not found yet (stop 29's note)"))
def test_positive_control_an_address_never_announced_is_unreachable(parp, wlbridge):
    """The station host's own second address: it pings the peer (which learns it from the
    ARP request), then the peer forgets it and must ask: the AP drops the broadcast and
    does not know the address.  (Before wlbridge has told the AP apart: after, the host's
    own addresses join its round.)"""
    assert wlbridge.status()["ap"]["mode"] == "unknown"
    run(None, ["ip", "addr", "add", f"{CONTROL_IP}/24", "dev", BRIDGE])
    try:
        assert wait_for(lambda: run(None, ["ping", "-c1", "-W2", "-I", CONTROL_IP, PEER_IP],
                                    check=False).returncode == 0, 20)
        assert parp.peer_ping(CONTROL_IP)       # known from the host's own ARP request
        forget(parp)
        assert not parp.peer_ping(CONTROL_IP, count=3, wait=2), (
            "the peer reached an address the AP was never told of: the check proves nothing")
        assert CONTROL_IP not in ap_neighbours()
    finally:
        run(None, ["ip", "addr", "del", f"{CONTROL_IP}/24", "dev", BRIDGE], check=False)


@pytest.mark.parametrize("client", ["dhclient", "udhcpc"])
def test_a_new_dhcp_guest_is_leased_and_reachable_inbound(adapted, wlbridge, client):
    parp = adapted
    g, ip, diag = dhcp_through(parp, wlbridge, f"parp-{client[:2]}", client, 90)
    assert ip, f"{client} got no lease through a proxy-ARP AP; {diag}"
    assert wait_for(lambda: g.ping(PEER_IP), 30)
    assert wait_for(lambda: ap_neighbours().get(ip) == parp.station_mac, 30), ap_neighbours()
    forget(parp)
    assert wait_for(lambda: parp.peer_ping(ip), 30), "the peer cannot reach the DHCP guest"


@pytest.mark.parametrize("name", ["static", "dhclient", "udhcpc"])
def test_every_guest_is_known_to_the_ap_and_reached_by_a_peer_that_forgot_it(adapted, guests,
                                                                             name):
    parp = adapted
    g = guests[name]
    assert wait_for(lambda: g.ping(PEER_IP), 30)
    assert wait_for(lambda: ap_neighbours().get(g.ip()) == parp.station_mac, 30), \
        ap_neighbours()
    forget(parp)
    assert wait_for(lambda: parp.peer_ping(g.ip()), 30), f"the peer cannot reach {name}"


@pytest.mark.parametrize("name", ["static", "dhclient"])
def test_slaac_guests_over_ipv6_through_the_proxy_arp_ap(adapted, guests, name):
    parp = adapted
    g = guests[name]
    ip6 = wait_for(g.ip6, 60, 0.5)
    assert ip6 and ipaddress.ip_address(ip6) in ipaddress.ip_network("fd77::/64"), ip6
    assert wait_for(lambda: g.ping(SRV_IP6), 30), f"{name} cannot reach {SRV_IP6}"
    run(SRV_NS, ["ip", "-6", "neigh", "flush", "all"], check=False)
    reached = wait_for(lambda: parp.srv_ping(ip6), 30)
    record("proxy_arp_ipv6_inbound", guest=name, reached=bool(reached),
           ap_knows=ip6 in ap_neighbours())
    assert reached, f"the LAN cannot reach {name} {ip6} through the proxy-ARP AP"
