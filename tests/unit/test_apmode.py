"""Which kind of AP the station is on (issue 25 item 2): the group flows' counters, asked for
by the core while the uplink is up, tell an AP that delivers group traffic (as sent, or
turned into unicast) from a proxy-ARP AP that delivers none; with none, the
re-announcement round tightens and `status` says which guests the LAN cannot reach.
Packet fate through the simulated switch and the real core."""

from __future__ import annotations

from core_dhcp_rig import (
    XID1,
    dhcp_bindings,
    reaches,
    send,
    tolerant_switch,  # noqa: F401  (autouse: DHCP frames in the rig)
)
from dhcp_frames import ack, discover, lease_ip, offer, parsed, request
from ofsim import arp_request, data_of
from rig import BCAST, HOST_IP, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from v6frames import ra
from wlbridge.core import CoreConfig
from wlbridge.model.state import Port
from wlbridge.policy.apmode import NO_GROUP_INTERVAL, QUIET
from wlbridge.proto import dhcp as D

G1, G2 = 2, 3
LAN_HOST = "10.0.0.77"


def rig(**config) -> Rig:
    config.setdefault("idle_timeout", 3600)  # (quiet guests keep their bindings meanwhile)
    r = Rig(config=CoreConfig(uplink="wlan0", **config))
    r.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))  # G1 bound; G2 has sent nothing
    return r


def live(r: Rig, seconds: float, lan=None, step: float = 5.0) -> list[tuple[float, str]]:
    """Time passes in ticks; `lan()` (frames from the LAN) every tick.  The announcements
    seen: (when, address)."""
    seen = []
    for _ in range(int(seconds / step)):
        if lan is not None:
            lan()
        d = r.advance(step)
        seen += [(r.now, h["arp_spa"]) for p, h in d.outputs
                 if p == UP and h.get("arp_op") == 1 and h.get("arp_spa") == h.get("arp_tpa")]
    return seen


def ap(r: Rig) -> dict:
    return r.core.status(r.now)["ap"]


def test_a_home_ap_delivers_the_lans_broadcasts_and_nothing_changes():
    r = rig(reannounce_interval=60)
    assert ap(r)["mode"] == "unknown"
    live(r, QUIET + 30, lambda: r.send(UP, arp_request(ROUTER, ROUTER_IP, LAN_HOST)))
    assert ap(r)["mode"] == "group-delivery" and ap(r)["group_frames_seen"] > 0
    assert "unreachable_from_lan" not in ap(r)
    seen = live(r, 120)
    assert len([t for t, a in seen if a == ip(G1)]) == 2  # every 60 s, as configured


def test_an_ap_that_turns_group_traffic_into_unicast_delivers_it_too():
    r = rig()
    live(r, QUIET + 30,
         lambda: r.send(UP, arp_request(ROUTER, ROUTER_IP, LAN_HOST, eth_dst=STATION)))
    assert ap(r)["mode"] == "group-delivery"


def test_a_proxy_arp_ap_delivers_none_the_round_tightens_and_status_names_who_is_lost():
    r = rig(reannounce_interval=60)
    # only what such an AP turns into unicast arrives: Router Advertisements (not counted)
    live(r, QUIET + 30, lambda: r.send(UP, ra(ROUTER, "fe80::10:1", eth_dst=STATION,
                                              dst="ff02::1")))
    status = ap(r)
    assert status["mode"] == "no-group-delivery", status
    assert "proxy-ARP" in status["why"] and "has sent nothing" in status["static_guests"]
    assert status["unreachable_from_lan"] == ["g3"]  # G2: no address bound yet
    from wlbridge.cli.status_client import render

    text = render(r.core.status(r.now), now=r.now)
    assert "ap       no-group-delivery: no broadcast or multicast frame" in text
    assert "unreachable from the LAN (no address bound yet): g3" in text
    seen = live(r, 120)
    times = [t for t, a in seen if a == ip(G1)]
    assert len(times) >= 3 and all(b - a <= NO_GROUP_INTERVAL for a, b in zip(times, times[1:]))
    assert r.core.status(r.now)["policing"]["reannounce_interval"] == NO_GROUP_INTERVAL
    # G2 speaks: now bound, announced, and no longer listed
    r.send(G2, arp_request(mac(G2), ip(G2), ROUTER_IP))
    assert ap(r)["unreachable_from_lan"] == []


def test_re_announcement_left_off_stays_off_with_a_proxy_arp_ap():
    r = rig(reannounce_interval=0)
    live(r, QUIET + 30)
    assert ap(r)["mode"] == "no-group-delivery"
    assert live(r, 60) == []


def test_a_reassociation_observes_again_and_nothing_is_probed_while_the_uplink_is_down():
    r = rig()
    live(r, QUIET + 30)
    assert ap(r)["mode"] == "no-group-delivery"
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=False), r.now))
    live(r, 60)
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=True), r.now))
    assert ap(r)["mode"] == "unknown"  # maybe another AP now
    live(r, 60, lambda: r.send(UP, arp_request(ROUTER, ROUTER_IP, HOST_IP, eth_dst=BCAST)))
    assert ap(r)["mode"] == "group-delivery"


def test_frames_counted_before_a_reassociation_say_nothing_about_the_new_ap():
    r = rig()
    live(r, 100, lambda: r.send(UP, arp_request(ROUTER, ROUTER_IP, LAN_HOST)))
    assert ap(r)["mode"] == "group-delivery"
    # roamed to a proxy-ARP AP: the counters still hold the old AP's frames, none come now
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=False), r.now))
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=True), r.now))
    live(r, QUIET + 60)
    assert ap(r)["mode"] == "no-group-delivery"


def test_with_no_group_delivery_the_host_joins_the_round_and_dhcp_keeps_its_strategy():
    r = rig()
    live(r, QUIET + 30)
    assert ap(r)["mode"] == "no-group-delivery"
    assert r.core.status(r.now)["dhcp_mode"] == "broadcast"  # (hostapd converts replies)
    a = lease_ip(G2)
    assert parsed(send(r, G2, discover(mac(G2), XID1)).out(UP)).chaddr == mac(G2)
    for kind in (offer, ack):
        if kind is ack:
            send(r, G2, request(mac(G2), XID1, a))
        # hostapd's unicast copy of the broadcast reply, its checksum left to offload
        d = send(r, UP, kind(mac(G2), XID1, a, eth_dst=STATION, csum=0x0B93))
        assert d.ports() == {G2}
        assert D.parse(data_of(d.out(G2))).chaddr == mac(G2)
    assert dhcp_bindings(r) == {a: G2} and reaches(r, a) == {G2}
    # the host's own address is re-announced too (a DHCP-snooping AP may have replaced it)
    assert HOST_IP in {x for _, x in live(r, 60)}
