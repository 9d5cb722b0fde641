"""Port security: MACs, claimed IPs, hijacks, refusals counted once per cause."""

from __future__ import annotations

import logging

from ofsim import arp_reply, arp_request, icmp_echo
from rig import HOST_IP, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge.core import CoreConfig

G1, G2 = 2, 3


def bind(rig: Rig, port: int, addr: str) -> None:
    rig.send(port, arp_request(mac(port), addr, addr))


def test_first_mac_seen_on_a_one_guest_port_is_the_guests_and_others_are_dropped():
    rig = Rig(config=CoreConfig(uplink="wlan0", max_macs_per_port=1))
    bind(rig, G1, ip(G1))
    assert rig.core.guests[G1].mac == mac(G1)
    spoof = "02:66:66:66:66:66"
    d = rig.send(G1, icmp_echo(spoof, ROUTER, ip(G1), ROUTER_IP))
    assert d.outputs == []
    assert rig.core.counters["refused.spoofed-mac"] == 1


def test_configured_mac_wins_over_first_seen():
    rig = Rig(config=CoreConfig(uplink="wlan0", static_macs={"g2": "02:00:00:00:00:99"}))
    d = rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    assert d.outputs == [] and rig.core.counters["refused.spoofed-mac"] == 1
    d = rig.send(2, arp_request("02:00:00:00:00:99", ip(2), ip(2)))
    assert UP in d.ports()


def test_guest_cannot_take_station_mac():
    rig = Rig()
    d = rig.send(G1, arp_request(STATION, ip(G1), ip(G1)))
    assert d.outputs == [] and rig.core.guests[G1].mac is None
    assert rig.core.counters["refused.station-mac"] == 1


def test_ipv4_from_an_unbound_source_taken_by_another_guest_is_not_forwarded():
    rig = Rig()
    bind(rig, G1, ip(G1))
    bind(rig, G2, ip(G2))
    d = rig.send(G2, icmp_echo(mac(G2), ROUTER, ip(G1), ROUTER_IP))
    assert UP not in d.ports()
    assert rig.core.counters["refused.ip-in-use"] == 1


def test_ipv4_from_a_free_source_is_learned():
    rig = Rig()
    bind(rig, G1, ip(G1))
    d = rig.send(G1, icmp_echo(mac(G1), ROUTER, "10.0.0.50", ROUTER_IP))
    assert d.out(UP)["eth_src"] == STATION
    assert rig.core.bindings["10.0.0.50"].source == "ipv4"


def test_hijack_by_gratuitous_arp_is_refused_and_traffic_stays_with_owner():
    rig = Rig()
    bind(rig, G1, ip(G1))
    bind(rig, G2, ip(G2))
    d = rig.send(G2, arp_request(mac(G2), ip(G1), ip(G1)))
    assert d.outputs == []
    d = rig.send(G2, arp_reply(mac(G2), ip(G1), ROUTER, ROUTER_IP))
    assert d.outputs == []
    assert rig.core.counters["refused.ip-in-use"] == 2
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ip(G1)))
    assert d.ports() == {G1}


def test_guest_cannot_claim_the_hosts_ip():
    rig = Rig()
    d = rig.send(G1, arp_request(mac(G1), HOST_IP, HOST_IP))
    assert d.outputs == [] and HOST_IP not in rig.core.bindings
    assert rig.core.counters["refused.host-ip"] == 1


def test_arp_with_foreign_sender_hardware_address_is_refused():
    rig = Rig()
    bind(rig, G1, ip(G1))
    d = rig.send(G1, arp_request("02:77:77:77:77:77", "10.0.0.60", ROUTER_IP,
                                 eth_src=mac(G1)))
    assert d.outputs == [] and "10.0.0.60" not in rig.core.bindings


def test_arp_probe_is_forwarded_and_binds_nothing():
    rig = Rig()
    bind(rig, G1, ip(G1))
    d = rig.send(G1, arp_request(mac(G1), "0.0.0.0", "10.0.0.61"))
    assert {UP, LOCAL, G2} <= d.ports()
    assert d.out(UP)["arp_sha"] == STATION and d.out(UP)["arp_spa"] == "0.0.0.0"
    assert "10.0.0.61" not in rig.core.bindings


def test_uplink_arp_claiming_a_guest_ip_is_counted_as_conflict():
    rig = Rig()
    bind(rig, G1, ip(G1))
    rig.send(UP, arp_request("02:88:00:00:00:01", ip(G1), ip(G1)))
    assert rig.core.counters["conflicts.uplink"] == 1
    assert rig.core.bindings[ip(G1)].port_no == G1


def test_refusals_are_logged_once_per_cause(caplog):
    rig = Rig()
    bind(rig, G1, ip(G1))
    bind(rig, G2, ip(G2))
    with caplog.at_level(logging.WARNING, logger="wlbridge.core"):
        for _ in range(20):
            rig.send(G2, arp_request(mac(G2), ip(G1), ip(G1)))
    assert rig.core.counters["refused.ip-in-use"] == 20
    assert len([r for r in caplog.records if "ip-in-use" in r.getMessage()]) == 1


def test_binding_limits_per_port():
    rig = Rig(config=CoreConfig(uplink="wlan0", max_ips_per_port=2))
    for n in range(3):
        bind(rig, G1, f"10.0.1.{n + 1}")
    assert sorted(rig.core.guests[G1].ips) == ["10.0.1.1", "10.0.1.2"]
    assert rig.core.counters["refused.port-limit"] == 1


def test_malformed_packet_ins_never_raise():
    rig = Rig()
    for data in (b"", b"\x00" * 5, b"\xff" * 14, b"\x00" * 12 + b"\x08\x06" + b"\x00" * 3,
                 b"\x00" * 12 + b"\x08\x00" + b"\x45" + b"\x00" * 30, bytes(range(256)) * 8):
        assert rig.core.packet_in(G1, data, rig.now) == []
    assert rig.core.packet_in(UP, b"\x01" * 60, rig.now) == []
    # refused as malformed, not swallowed as an internal error
    assert rig.core.counters["errors.internal"] == 0


def test_guests_cannot_act_as_dhcp_server_or_ipv6_router():
    from ofsim import ether, udp

    rig = Rig()
    bind(rig, G1, ip(G1))
    offer = udp(mac(G1), "ff:ff:ff:ff:ff:ff", ip(G1), "255.255.255.255", 67, 68,
                payload=b"\x02" + b"\0" * 240)
    d = rig.send(G1, offer)
    assert d.outputs == [] and rig.core.counters["refused.dhcp-server"] == 1
    for icmp_type, refused in ((134, True), (135, False)):
        pkt = ether(mac(G1), "33:33:00:00:00:01", 0x86DD, ip_proto=58,
                    icmpv6_type=icmp_type, ipv6_src="fe80::1", ipv6_dst="ff02::1",
                    data=_icmpv6_frame(mac(G1), icmp_type))
        d = rig.send(G1, pkt)
        if refused:
            assert d.outputs == [] and rig.core.counters["refused.ipv6-router-advert"] == 1
        else:
            assert UP in d.ports()


def _icmpv6_frame(src: str, icmp_type: int) -> bytes:
    from wlbridge.compat import ethernet, icmpv6, ipv6, packet

    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet("33:33:00:00:00:01", src, 0x86DD))
    pkt.add_protocol(ipv6.ipv6(src="fe80::1", dst="ff02::1", nxt=58))
    body = icmpv6.nd_router_advert() if icmp_type == 134 else icmpv6.nd_neighbor(dst="fe80::2")
    pkt.add_protocol(icmpv6.icmpv6(type_=icmp_type, data=body))
    pkt.serialize()
    return bytes(pkt.data)
