"""Packet fate through the wlbridge pipeline (fake switch + real core)."""

from __future__ import annotations

from ofsim import arp_reply, arp_request, ether, icmp_echo, ipv4
from rig import BCAST, HOST_IP, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac

G1, G2 = 2, 3


def learned(rig: Rig, port: int) -> None:
    """The guest announces itself (gratuitous ARP) and is bound."""
    d = rig.send(port, arp_request(mac(port), ip(port), ip(port)))
    assert rig.core.bindings[ip(port)].port_no == port, d


def test_guest_arp_leaves_with_station_mac_and_is_learned():
    rig = Rig()
    d = rig.send(G1, arp_request(mac(G1), ip(G1), ROUTER_IP))
    up = d.out(UP)
    assert up["eth_src"] == STATION and up["arp_sha"] == STATION
    assert up["arp_spa"] == ip(G1) and up["eth_dst"] == BCAST
    # local copies are untouched
    assert d.out(LOCAL)["eth_src"] == mac(G1) and d.out(G2)["arp_sha"] == mac(G1)
    assert d.out(G1) is None
    b = rig.core.bindings[ip(G1)]
    assert (b.port_no, b.mac, b.source) == (G1, mac(G1), "arp")


def test_inbound_arp_reply_and_ipv4_reach_guest_with_its_mac_restored():
    rig = Rig()
    learned(rig, G1)
    d = rig.send(UP, arp_reply(ROUTER, ROUTER_IP, STATION, ip(G1)))
    assert d.ports() == {G1}
    assert d.out(G1)["eth_dst"] == mac(G1) and d.out(G1)["arp_tha"] == mac(G1)
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ip(G1)))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)


def test_guest_ipv4_egress_rewritten_and_no_packet_in_after_learning():
    rig = Rig()
    learned(rig, G1)
    before = rig.packet_ins
    for _ in range(1000):
        d = rig.send(G1, icmp_echo(mac(G1), ROUTER, ip(G1), ROUTER_IP))
        assert d.ports() == {UP} and d.out(UP)["eth_src"] == STATION
        d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ip(G1)))
        assert d.ports() == {G1}
    assert rig.packet_ins == before


def test_host_traffic_and_unknown_destinations_go_to_local():
    rig = Rig()
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, HOST_IP))
    assert d.ports() == {LOCAL} and d.out(LOCAL)["eth_dst"] == STATION
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, "10.0.0.99"))
    assert d.ports() == {LOCAL}
    d = rig.send(LOCAL, icmp_echo(STATION, ROUTER, HOST_IP, ROUTER_IP))
    assert d.ports() == {UP} and d.out(UP)["eth_src"] == STATION


def test_reflections_of_our_own_frames_are_dropped():
    rig = Rig()
    learned(rig, G1)
    d = rig.send(UP, arp_request(STATION, ip(G1), ROUTER_IP))
    assert d.outputs == [] and d.packet_ins == 0


def test_broadcast_and_multicast_from_uplink_reach_host_and_every_guest():
    rig = Rig()
    d = rig.send(UP, arp_request(ROUTER, ROUTER_IP, "10.0.0.77"))
    assert d.ports() == {LOCAL, G1, G2}
    d = rig.send(UP, ipv4(ROUTER, "01:00:5e:00:00:fb", ROUTER_IP, "224.0.0.251", 17,
                          udp_src=5353, udp_dst=5353))
    assert d.ports() == {LOCAL, G1, G2}


def test_group_traffic_converted_to_unicast_by_the_ap_is_delivered_as_group():
    rig = Rig()
    d = rig.send(UP, arp_request(ROUTER, ROUTER_IP, "10.0.0.77", eth_dst=STATION))
    assert d.ports() == {LOCAL, G1, G2}
    assert all(h["eth_dst"] == BCAST for _, h in d.outputs)
    d = rig.send(UP, ipv4(ROUTER, STATION, ROUTER_IP, "255.255.255.255", 17,
                          udp_src=1000, udp_dst=1000))
    assert d.ports() == {LOCAL, G1, G2} and d.out(G1)["eth_dst"] == BCAST
    d = rig.send(UP, ipv4(ROUTER, STATION, ROUTER_IP, "224.0.0.251", 17,
                          udp_src=5353, udp_dst=5353))
    assert d.ports() == {LOCAL, G1, G2} and d.out(G2)["eth_dst"].startswith("01:00:5e")


def test_inbound_arp_request_for_a_bound_guest_goes_to_that_guest():
    rig = Rig()
    learned(rig, G1)
    d = rig.send(UP, arp_request(ROUTER, ROUTER_IP, ip(G1), eth_dst=STATION))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)


def test_silent_static_guest_is_found_by_inbound_arp_and_learned_from_its_reply():
    rig = Rig(guests=(2, 3, 4))
    d = rig.send(UP, arp_request(ROUTER, ROUTER_IP, ip(4)))
    assert {LOCAL, 2, 3, 4} <= d.ports()
    d = rig.send(4, arp_reply(mac(4), ip(4), ROUTER, ROUTER_IP))
    up = d.out(UP)
    assert up["eth_src"] == STATION and up["arp_sha"] == STATION and up["eth_dst"] == ROUTER
    assert rig.core.bindings[ip(4)].port_no == 4
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ip(4)))
    assert d.ports() == {4}


def test_guest_to_guest_and_guest_to_host_stay_local_and_unmodified():
    rig = Rig()
    learned(rig, G1)
    learned(rig, G2)
    d = rig.send(G1, icmp_echo(mac(G1), mac(G2), ip(G1), ip(G2)))
    assert d.ports() == {G2} and d.out(G2)["eth_src"] == mac(G1)
    d = rig.send(G1, icmp_echo(mac(G1), STATION, ip(G1), HOST_IP))
    assert d.ports() == {LOCAL} and d.out(LOCAL)["eth_src"] == mac(G1)
    d = rig.send(LOCAL, icmp_echo(STATION, mac(G2), HOST_IP, ip(G2)))
    assert d.ports() == {G2}
    d = rig.send(LOCAL, arp_request(STATION, HOST_IP, ip(G1)))
    assert d.ports() == {UP, G1, G2}


def test_guest_broadcast_reaches_host_other_guests_and_uplink_rewritten():
    rig = Rig()
    learned(rig, G1)
    d = rig.send(G1, ipv4(mac(G1), BCAST, ip(G1), "10.0.0.255", 17, udp_src=137, udp_dst=137))
    assert d.ports() == {LOCAL, G2, UP}
    assert d.out(UP)["eth_src"] == STATION and d.out(G2)["eth_src"] == mac(G1)


def test_eapol_is_the_stations_only():
    rig = Rig()
    learned(rig, G1)
    d = rig.send(UP, ether(ROUTER, STATION, 0x888E))
    assert d.ports() == {LOCAL}
    d = rig.send(G1, ether(mac(G1), "01:80:c2:00:00:03", 0x888E))
    assert d.outputs == []
    assert rig.core.counters["refused.eapol"] == 1
    d = rig.send(LOCAL, ether(STATION, "01:80:c2:00:00:03", 0x888E))
    assert d.ports() == {UP}


def test_ipv6_and_other_ethertypes_from_guests_leave_with_station_mac():
    rig = Rig()
    learned(rig, G1)
    d = rig.send(G1, ether(mac(G1), ROUTER, 0x88B5))
    assert d.ports() == {UP} and d.out(UP)["eth_src"] == STATION
