"""Expiry, ports coming and going, multi-IP guests, station MAC changes."""

from __future__ import annotations

from ofsim import arp_request, icmp_echo
from rig import HOST_IP, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge.compat import ofp
from wlbridge.core import CoreConfig
from wlbridge.flows import cookies
from wlbridge.model.state import Port

G1, G2 = 2, 3


def bind(rig: Rig, port: int, addr: str) -> None:
    rig.send(port, arp_request(mac(port), addr, addr))


def inbound(rig: Rig, addr: str) -> set[int]:
    return rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr)).ports()


def test_multi_ip_guest_gets_traffic_for_each_address():
    rig = Rig()
    bind(rig, G1, ip(G1))
    bind(rig, G1, "10.0.0.40")
    assert inbound(rig, ip(G1)) == {G1} and inbound(rig, "10.0.0.40") == {G1}


def test_unused_binding_expires_and_traffic_falls_back_to_host():
    rig = Rig(config=CoreConfig(uplink="wlan0", idle_timeout=60))
    bind(rig, G1, ip(G1))
    rig.advance(30)
    rig.send(G1, icmp_echo(mac(G1), ROUTER, ip(G1), ROUTER_IP))  # keeps it alive
    rig.advance(45)
    assert inbound(rig, ip(G1)) == {G1}
    rig.advance(61)
    assert ip(G1) not in rig.core.bindings
    assert inbound(rig, ip(G1)) == {LOCAL}
    assert not [f for f in rig.sw.flows() if "ipv4_src" in dict(f.match)
                and dict(f.match)["ipv4_src"] == ip(G1)]


def test_expired_address_can_be_relearned_and_then_claimed_by_another_guest():
    rig = Rig(config=CoreConfig(uplink="wlan0", idle_timeout=60))
    bind(rig, G1, ip(G1))
    rig.advance(61)
    bind(rig, G2, ip(G1))
    assert rig.core.bindings[ip(G1)].port_no == G2
    assert inbound(rig, ip(G1)) == {G2}


def test_guest_changing_ip_is_rebound():
    rig = Rig()
    bind(rig, G1, ip(G1))
    bind(rig, G1, "10.0.0.41")
    assert inbound(rig, "10.0.0.41") == {G1}


def test_removed_port_takes_all_its_flows_and_bindings():
    rig = Rig()
    bind(rig, G1, ip(G1))
    bind(rig, G1, "10.0.0.42")
    bind(rig, G2, ip(G2))
    rig.remove_port(G1)
    assert ip(G1) not in rig.core.bindings and "10.0.0.42" not in rig.core.bindings
    for f in rig.sw.flows():
        c = cookies.decode(f.cookie)
        assert c is None or c.subject != G1, str(f)
    assert inbound(rig, ip(G1)) == {LOCAL}
    assert inbound(rig, ip(G2)) == {G2}
    # group delivery (from the LAN, from a guest, from the host) names no removed port
    for port, pkt in ((UP, arp_request(ROUTER, ROUTER_IP, "10.0.0.99")),
                      (G2, arp_request(mac(G2), ip(G2), "10.0.0.99")),
                      (LOCAL, arp_request(STATION, HOST_IP, "10.0.0.99"))):
        d = rig.send(port, pkt)
        assert not d.dead_ends, (port, d.dead_ends)
    assert rig.send(UP, arp_request(ROUTER, ROUTER_IP, "10.0.0.99")).ports() == {LOCAL, G2}


def test_port_readded_is_relearned():
    rig = Rig()
    bind(rig, G1, ip(G1))
    rig.remove_port(G1)
    rig.add_port(G1)
    assert rig.core.guests[G1].mac is None
    bind(rig, G1, ip(G1))
    assert inbound(rig, ip(G1)) == {G1}


def test_new_port_is_included_in_group_delivery():
    rig = Rig()
    rig.add_port(7)
    d = rig.send(UP, arp_request(ROUTER, ROUTER_IP, "10.0.0.99"))
    assert d.ports() == {LOCAL, G1, G2, 7}


def test_station_mac_change_rewrites_every_flow_using_it():
    rig = Rig()
    bind(rig, G1, ip(G1))
    new = "02:5a:00:00:00:99"
    rig.station = new
    rig.apply(rig.core.port_modified(Port(UP, "wlan0", new), rig.now))
    assert STATION not in rig.sw.dump()
    d = rig.send(G1, icmp_echo(mac(G1), ROUTER, ip(G1), ROUTER_IP))
    assert d.out(UP)["eth_src"] == new
    d = rig.send(G1, arp_request(mac(G1), ip(G1), ROUTER_IP))
    assert d.out(UP)["arp_sha"] == new
    assert rig.send(UP, icmp_echo(ROUTER, new, ROUTER_IP, ip(G1))).ports() == {G1}
    assert rig.send(UP, icmp_echo(new, ROUTER, ROUTER_IP, ip(G1))).ports() == set()


def test_uplink_missing_means_nothing_is_forwarded():
    rig = Rig()
    bind(rig, G1, ip(G1))
    rig.apply(rig.core.port_deleted(UP, rig.now))
    d = rig.send(G1, icmp_echo(mac(G1), ROUTER, ip(G1), ROUTER_IP))
    assert d.outputs == []
    rig.apply(rig.core.port_added(Port(UP, "wlan0", STATION), rig.now))
    assert rig.send(G1, icmp_echo(mac(G1), ROUTER, ip(G1), ROUTER_IP)).ports() == {UP}


def test_every_message_serialises():
    from ofsim import assert_serialisable

    rig = Rig()
    bind(rig, G1, ip(G1))
    msgs = rig.core.switch_connected(1, rig.port_list(), rig.now)
    assert_serialisable(msgs)
    assert any(m.command == ofp.OFPFC_ADD for m in msgs if hasattr(m, "command"))


def test_flows_deleted_by_a_stopping_switch_do_not_expire_bindings():
    rig = Rig(config=CoreConfig(uplink="wlan0", idle_timeout=60))
    bind(rig, G1, ip(G1))
    flow = next(f for f in rig.sw.flows() if dict(f.match).get("ipv4_src") == ip(G1))
    rig.core.flow_removed(flow.cookie, dict(flow.match), rig.now, ofp.OFPRR_DELETE)
    assert ip(G1) in rig.core.bindings
    rig.core.flow_removed(flow.cookie, dict(flow.match), rig.now, ofp.OFPRR_IDLE_TIMEOUT)
    assert ip(G1) not in rig.core.bindings
