"""IPv6 unicast for guests (issue 12): packet fate through the wlbridge pipeline (simulated
switch + real core) for Neighbor Discovery out and in, learning, anti-spoofing, expiry."""

from __future__ import annotations

from rig import LOCAL, ROUTER, STATION, UP, Rig, ip, mac
from v6frames import (
    ALL_NODES,
    ALL_NODES_MAC,
    ROUTER6_LL,
    dad,
    echo6,
    gua,
    ll,
    na,
    ns,
    options,
    ra,
    redirect,
    rs,
    solicited,
    udp6,
)
from wlbridge.core import CoreConfig

G1, G2 = 2, 3
HOST6 = "2001:db8:1::ff"
HOST6_LL = "fe80::ff"


def rig6(**config) -> Rig:
    rig = Rig(config=CoreConfig(uplink="wlan0", **config))
    rig.apply(rig.core.host_addresses(["10.0.0.2", HOST6, HOST6_LL], rig.now))
    return rig


def learn6(rig: Rig, port: int, addr: str) -> None:
    """The guest runs DAD for `addr` (how Linux starts using an address)."""
    rig.send(port, dad(mac(port), addr))
    b = rig.core.bindings[addr]
    assert (b.port_no, b.mac, b.source) == (port, mac(port), "nd")


# ---------------------------------------------------------------- outbound
def test_guest_ns_leaves_with_the_station_mac_in_ethernet_source_and_option():
    rig = rig6()
    d = rig.send(G1, ns(mac(G1), ll(G1), ROUTER6_LL))
    up = d.out(UP)
    assert up["eth_src"] == STATION and up["ipv6_nd_sll"] == STATION
    assert options(up) == {"sll": STATION}
    # the host and the other guests see the guest's own MAC
    assert d.out(LOCAL)["ipv6_nd_sll"] == mac(G1) and d.out(G2)["eth_src"] == mac(G1)
    assert options(d.out(G2)) == {"sll": mac(G1)}
    assert rig.core.bindings[ll(G1)].source == "nd"


def test_guest_na_leaves_with_the_station_mac_in_ethernet_source_and_option():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    d = rig.send(G1, na(mac(G1), gua(G1), gua(G1), ROUTER, ROUTER6_LL))
    assert d.ports() == {UP}
    up = d.out(UP)
    assert up["eth_src"] == STATION and options(up) == {"tll": STATION}


def test_guest_to_guest_and_host_nd_keeps_the_guests_mac():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    learn6(rig, G2, gua(G2))
    d = rig.send(G1, ns(mac(G1), gua(G1), gua(G2)))
    assert options(d.out(G2)) == {"sll": mac(G1)} and options(d.out(LOCAL)) == {"sll": mac(G1)}
    assert options(d.out(UP)) == {"sll": STATION}
    d = rig.send(G2, na(mac(G2), gua(G2), gua(G2), mac(G1), gua(G1)))
    assert d.ports() == {G1} and options(d.out(G1)) == {"tll": mac(G2)}
    d = rig.send(G2, na(mac(G2), gua(G2), gua(G2), STATION, HOST6))
    assert d.ports() == {LOCAL} and options(d.out(LOCAL)) == {"tll": mac(G2)}


def test_dad_is_forwarded_without_options_and_binds_the_tentative_address():
    rig = rig6()
    d = rig.send(G1, dad(mac(G1), gua(G1)))
    assert {UP, LOCAL, G2} <= d.ports()
    assert d.out(UP)["eth_src"] == STATION and options(d.out(UP)) == {}
    assert d.out(UP)["ipv6_src"] == "::"
    assert rig.core.bindings[gua(G1)].port_no == G1


def test_router_solicitation_leaves_rewritten_and_the_unicast_answer_comes_back():
    rig = rig6()
    d = rig.send(G1, rs(mac(G1), ll(G1)))
    assert d.ports() == {UP}
    up = d.out(UP)
    assert up["eth_src"] == STATION and up["ipv6_src"] == ll(G1)
    assert options(up) == {"sll": STATION}
    assert rig.core.bindings[ll(G1)].port_no == G1
    # radvd answers to the MAC in the option (the station's), for the guest's link-local
    d = rig.send(UP, ra(ROUTER, ROUTER6_LL, eth_dst=STATION, dst=ll(G1)))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)


def test_router_solicitation_from_the_unspecified_address_has_no_option():
    rig = rig6()
    d = rig.send(G1, rs(mac(G1), "::", sll=False))
    assert d.ports() == {UP} and options(d.out(UP)) == {}
    assert d.out(UP)["eth_src"] == STATION


def test_router_advertisements_and_redirects_from_guests_never_leave():
    rig = rig6()
    learn6(rig, G1, ll(G1))
    d = rig.send(G1, ra(mac(G1), ll(G1)))
    assert d.outputs == [] and rig.core.counters["refused.ipv6-router-advert"] == 1
    before = rig.packet_ins
    d = rig.send(G1, redirect(mac(G1), ll(G1), mac(G2), ll(G2)))
    assert d.outputs == [] and rig.packet_ins == before


# ---------------------------------------------------------------- inbound
def test_traffic_for_a_guests_global_and_link_local_address_reaches_it():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    learn6(rig, G1, ll(G1))
    for addr in (gua(G1), ll(G1)):
        d = rig.send(UP, udp6(ROUTER, STATION, ROUTER6_LL, addr))
        assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)


def test_ns_for_a_guest_address_reaches_that_guest_with_its_mac():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    learn6(rig, G2, gua(G2))
    _group, group_mac = solicited(gua(G1))
    # to the solicited-node group, as sent; and converted to unicast by the AP
    for eth_dst in (group_mac, STATION):
        d = rig.send(UP, ns(ROUTER, ROUTER6_LL, gua(G1), eth_dst=eth_dst))
        assert d.ports() == {G1}, d
        assert d.out(G1)["eth_dst"] == mac(G1) and d.out(G1)["ipv6_nd_sll"] == ROUTER
    # neighbour unreachability detection: unicast to the station, for the address
    d = rig.send(UP, ns(ROUTER, ROUTER6_LL, gua(G1), eth_dst=STATION, dst=gua(G1)))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)
    # an NA answering the guest's NS comes to its address
    d = rig.send(UP, na(ROUTER, ROUTER6_LL, ROUTER6_LL, STATION, gua(G1)))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)


def test_lan_na_claiming_a_guest_address_is_a_conflict_seen_by_the_guest_only():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    other = "02:88:00:00:00:01"
    d = rig.send(UP, na(other, gua(G1), gua(G1), ALL_NODES_MAC, ALL_NODES, solicited_flag=False))
    assert d.ports() == {G1}  # its DAD needs it; the host's neighbour cache must not
    assert rig.core.counters["conflicts.uplink"] == 1
    assert rig.core.bindings[gua(G1)].port_no == G1


def test_host_ipv6_keeps_working_and_cannot_be_claimed():
    rig = rig6()
    d = rig.send(UP, echo6(ROUTER, STATION, ROUTER6_LL, HOST6))
    assert d.ports() == {LOCAL}
    d = rig.send(UP, ns(ROUTER, ROUTER6_LL, HOST6))
    assert LOCAL in d.ports()
    d = rig.send(LOCAL, ns(STATION, HOST6_LL, ROUTER6_LL))
    assert d.ports() >= {UP} and options(d.out(UP)) == {"sll": STATION}
    for frame in (dad(mac(G1), HOST6), udp6(mac(G1), ROUTER, HOST6_LL, ROUTER6_LL)):
        d = rig.send(G1, frame)
        assert UP not in d.ports() or frame["ipv6_src"] == "::"
    assert HOST6 not in rig.core.bindings and HOST6_LL not in rig.core.bindings
    assert rig.core.counters["refused.host-ip"] == 2


# ---------------------------------------------------------------- learning
def test_unbound_sources_are_learned_once_then_data_stays_in_the_switch():
    rig = rig6()
    d = rig.send(G1, udp6(mac(G1), ROUTER, gua(G1, 7), "2001:db8:9::1"))
    assert d.out(UP)["eth_src"] == STATION
    assert rig.core.bindings[gua(G1, 7)].source == "ipv6"
    before = rig.packet_ins
    for _ in range(1000):
        d = rig.send(G1, udp6(mac(G1), ROUTER, gua(G1, 7), "2001:db8:9::1"))
        assert d.ports() == {UP}
        d = rig.send(UP, udp6(ROUTER, STATION, "2001:db8:9::1", gua(G1, 7)))
        assert d.ports() == {G1}
    # bound ND stays in the switch too
    rig.send(G1, ns(mac(G1), gua(G1, 7), ROUTER6_LL))
    rig.send(G1, na(mac(G1), gua(G1, 7), gua(G1, 7), ROUTER, ROUTER6_LL))
    rig.send(UP, ns(ROUTER, ROUTER6_LL, gua(G1, 7)))
    assert rig.packet_ins == before


def test_an_na_for_a_new_target_binds_it():
    rig = rig6()
    learn6(rig, G1, ll(G1))
    d = rig.send(G1, na(mac(G1), ll(G1), gua(G1, 3), ROUTER, ROUTER6_LL))
    assert d.out(UP) is not None and options(d.out(UP)) == {"tll": STATION}
    assert rig.core.bindings[gua(G1, 3)].source == "nd"


def test_each_guest_holds_a_bounded_number_of_ipv6_addresses_apart_from_ipv4():
    rig = rig6(ipv6_bindings_per_guest=2, max_ips_per_port=1)
    for n in range(3):
        rig.send(G1, dad(mac(G1), gua(G1, n)))
    assert sorted(a for a in rig.core.guests[G1].ips if ":" in a) == [gua(G1, 0), gua(G1, 1)]
    assert rig.core.counters["refused.ipv6-limit"] == 1
    from ofsim import arp_request

    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    assert rig.core.bindings[ip(G1)].port_no == G1


def test_idle_ipv6_bindings_expire_and_inbound_then_goes_to_the_host():
    rig = rig6(idle_timeout=60)
    rig.send(G1, udp6(mac(G1), ROUTER, gua(G1), "2001:db8:9::1"))
    assert gua(G1) in rig.core.bindings
    rig.advance(30)
    rig.send(G1, udp6(mac(G1), ROUTER, gua(G1), "2001:db8:9::1"))
    rig.advance(40)
    assert gua(G1) in rig.core.bindings  # used 40 s ago
    rig.advance(61)
    assert gua(G1) not in rig.core.bindings
    assert rig.core.counters["bindings.expired.idle"] == 1
    d = rig.send(UP, udp6(ROUTER, STATION, "2001:db8:9::1", gua(G1)))
    assert d.ports() == {LOCAL}


# ---------------------------------------------------------------- anti-spoofing
def test_a_guest_cannot_take_another_guests_ipv6_address():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    learn6(rig, G2, gua(G2))
    attempts = [
        udp6(mac(G2), ROUTER, gua(G1), "2001:db8:9::1"),
        ns(mac(G2), gua(G1), ROUTER6_LL),
        na(mac(G2), gua(G2), gua(G1), ALL_NODES_MAC, ALL_NODES, solicited_flag=False),
        na(mac(G2), gua(G1), gua(G1), ROUTER, ROUTER6_LL),
    ]
    for frame in attempts:
        d = rig.send(G2, frame)
        assert d.outputs == [], d
    assert rig.core.counters["refused.ip-in-use"] == len(attempts)
    rig.send(G2, dad(mac(G2), gua(G1)))  # forwarded (claims nothing yet), not bound
    assert rig.core.bindings[gua(G1)].port_no == G1
    d = rig.send(UP, udp6(ROUTER, STATION, "2001:db8:9::1", gua(G1)))
    assert d.ports() == {G1}


def test_nd_options_naming_another_mac_are_refused_or_rewritten():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    learn6(rig, G2, gua(G2))
    # unbound: refused at the controller
    d = rig.send(G1, ns(mac(G1), ll(G1), ROUTER6_LL, sll=mac(G2)))
    assert d.outputs == [] and rig.core.counters["refused.nd-sll-mismatch"] == 1
    d = rig.send(G1, na(mac(G1), gua(G1), gua(G1, 9), mac(G2), gua(G2), tll=mac(G2)))
    assert d.outputs == [] and rig.core.counters["refused.nd-tll-mismatch"] == 1
    # bound: the switch puts the guest's own MAC in the option
    d = rig.send(G1, ns(mac(G1), gua(G1), gua(G2), sll=mac(G2)))
    assert options(d.out(G2)) == {"sll": mac(G1)}
    d = rig.send(G1, na(mac(G1), gua(G1), gua(G1), mac(G2), gua(G2), tll=mac(G2)))
    assert d.ports() == {G2} and options(d.out(G2)) == {"tll": mac(G1)}


def test_every_ipv6_packet_in_of_a_guest_passes_its_meter():
    rig = rig6(meters=True)
    learn6(rig, G1, ll(G1))
    frames = [rs(mac(G1), ll(G1)), dad(mac(G1), gua(G1, 5)),
              udp6(mac(G1), ROUTER, gua(G1, 6), ROUTER6_LL),
              na(mac(G1), ll(G1), gua(G1, 7), ROUTER, ROUTER6_LL)]
    for frame in frames:
        r = rig.sw.process(G1, frame, now=rig.now)
        assert r.to_controller and r.meters == [G1], str(r)


def test_lan_nd_naming_a_guests_mac_is_dropped():
    rig = rig6()
    learn6(rig, G1, gua(G1))
    lan = "2001:db8:1::99"
    for frame in (ns(ROUTER, ROUTER6_LL, lan, sll=mac(G1)),
                  na(ROUTER, lan, lan, ALL_NODES_MAC, ALL_NODES, tll=mac(G1)),
                  ns(ROUTER, ROUTER6_LL, gua(G1), sll=mac(G1))):
        d = rig.send(UP, frame)
        assert d.outputs == [] and d.packet_ins == 0, d
    # the same from the LAN's own MAC goes where it should
    d = rig.send(UP, ns(ROUTER, ROUTER6_LL, lan))
    assert {LOCAL, G1, G2} <= d.ports()
