"""Ports that carry several guests (issue 22, item 3): a Linux bridge, a VM with nested
guests or a container host behind one guest port.  Packet fate through the simulated switch
and the real core: each guest behind the port has its own MAC, bindings, source check, DHCP
and IPv6; siblings cannot take each other's addresses; the port's MACs are bounded."""

from __future__ import annotations

import pytest
from core_dhcp_rig import (
    CLIENT_ID,
    cid_reply,
    send,
    tolerant_switch,  # noqa: F401  (autouse fixture)
)
from dhcp_frames import ack, discover, nak, offer, release, request
from ofsim import arp_request, from_bytes, icmp_echo
from rig import BCAST, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from scapy.layers.igmp import IGMP
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from v6frames import ROUTER6_LL, dad, echo6, gua, na, ns
from wlbridge.core import Core, CoreConfig
from wlbridge.model.state import Port, StateFormatError

G1, G2 = 2, 3
A, B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"  # two guests behind G1 (C is mac(G2))
A_IP, B_IP = "10.0.0.61", "10.0.0.62"
A6, B6 = "2001:db8:1::a:1", "2001:db8:1::b:1"


def rig_ab(**config) -> Rig:
    """A and B behind G1 and C on G2, each with its address claimed by ARP."""
    rig = Rig(config=CoreConfig(uplink="wlan0", **config))
    for port, m, addr in ((G1, A, A_IP), (G1, B, B_IP), (G2, mac(G2), ip(G2))):
        rig.send(port, arp_request(m, addr, addr))
    return rig


def refusals(rig: Rig) -> dict[str, int]:
    return {k: v for k, v in rig.core.counters.items() if k.startswith("refused.")}


def test_two_guests_behind_one_port_each_get_their_own_binding_and_reach_the_lan():
    rig = rig_ab()
    assert list(rig.core.guests[G1].macs) == [A, B]
    assert {a: (b.port_no, b.mac) for a, b in rig.core.bindings.items()} == {
        A_IP: (G1, A), B_IP: (G1, B), ip(G2): (G2, mac(G2))}
    for m, addr in ((A, A_IP), (B, B_IP)):
        out = rig.send(G1, icmp_echo(m, ROUTER, addr, ROUTER_IP))  # to the LAN router
        assert out.ports() == {UP} and out.out(UP)["eth_src"] == STATION
        back = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr))  # and back in
        assert back.ports() == {G1} and back.out(G1)["eth_dst"] == m
    assert refusals(rig) == {}


def test_siblings_talk_behind_their_port_and_are_never_sent_back_into_it():
    """A and B share the bridge behind G1: frames between them never need the switch (the
    switch does not send one back in, nor out to anyone else); a broadcast reaches the host,
    the LAN and the other port, not G1 again."""
    rig = rig_ab()
    d = rig.send(G1, icmp_echo(A, B, A_IP, B_IP))
    assert d.outputs == [] and d.packet_ins == 0 and refusals(rig) == {}
    d = rig.send(G1, arp_request(A, A_IP, B_IP))
    assert d.ports() == {LOCAL, G2, UP}
    assert refusals(rig) == {}


def test_a_guest_behind_a_port_and_a_guest_on_another_port_reach_each_other():
    rig = rig_ab()
    d = rig.send(G1, icmp_echo(B, mac(G2), B_IP, ip(G2)))
    assert d.ports() == {G2} and d.out(G2)["eth_src"] == B
    d = rig.send(G2, icmp_echo(mac(G2), A, ip(G2), A_IP))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == A


def test_a_sibling_cannot_take_or_use_another_guests_address():
    rig = rig_ab()
    d = rig.send(G1, arp_request(B, A_IP, A_IP))  # B claims A's address
    assert UP not in d.ports() and rig.core.bindings[A_IP].mac == A
    assert rig.core.counters["refused.ip-in-use"] == 1
    d = rig.send(G1, icmp_echo(B, ROUTER, A_IP, ROUTER_IP))  # B sends from it
    assert d.outputs == [] and rig.core.bindings[A_IP].mac == A
    back = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, A_IP))
    assert back.out(G1)["eth_dst"] == A


def test_a_mac_of_a_guest_on_another_port_is_not_taken_behind_this_one():
    rig = rig_ab()
    d = rig.send(G1, icmp_echo(mac(G2), STATION, ip(G2), ROUTER_IP))
    assert d.outputs == [] and rig.core.counters["refused.duplicate-mac"] == 1
    assert list(rig.core.guests[G1].macs) == [A, B]


def test_macs_beyond_the_ports_bound_are_refused_counted_and_shown():
    rig = rig_ab(max_macs_per_port=2)
    d = rig.send(G1, arp_request("02:00:00:00:0c:01", "10.0.0.63", "10.0.0.63"))
    assert d.outputs == [] and "10.0.0.63" not in rig.core.bindings
    assert rig.core.counters["refused.mac-limit"] == 1
    status = rig.core.status(rig.now)
    g1 = next(g for g in status["guests"] if g["port_no"] == G1)
    assert g1["macs"] == [A, B] and g1["mac"] == A
    assert {a["ip"]: a["mac"] for a in g1["ips"]} == {A_IP: A, B_IP: B}
    assert status["counters"]["refused.mac-limit"] == 1


def test_a_port_with_a_configured_mac_carries_that_guest_only():
    rig = Rig(config=CoreConfig(uplink="wlan0", static_macs={f"g{G1}": A}))
    assert rig.send(G1, arp_request(A, A_IP, A_IP)).ports() == {LOCAL, G2, UP}
    d = rig.send(G1, arp_request(B, B_IP, B_IP))
    assert d.outputs == [] and rig.core.counters["refused.spoofed-mac"] == 1
    assert list(rig.core.guests[G1].macs) == [A]


@pytest.mark.parametrize("config", [None, CLIENT_ID], ids=["broadcast", "client-id"])
def test_each_guest_behind_a_port_gets_its_own_dhcp_lease(config):
    rig = Rig(config=config)
    cid = config is not None
    for m, addr, xid in ((A, A_IP, 0xA1), (B, B_IP, 0xB1)):
        assert send(rig, G1, discover(m, xid)).ports() == {UP}
        rep = cid_reply(offer, xid, addr) if cid else offer(m, xid, addr)
        assert send(rig, UP, rep).ports() == {G1}
        assert send(rig, G1, request(m, xid, addr)).ports() == {UP}
        rep = cid_reply(ack, xid, addr) if cid else ack(m, xid, addr)
        d = send(rig, UP, rep)
        assert d.ports() == {G1} and d.out(G1)["eth_dst"] == m
    assert {a: (b.mac, b.source) for a, b in rig.core.bindings.items()} == {
        A_IP: (A, "dhcp"), B_IP: (B, "dhcp")}
    for m, addr in ((A, A_IP), (B, B_IP)):
        back = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr))
        assert back.ports() == {G1} and back.out(G1)["eth_dst"] == m
    send(rig, G1, release(B, 0xB2, B_IP))  # B gives its lease back: A keeps its own
    assert set(rig.core.bindings) == {A_IP}


def test_a_nak_for_one_guest_behind_a_port_leaves_its_siblings_lease_alone():
    rig = Rig()
    for m, addr, xid in ((A, A_IP, 0xA1), (B, B_IP, 0xB1)):
        send(rig, G1, request(m, xid, addr))
        send(rig, UP, ack(m, xid, addr))
    assert set(rig.core.bindings) == {A_IP, B_IP}
    send(rig, G1, request(B, 0xB2, B_IP))
    d = send(rig, UP, nak(B, 0xB2))
    assert d.ports() == {G1} and set(rig.core.bindings) == {A_IP}


def test_a_dhcp_frame_for_a_siblings_chaddr_is_refused():
    rig = rig_ab()
    d = send(rig, G1, discover(B, 0xB3, chaddr=A))
    assert d.outputs == [] and rig.core.counters["refused.dhcp-chaddr"] == 1


def test_each_guest_behind_a_port_gets_its_own_ipv6_addresses():
    rig = rig_ab()
    rig.send(G1, dad(A, A6))
    rig.send(G1, dad(B, B6))
    assert {a: rig.core.bindings[a].mac for a in (A6, B6)} == {A6: A, B6: B}
    for m, addr in ((A, A6), (B, B6)):
        back = rig.send(UP, echo6(ROUTER, STATION, ROUTER6_LL, addr))
        assert back.ports() == {G1} and back.out(G1)["eth_dst"] == m
        out = rig.send(G1, echo6(m, ROUTER, addr, ROUTER6_LL))
        assert out.ports() == {UP} and out.out(UP)["eth_src"] == STATION
    # B cannot answer for A's address, nor name itself in A's stead
    d = rig.send(G1, na(B, B6, A6, ROUTER, ROUTER6_LL))
    assert UP not in d.ports() and rig.core.bindings[A6].mac == A
    d = rig.send(G1, ns(B, A6, ROUTER6_LL))
    assert UP not in d.ports() and rig.core.bindings[A6].mac == A
    assert rig.core.counters["refused.ip-in-use"] >= 1
    # B's first NS from its link-local address names B (its own MAC), never A
    d = rig.send(G1, ns(B, "fe80::b", ROUTER6_LL, sll=A))
    assert UP not in d.ports() and "fe80::b" not in rig.core.bindings
    assert rig.core.counters["refused.nd-sll-mismatch"] == 1
    d = rig.send(G1, ns(B, "fe80::b", ROUTER6_LL))
    assert d.out(UP)["ipv6_nd_sll"] == STATION and rig.core.bindings["fe80::b"].mac == B


def test_ipv6_addresses_are_bounded_per_guest_not_per_port():
    rig = rig_ab(ipv6_bindings_per_guest=2)
    for n in (1, 2):
        rig.send(G1, dad(A, gua(10, n)))
        rig.send(G1, dad(B, gua(11, n)))
    assert sum(1 for a in rig.core.bindings if ":" in a) == 4
    rig.send(G1, dad(A, gua(10, 3)))
    assert gua(10, 3) not in rig.core.bindings
    assert rig.core.counters["refused.ipv6-limit"] == 1


def test_data_from_32_guests_behind_one_port_sends_nothing_to_the_controller():
    """Once each guest has sent its first frame, their data stays in the switch: 0
    packet-ins per 1,000 data packets (both ways)."""
    rig = Rig(config=CoreConfig(uplink="wlan0", max_ips_per_port=32))
    guests = [(f"02:00:00:00:1{n // 16:x}:{n % 16:02x}", f"10.0.1.{n + 1}") for n in range(32)]
    for m, addr in guests:
        rig.send(G1, arp_request(m, addr, addr))
    assert len(rig.core.guests[G1].macs) == 32 and len(rig.core.bindings) == 32
    before = rig.packet_ins
    for n in range(1000):
        m, addr = guests[n % 32]
        if n % 2:
            d = rig.send(G1, icmp_echo(m, ROUTER, addr, ROUTER_IP))
            assert d.ports() == {UP}
        else:
            d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr))
            assert d.ports() == {G1} and d.out(G1)["eth_dst"] == m
    assert rig.packet_ins == before
    assert refusals(rig) == {}


def igmpv2(src_mac: str, src: str, group: str, kind: int = 0x16) -> dict:
    dst = "224.0.0.2" if kind == 0x17 else group
    return from_bytes(bytes(Ether(src=src_mac, dst="01:00:5e:00:00:16")
                            / IP(src=src, dst=dst, ttl=1) / IGMP(type=kind, gaddr=group)))


def test_a_group_stays_joined_on_a_shared_port_when_one_guest_leaves():
    rig = rig_ab()
    rig.send(G1, igmpv2(A, A_IP, "239.1.2.3"))
    rig.send(G1, igmpv2(B, B_IP, "239.1.2.3"))
    assert G1 in rig.core.model.groups["239.1.2.3"]
    rig.send(G1, igmpv2(A, A_IP, "239.1.2.3", kind=0x17))  # A leaves
    assert G1 in rig.core.model.groups["239.1.2.3"]  # B may still be a member
    assert rig.core.counters["groups.leave_shared"] == 1


def test_the_ports_guests_survive_a_restart_and_an_old_state_file_still_loads():
    rig = rig_ab()
    saved = rig.core.export_state()
    g1 = next(g for g in saved["guests"] if g["name"] == f"g{G1}")
    assert (g1["mac"], g1["macs"]) == (A, [B])
    ports = [Port(UP, "wlan0", STATION), Port(G1, f"g{G1}", "fe:00:00:00:00:02")]
    core = Core(CoreConfig(uplink="wlan0"))
    core.restore_state(saved)
    core.switch_connected(0xAB, ports, rig.now)
    assert list(core.guests[G1].macs) == [A, B]
    assert {a: b.mac for a, b in core.bindings.items()} == {A_IP: A, B_IP: B}
    # a file written before ports carried several guests: one MAC per port, no "macs"
    old = {"version": 1, "generation": 3,
           "guests": [{"name": f"g{G1}", "mac": A, "mac_source": "learned"}],
           "bindings": [{"ip": A_IP, "port": f"g{G1}", "mac": A, "source": "arp",
                         "learned_at": 900.0, "expires": None, "lease": None}]}
    core = Core(CoreConfig(uplink="wlan0"))
    core.restore_state(old)
    core.switch_connected(0xAB, ports, rig.now)
    assert list(core.guests[G1].macs) == [A] and core.bindings[A_IP].mac == A
    assert core.model.invariant_errors() == []


def test_broadcast_from_the_lan_reaches_every_guest_port_once():
    rig = rig_ab()
    d = rig.send(UP, arp_request(ROUTER, ROUTER_IP, "10.0.0.99", eth_dst=BCAST))
    assert G1 in d.ports() and len([p for p, _ in d.outputs if p == G1]) == 1


def test_a_state_file_with_a_bad_guest_mac_list_is_refused():
    bad = {"version": 1, "generation": 1,
           "guests": [{"name": "g2", "mac": A, "mac_source": "learned", "macs": ["01:00:5e:00:00:01"]}],
           "bindings": []}
    with pytest.raises(StateFormatError):
        Core(CoreConfig(uplink="wlan0")).restore_state(bad)


def test_each_guest_behind_a_port_gets_its_own_dhcpv6_lease():
    from dhcp6_frames import DHCP6_Reply, DHCP6_Request, client_msg, headers6, ia_na, server_msg

    rig = Rig()
    for m, ll, addr, xid in ((A, "fe80::a", A6, 0xA6), (B, "fe80::b", B6, 0xB6)):
        out = rig.send(G1, headers6(client_msg(DHCP6_Request, m, xid, ia_na((addr, 0, 0)),
                                               src=ll)))
        assert out.ports() == {UP} and out.out(UP)["eth_src"] == STATION
        back = rig.send(UP, headers6(server_msg(DHCP6_Reply, m, xid, ia_na((addr, 3000, 4000)),
                                                dst=ll, eth_dst=STATION)))
        assert back.ports() == {G1} and back.out(G1)["eth_dst"] == m
    assert {a: (b.mac, b.source) for a, b in rig.core.bindings.items() if b.source == "dhcp6"} \
        == {A6: (A, "dhcp6"), B6: (B, "dhcp6")}
    for m, addr in ((A, A6), (B, B6)):
        d = rig.send(UP, echo6(ROUTER, STATION, ROUTER6_LL, addr))
        assert d.ports() == {G1} and d.out(G1)["eth_dst"] == m
