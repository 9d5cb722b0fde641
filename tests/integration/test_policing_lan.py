"""Address policing and proxy-ARP APs (issue 25 items 2 and 3) in the emulated Wi-Fi LAN.

The AP here is a Hotspot 2.0 / "proxy ARP" AP (``basic_lan(proxy_arp=True)``, see
`topologies.apfilter`): no group-addressed frame reaches the station but DHCP replies, RAs
and NAs made unicast, and the AP answers ARP for its station's addresses from its bridge's
neighbour table, which only what the station sends teaches (hostapd's bridge accepts
gratuitous ARP).  A LAN peer whose ARP cache entry for a guest has expired asks by
broadcast: only the AP's proxy can answer.  wlbridge announces every newly bound guest
address and re-announces each on its round (``reannounce_interval``), so the AP knows them
all; with re-announcement off (the positive control) a guest that has spoken only to a peer
that knew it is unreachable once that peer's entry expires.
"""

from __future__ import annotations

import pytest

from topologies.procs import wait_for

pytestmark = pytest.mark.integration
QUIET = 15  # --group-quiet: seconds without a group frame before "no group delivery"


def short_arp_cache(peer) -> None:
    """The peer's ARP entries turn stale after about a second and are dropped soon after."""
    peer.run("sysctl", "-qw", "net.ipv4.neigh.eth0.base_reachable_time_ms=1000",
             "net.ipv4.neigh.eth0.gc_stale_time=2", check=True)


def expire(peer) -> None:
    """The peer's entries expire (now rather than in a minute: the same broadcast ARP next)."""
    peer.run("ip", "-4", "neigh", "flush", "dev", "eth0", check=True)


@pytest.fixture
def hotspot(make_world, wlbridge_on):
    """``hotspot(interval, **lan)``: a proxy-ARP AP LAN, wlbridge running with that
    ``reannounce_interval``."""
    def make(interval: float, proxy_arp: bool = True, **lan):
        world = make_world(proxy_arp=proxy_arp, **lan)
        wl = wlbridge_on(world, extra=("--reannounce-interval", str(interval),
                                       "--group-quiet", str(QUIET)))
        short_arp_cache(world.peers[0])
        return world, wl
    return make


def test_a_peer_with_short_arp_entries_reaches_every_guest_through_a_proxy_arp_ap(hotspot):
    world, wl = hotspot(4, n_guests=2)
    peer = world.peers[0]
    station = world.ap_station_mac
    for g in world.guests:
        assert g.ping(peer.ip, count=2)  # the guest has spoken (and is bound)
        wl.wait_bound(g.ip, g.port)
    # the AP learned every guest address as the station's, from wlbridge's announcements
    wait_for(lambda: all(world.ap_neighbours().get(g.ip) == station for g in world.guests),
             timeout=10, what="the AP to learn the guests' addresses as the station's")
    for _ in range(2):
        expire(peer)
        for g in world.guests:
            assert peer.ping(g.ip, count=1, timeout=2), f"{g.ip} unreachable after expiry"
    # the AP forgets (as a policing AP ages its bindings): the round teaches it again
    world.ap_forget_neighbours()
    expire(peer)
    wait_for(lambda: all(world.ap_neighbours().get(g.ip) == station for g in world.guests),
             timeout=15, what="the round to re-announce every guest address")
    for g in world.guests:
        assert peer.ping(g.ip, count=1, timeout=2)
    c = wl.counters()
    assert c.get("station.announced_new", 0) >= 2 and c.get("station.reannounced", 0) >= 2
    assert world.ap_counters()["group_dropped"].packets > 0  # the peer's broadcasts: dropped


def test_positive_control_without_re_announcement_the_guest_is_lost_after_expiry(hotspot):
    world, wl = hotspot(0, n_guests=1)
    peer, (g,) = world.peers[0], world.guests
    assert g.ping(peer.ip, count=2)
    wl.wait_bound(g.ip, g.port)
    assert peer.ping(g.ip, count=1)  # the peer learned it from the guest's own ARP
    expire(peer)
    assert not peer.ping(g.ip, count=2, timeout=1)  # broadcast ARP: never reaches the station
    assert g.ip not in world.ap_neighbours()
    assert world.ap_counters()["group_dropped"].packets > 0


def test_a_dhcp_guest_is_leased_and_reachable_inbound_through_a_proxy_arp_ap(hotspot):
    world, wl = hotspot(30, n_guests=2, static_guests=False)
    peer, (g1, g2) = world.peers[0], world.guests
    # the broadcast flag (this AP, as hostapd, turns broadcast DHCP replies into unicast)
    g1.dhcp("dhclient")
    leased = g1.wait_ip()
    assert leased, "no lease through the proxy-ARP AP"
    wl.wait_bound(leased, g1.port)
    wait_for(lambda: world.ap_neighbours().get(leased) == world.ap_station_mac, timeout=10,
             what="the AP to learn the leased address as the station's")
    expire(peer)
    assert peer.ping(leased, count=1, timeout=2)
    # once wlbridge has told the AP apart: the same (its strategy stays as configured)
    wait_for(lambda: ap_mode(world, wl), timeout=QUIET * 4, what="the AP's mode")
    assert wl.status()["dhcp_mode"] == "broadcast"
    g2.dhcp("udhcpc")
    second = g2.wait_ip()
    assert second and wl.wait_bound(second, g2.port)["source"] == "dhcp"
    assert any(lease.ip == second and lease.mac == g2.mac
               for lease in world.leases()), world.leases()  # its own lease
    wait_for(lambda: world.ap_neighbours().get(second) == world.ap_station_mac, timeout=10,
             what="the AP to learn the second lease as the station's")
    expire(peer)
    assert peer.ping(second, count=1, timeout=2)


def ap_mode(world, wl) -> dict | None:
    """The controller's view of the AP once decided, while the LAN's peer broadcasts (its
    ARP requests for an address nobody has)."""
    world.peers[0].run("ping", "-c", "1", "-W", "1", str(world.subnet[250]))
    ap = wl.status()["ap"]
    return ap if ap["mode"] != "unknown" else None


def test_wlbridge_tells_a_proxy_arp_ap_from_one_that_delivers_group_traffic(hotspot):
    """The real switch's group-flow counters: through the proxy-ARP AP the peer's broadcasts
    never arrive (``no-group-delivery``, and the guest that has sent nothing is named); through
    an ordinary AP they do."""
    world, wl = hotspot(60, n_guests=2)
    g1, g2 = world.guests
    assert g1.ping(world.peers[0].ip, count=1)
    ap = wait_for(lambda: ap_mode(world, wl), timeout=QUIET * 4, what="the AP's mode")
    assert ap["mode"] == "no-group-delivery", ap
    assert ap["unreachable_from_lan"] == [g2.port]
    assert wl.status()["policing"]["reannounce_interval"] == 30
    other, wl2 = hotspot(60, proxy_arp=False, n_guests=1)
    ap = wait_for(lambda: ap_mode(other, wl2), timeout=QUIET * 4, what="the AP's mode")
    assert ap["mode"] == "group-delivery" and ap["group_frames_seen"] > 0, ap
