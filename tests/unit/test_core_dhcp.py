"""DHCP through the whole core and the fake switch (issue #4): packet fate, leases, bad frames.

Guests ``G1``/``G2`` learn their MAC from their first DHCP frame, as a fresh VM does.  The
LAN's DHCP server is the router; leases are ``lease_ip(port)``.
"""

from __future__ import annotations

import pytest
from core_dhcp_rig import (
    CLIENT_ID,
    CSUM,
    ETH_SRC,
    FLAGS,
    G1,
    G2,
    XID1,
    XID2,
    changed,
    dhcp_bindings,
    dora,
    learned_guests,
    reaches,
    send,
    tolerant_switch,  # noqa: F401  (autouse fixture)
)
from dhcp_frames import (
    BOOTP_AT,
    ack,
    client_msg,
    decline,
    discover,
    fix_udp_checksum,
    lease_ip,
    nak,
    offer,
    opt,
    parsed,
    release,
    renew,
    reply,
    request,
    udp_checksum,
    udp_checksum_ok,
)
from ofsim import arp_reply, arp_request, data_of, icmp_echo
from rig import BCAST, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge.core import CoreConfig
from wlbridge.proto import dhcp as D


# =================================================================== broadcast strategy: out
def test_discover_leaves_only_by_uplink_flagged_from_station_mac():
    rig = Rig()
    raw = discover(mac(G1), XID1)
    d = send(rig, G1, raw)
    assert d.ports() == {UP}
    out = data_of(d.out(UP))
    f = D.parse(out)
    assert f.broadcast and f.flags == D.BROADCAST_FLAG
    assert (f.eth_src, f.eth_dst, f.chaddr, f.xid) == (STATION, BCAST, mac(G1), XID1)
    assert udp_checksum_ok(out) and udp_checksum(out) != udp_checksum(raw)
    assert changed(raw, out) <= set(ETH_SRC + FLAGS + CSUM)  # nothing else touched


def test_request_gets_the_flag_too_and_a_flag_already_set_stays():
    rig = learned_guests()
    out = data_of(send(rig, G1, request(mac(G1), XID1, lease_ip(G1))).out(UP))
    assert D.parse(out).broadcast and udp_checksum_ok(out)
    raw = discover(mac(G1), XID1, flags=D.BROADCAST_FLAG)
    out = data_of(send(rig, G1, raw).out(UP))
    assert changed(raw, out) <= set(ETH_SRC)


def test_zero_udp_checksum_stays_zero():
    rig = Rig()
    raw = discover(mac(G1), XID1, csum=0)
    out = data_of(send(rig, G1, raw).out(UP))
    f = D.parse(out)
    assert f.broadcast and f.udp_csum == 0


# =================================================================== broadcast strategy: in
REPLY_STYLES = {
    "broadcast": {"eth_dst": BCAST, "ip_dst": "255.255.255.255"},
    "ap-unicast-to-station": {"eth_dst": STATION, "ip_dst": "255.255.255.255"},
    "ip-unicast-to-yiaddr": {"eth_dst": STATION, "ip_dst": lease_ip(G1)},
}


@pytest.mark.parametrize("kind", [offer, ack], ids=["offer", "ack"])
@pytest.mark.parametrize("style", REPLY_STYLES)
def test_reply_reaches_only_the_guest_named_by_chaddr(kind, style):
    rig = learned_guests()
    raw = kind(mac(G1), XID1, lease_ip(G1), **REPLY_STYLES[style])
    d = send(rig, UP, raw)
    assert d.ports() == {G1}, d
    out = data_of(d.out(G1))
    assert out == bytes.fromhex(mac(G1).replace(":", "")) + raw[6:]  # only eth_dst set
    f = D.parse(out)
    assert (f.eth_dst, f.chaddr, f.yiaddr) == (mac(G1), mac(G1), lease_ip(G1))
    assert udp_checksum_ok(out)
    # and the other guest's reply goes to the other guest
    d = send(rig, UP, kind(mac(G2), XID2, lease_ip(G2), eth_dst=BCAST))
    assert d.ports() == {G2} and d.out(G2)["eth_dst"] == mac(G2)


@pytest.mark.parametrize("style", ["broadcast", "client-id"])
def test_a_reply_with_a_wrong_udp_checksum_reaches_the_guest_corrected(style):
    """hostapd's unicast copy of a broadcast reply (proxy-ARP AP, ``disable_dgaf``) carries
    the checksum the server left to offload (measured in the Wi-Fi test bed): the guest's
    kernel would drop it."""
    from core_dhcp_rig import cid_reply
    from dhcp_frames import discover

    if style == "broadcast":
        rig = learned_guests()
        raw = offer(mac(G1), XID1, lease_ip(G1), eth_dst=STATION, csum=0x0B93)
    else:
        rig = Rig(config=CoreConfig(uplink="wlan0", dhcp_mode="client-id"))
        send(rig, G1, discover(mac(G1), XID1))
        raw = cid_reply(offer, XID1, lease_ip(G1), csum=0x0B93)
    assert not udp_checksum_ok(raw)
    d = send(rig, UP, raw)
    assert d.ports() == {G1}
    out = data_of(d.out(G1))
    assert udp_checksum_ok(out) and D.parse(out).yiaddr == lease_ip(G1)
    assert rig.core.counters["dhcp.reply.checksum_repaired"] == 1
    # a right checksum and "none" (0) are left as they are
    send(rig, UP, offer(mac(G1), XID1, lease_ip(G1), eth_dst=STATION))
    send(rig, UP, offer(mac(G1), XID1, lease_ip(G1), eth_dst=STATION, csum=0))
    assert rig.core.counters["dhcp.reply.checksum_repaired"] == 1


@pytest.mark.parametrize("eth_dst", [BCAST, STATION])
def test_reply_for_the_station_goes_to_the_host_unchanged(eth_dst):
    rig = learned_guests()
    for raw in (offer(STATION, XID1, "10.0.0.2", eth_dst=eth_dst),
                ack(STATION, XID1, "10.0.0.2", eth_dst=eth_dst)):
        d = send(rig, UP, raw)
        assert d.ports() == {LOCAL} and data_of(d.out(LOCAL)) == raw
    assert rig.core.bindings == {}


def test_reply_for_an_unknown_client_is_dropped_and_counted():
    rig = learned_guests()
    d = send(rig, UP, ack("02:99:00:00:00:99", XID1, "10.0.0.150"))
    assert d.outputs == []
    assert rig.core.counters["dhcp.reply-unknown-client"] == 1
    assert rig.core.bindings == {}


@pytest.mark.parametrize("config", [None, CLIENT_ID], ids=["broadcast", "client-id"])
def test_unicast_dhcp_to_the_host_or_another_guest_is_not_translated(config):
    """Only what leaves by the uplink needs the station's identity."""
    rig = learned_guests(config)
    for dst, port in ((STATION, LOCAL), (mac(G2), G2)):
        raw = renew(mac(G1), XID1, ip(G1), eth_dst=dst)
        d = send(rig, G1, raw)
        assert d.ports() == {port} and data_of(d.out(port)) == raw


# =================================================================== leases
def test_ack_binds_the_lease_and_inbound_ipv4_then_reaches_the_guest():
    rig = learned_guests()
    send(rig, UP, offer(mac(G1), XID1, lease_ip(G1)))
    assert rig.core.bindings == {}  # an OFFER binds nothing
    assert reaches(rig, lease_ip(G1)) == {LOCAL}
    send(rig, UP, ack(mac(G1), XID1, lease_ip(G1), lease=600))
    b = rig.core.bindings[lease_ip(G1)]
    assert (b.port_no, b.mac, b.source, b.lease, b.expires) == (G1, mac(G1), "dhcp", 600,
                                                               rig.now + 600)
    g1 = next(g for g in rig.core.status(rig.now)["guests"] if g["port_no"] == G1)
    assert g1["ips"] == [{"ip": lease_ip(G1), "mac": mac(G1), "source": "dhcp",
                          "learned_at": rig.now,
                          "expires": rig.now + 600, "lease": 600, "expires_in": 600}]
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, lease_ip(G1)))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)


def test_binding_ends_at_lease_end():
    rig = learned_guests()
    dora(rig, G1, XID1, lease=600)
    rig.advance(599)
    assert reaches(rig, lease_ip(G1)) == {G1}
    rig.advance(1)
    assert lease_ip(G1) not in rig.core.bindings
    assert rig.core.counters["bindings.expired.lease"] == 1
    assert reaches(rig, lease_ip(G1)) == {LOCAL}


def test_renewal_extends_the_lease():
    rig = learned_guests()
    dora(rig, G1, XID1, lease=600)
    rig.advance(300)
    d = send(rig, G1, renew(mac(G1), XID1 + 1, lease_ip(G1)))
    assert d.ports() == {UP}
    f = parsed(d.out(UP))
    assert (f.eth_src, f.eth_dst, f.ciaddr, f.chaddr) == (STATION, ROUTER, lease_ip(G1), mac(G1))
    d = send(rig, UP, ack(mac(G1), XID1 + 1, lease_ip(G1), lease=600, eth_dst=STATION,
                          ip_dst=lease_ip(G1)))
    assert d.ports() == {G1}
    assert rig.core.bindings[lease_ip(G1)].expires == rig.now + 600
    rig.advance(400)  # past the first lease's end
    assert reaches(rig, lease_ip(G1)) == {G1}
    rig.advance(200)
    assert reaches(rig, lease_ip(G1)) == {LOCAL}


def test_a_new_lease_replaces_the_guests_old_one():
    rig = learned_guests()
    dora(rig, G1, XID1, "10.0.0.150")
    dora(rig, G1, XID1 + 1, "10.0.0.151")
    assert dhcp_bindings(rig) == {"10.0.0.151": G1}
    assert reaches(rig, "10.0.0.150") == {LOCAL}
    assert reaches(rig, "10.0.0.151") == {G1}


def test_nak_removes_the_guests_dhcp_binding_only():
    rig = learned_guests()
    rig.send(G1, arp_request(mac(G1), ip(G1), ROUTER_IP))  # a static address, ARP-learned
    dora(rig, G1, XID1)
    dora(rig, G2, XID2)
    d = send(rig, UP, nak(mac(G1), XID1 + 1))
    assert d.ports() == {G1}
    assert dhcp_bindings(rig) == {lease_ip(G2): G2}
    assert rig.core.bindings[ip(G1)].source == "arp"
    assert reaches(rig, lease_ip(G1)) == {LOCAL}


def test_release_removes_that_binding_and_only_the_senders():
    rig = learned_guests()
    dora(rig, G1, XID1)
    dora(rig, G2, XID2)
    d = send(rig, G1, release(mac(G1), XID1 + 1, lease_ip(G2)))  # not G1's to release
    assert d.ports() == {UP} and dhcp_bindings(rig) == {lease_ip(G1): G1, lease_ip(G2): G2}
    d = send(rig, G1, release(mac(G1), XID1 + 2, lease_ip(G1)))
    assert d.ports() == {UP} and parsed(d.out(UP)).eth_src == STATION
    assert dhcp_bindings(rig) == {lease_ip(G2): G2}
    assert reaches(rig, lease_ip(G1)) == {LOCAL} and reaches(rig, lease_ip(G2)) == {G2}


def test_decline_removes_the_declined_address():
    rig = learned_guests()
    dora(rig, G1, XID1)
    dora(rig, G2, XID2)
    send(rig, G1, decline(mac(G1), XID1, lease_ip(G2)))  # not G1's
    assert dhcp_bindings(rig) == {lease_ip(G1): G1, lease_ip(G2): G2}
    d = send(rig, G1, decline(mac(G1), XID1, lease_ip(G1)))
    assert d.ports() == {UP}
    assert dhcp_bindings(rig) == {lease_ip(G2): G2}


def test_two_guests_interleaved_get_distinct_leases():
    rig = Rig()
    a, b = lease_ip(G1), lease_ip(G2)
    steps = [
        (G1, discover(mac(G1), XID1), {UP}), (G2, discover(mac(G2), XID2), {UP}),
        (UP, offer(mac(G2), XID2, b), {G2}), (UP, offer(mac(G1), XID1, a), {G1}),
        (G2, request(mac(G2), XID2, b), {UP}), (G1, request(mac(G1), XID1, a), {UP}),
        (UP, ack(mac(G1), XID1, a, eth_dst=STATION), {G1}),
        (UP, ack(mac(G2), XID2, b, ip_dst=b), {G2}),
    ]
    for port, raw, want in steps:
        d = send(rig, port, raw)
        assert d.ports() == want, (port, D.parse(raw).msg_name, d)
    assert dhcp_bindings(rig) == {a: G1, b: G2}
    assert reaches(rig, a) == {G1} and reaches(rig, b) == {G2}


def test_only_dhcp_reaches_the_controller_once_leases_are_bound():
    rig = Rig()
    dora(rig, G1, XID1)
    dora(rig, G2, XID2)
    rig.advance(rig.config.idle_timeout + 1)  # silent for a while: a lease is not idle-timed
    before = rig.packet_ins
    for p in (G1, G2):
        a = lease_ip(p)
        for _ in range(20):
            d = rig.send(p, icmp_echo(mac(p), ROUTER, a, ROUTER_IP))
            assert d.ports() == {UP} and d.out(UP)["eth_src"] == STATION
            d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, a))
            assert d.ports() == {p} and d.out(p)["eth_dst"] == mac(p)
        assert UP in rig.send(p, arp_request(mac(p), a, ROUTER_IP)).ports()
        assert rig.send(UP, arp_reply(ROUTER, ROUTER_IP, STATION, a)).ports() == {p}
    assert rig.packet_ins == before


def test_reply_with_option_overload_binary_sname_is_still_delivered():
    """Option overload (52) puts options in sname/file: binary, not ASCII."""
    rig = learned_guests()
    raw = bytearray(ack(mac(G1), XID1, lease_ip(G1), extra=opt(52, b"\x02")))
    raw[BOOTP_AT + 44:BOOTP_AT + 52] = opt(6, bytes([192, 168, 1, 53])) + b"\xff\x00"
    raw = fix_udp_checksum(bytes(raw))
    d = send(rig, UP, raw)
    assert d.ports() == {G1} and udp_checksum_ok(data_of(d.out(G1)))
    assert dhcp_bindings(rig) == {lease_ip(G1): G1}




# =================================================================== replies that bind nothing
def test_replies_for_unknown_guests_never_bind_even_in_bulk():
    rig = learned_guests()
    for i in range(50):
        send(rig, UP, ack(f"02:77:00:00:00:{i:02x}", i, f"10.0.0.{150 + i}"))
    assert rig.core.bindings == {}
    assert rig.core.counters["dhcp.reply-unknown-client"] == 50


def test_ack_without_lease_time_is_delivered_but_binds_nothing():
    rig = learned_guests()
    raw = reply(D.ACK, mac(G1), XID1, yiaddr=lease_ip(G1))
    assert send(rig, UP, raw).ports() == {G1}
    assert rig.core.bindings == {} and rig.core.counters["dhcp.unlearnable.no-lease-time"] == 1


def test_inform_ack_binds_nothing():
    rig = learned_guests()
    send(rig, G1, client_msg(D.INFORM, mac(G1), XID1, ciaddr=ip(G1), ip_src=ip(G1)))
    raw = reply(D.ACK, mac(G1), XID1, eth_dst=STATION, ip_dst=ip(G1))
    assert send(rig, UP, raw).ports() == {G1}
    assert dhcp_bindings(rig) == {}



def test_an_ack_giving_the_hosts_address_is_withheld_from_the_guest():
    from rig import HOST_IP

    rig = learned_guests()
    assert send(rig, UP, ack(mac(G1), XID1, HOST_IP)).ports() == set()
    assert HOST_IP not in rig.core.bindings
    assert rig.core.counters["refused.dhcp-host-ip"] == 1
    assert rig.core.counters["dhcp.ack.withheld"] == 1


def test_an_ack_beyond_the_global_binding_limit_is_withheld_but_a_renewal_is_not():
    rig = learned_guests(CoreConfig(uplink="wlan0", max_bindings=2), guests=(G1, G2, 4))
    assert send(rig, UP, ack(mac(G1), XID1, lease_ip(G1))).ports() == {G1}
    assert send(rig, UP, ack(mac(G2), XID2, lease_ip(G2))).ports() == {G2}
    assert send(rig, UP, ack(mac(4), 0x44, lease_ip(4))).ports() == set()  # a third: no room
    assert lease_ip(4) not in rig.core.bindings
    assert rig.core.counters["refused.dhcp-global-limit"] == 1
    assert send(rig, UP, ack(mac(G1), XID1, lease_ip(G1))).ports() == {G1}  # its own: renewed
    assert len(rig.core.bindings) == 2
