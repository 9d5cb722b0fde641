"""DHCP through the whole core and the fake switch (issue #4): packet fate, leases, bad frames.

Guests ``G1``/``G2`` learn their MAC from their first DHCP frame, as a fresh VM does.  The
LAN's DHCP server is the router; leases are ``lease_ip(port)``.
"""

from __future__ import annotations

import random

import pytest
import rig as rig_module
from dhcp_frames import (
    BOOTP_AT,
    UDP_AT,
    ack,
    client_msg,
    decline,
    discover,
    fix_udp_checksum,
    headers_of,
    lease_ip,
    nak,
    offer,
    opt,
    parsed,
    release,
    renew,
    reply,
    request,
    set_bytes,
    udp_checksum,
    udp_checksum_ok,
    with_lengths,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ofsim import arp_reply, arp_request, data_of, icmp_echo
from rig import BCAST, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Delivery, Rig, ip, mac
from wlbridge import dhcp as D
from wlbridge.core import CoreConfig

G1, G2 = 2, 3
XID1, XID2 = 0x11110001, 0x22220002
FLAGS = (BOOTP_AT + 10, BOOTP_AT + 11)
CSUM = (UDP_AT + 6, UDP_AT + 7)
ETH_SRC = tuple(range(6, 12))
CLIENT_ID = CoreConfig(uplink="wlan0", dhcp_mode="client-id")


@pytest.fixture(autouse=True)
def tolerant_switch(monkeypatch):
    """The rig parses packet-outs with os-ken, which rejects e.g. a DHCP reply whose sname
    is not ASCII; the switch itself would not care."""
    monkeypatch.setattr(rig_module, "from_bytes", headers_of)


def send(rig: Rig, port: int, raw: bytes) -> Delivery:
    """``raw`` enters the switch on ``port``; the controller must never fail on it."""
    d = rig.send(port, headers_of(raw))
    assert rig.core.counters["errors.internal"] == 0
    return d


def dora(rig: Rig, port: int, xid: int, addr: str | None = None, lease: int = 3600) -> None:
    """A whole broadcast-strategy DISCOVER/OFFER/REQUEST/ACK for the guest on ``port``."""
    addr = addr or lease_ip(port)
    assert send(rig, port, discover(mac(port), xid)).ports() == {UP}
    assert send(rig, UP, offer(mac(port), xid, addr, lease)).ports() == {port}
    assert send(rig, port, request(mac(port), xid, addr)).ports() == {UP}
    assert send(rig, UP, ack(mac(port), xid, addr, lease)).ports() == {port}


def reaches(rig: Rig, addr: str) -> set[int]:
    """Where a ping from the LAN to ``addr`` ends up."""
    return rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr)).ports()


def dhcp_bindings(rig: Rig) -> dict[str, int]:
    return {a: b.port_no for a, b in rig.core.bindings.items() if b.source == "dhcp"}


def changed(a: bytes, b: bytes) -> set[int]:
    assert len(a) == len(b)
    return {i for i in range(len(a)) if a[i] != b[i]}


def learned_guests(config: CoreConfig | None = None, guests=(G1, G2)) -> Rig:
    """A rig whose guests have each sent a DISCOVER (so their MACs are known)."""
    r = Rig(guests=guests, config=config)
    for p in guests:
        send(r, p, discover(mac(p), 0x5000 + p))
    return r


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
    assert g1["ips"] == [{"ip": lease_ip(G1), "source": "dhcp", "learned_at": rig.now,
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


# =================================================================== client-id strategy
def cid_reply(kind, xid: int, addr: str, **kw) -> bytes:
    """A server's reply in the client-id strategy: to chaddr = the station MAC."""
    return kind(STATION, xid, addr, eth_dst=STATION, ip_dst=addr, **kw)


def test_client_id_outbound_carries_station_chaddr_and_guest_client_id():
    rig = Rig(config=CLIENT_ID)
    d = send(rig, G1, discover(mac(G1), XID1))
    assert d.ports() == {UP}
    out = data_of(d.out(UP))
    f = D.parse(out)
    assert (f.eth_src, f.chaddr, f.xid) == (STATION, STATION, XID1)
    assert f.client_id == b"\x01" + bytes.fromhex(mac(G1).replace(":", ""))
    assert udp_checksum_ok(out)
    own = b"\xff\x00\x00\x00\x01guest-duid"  # the client's own identifier is kept
    d = send(rig, G1, discover(mac(G1), XID1 + 1, extra=opt(61, own)))
    f = parsed(d.out(UP))
    assert f.chaddr == STATION and f.client_id == own and udp_checksum_ok(data_of(d.out(UP)))


def test_client_id_zero_checksum_stays_zero():
    rig = Rig(config=CLIENT_ID)
    f = parsed(send(rig, G1, discover(mac(G1), XID1, csum=0)).out(UP))
    assert f.chaddr == STATION and f.udp_csum == 0


def test_client_id_replies_mapped_back_by_xid_with_chaddr_restored():
    rig = Rig(config=CLIENT_ID)
    a = lease_ip(G1)
    send(rig, G1, discover(mac(G1), XID1))
    for kind in (offer, ack):
        if kind is ack:
            assert parsed(send(rig, G1, request(mac(G1), XID1, a)).out(UP)).chaddr == STATION
        d = send(rig, UP, cid_reply(kind, XID1, a))
        assert d.ports() == {G1}, d
        out = data_of(d.out(G1))
        f = D.parse(out)
        assert (f.eth_dst, f.chaddr, f.yiaddr, f.xid) == (mac(G1), mac(G1), a, XID1)
        assert udp_checksum_ok(out)
    assert dhcp_bindings(rig) == {a: G1}
    assert reaches(rig, a) == {G1}


def test_client_id_many_interleaved_transactions():
    guests = tuple(range(2, 10))
    rig = Rig(guests=guests, config=CLIENT_ID)
    rnd = random.Random(4)
    xid = {p: rnd.getrandbits(32) for p in guests}
    order = list(guests)
    for phase in ("discover", "offer", "request", "ack"):
        rnd.shuffle(order)
        for p in order:
            a = lease_ip(p)
            if phase in ("discover", "request"):
                raw = discover(mac(p), xid[p]) if phase == "discover" else request(
                    mac(p), xid[p], a)
                d = send(rig, p, raw)
                assert d.ports() == {UP} and parsed(d.out(UP)).chaddr == STATION
            else:
                d = send(rig, UP, cid_reply(offer if phase == "offer" else ack, xid[p], a))
                assert d.ports() == {p}, (phase, p, d)
                f = parsed(d.out(p))
                assert (f.chaddr, f.eth_dst, f.yiaddr) == (mac(p), mac(p), a)
    assert dhcp_bindings(rig) == {lease_ip(p): p for p in guests}


def test_client_id_expired_or_unknown_xid_reaches_no_guest():
    rig = Rig(config=CLIENT_ID)
    send(rig, G1, discover(mac(G1), XID1))
    rig.advance(120)  # the transaction is forgotten (the relay keeps xids for 60 s)
    for xid in (XID1, 0x0BADF00D):
        raw = cid_reply(ack, xid, lease_ip(G1))
        d = send(rig, UP, raw)
        # chaddr is the station's: for all the core knows, a reply to the host's own DHCP
        # client (which ignores an xid it did not send), so it goes to LOCAL untouched
        assert d.ports() == {LOCAL} and data_of(d.out(LOCAL)) == raw
    assert rig.core.bindings == {}


def test_client_id_xid_in_use_by_another_guest_is_refused():
    rig = Rig(config=CLIENT_ID)
    send(rig, G1, discover(mac(G1), XID1))
    assert send(rig, G2, discover(mac(G2), XID1)).outputs == []
    assert rig.core.counters["dhcp.malformed.xid-collision"] == 1
    assert send(rig, UP, cid_reply(offer, XID1, lease_ip(G1))).ports() == {G1}


# =================================================================== malformed
def _oversized_ack(size: int) -> bytes:
    base = ack(mac(G1), XID1, lease_ip(G1))
    pads = b"\0" * (size - len(base))
    f = D.parse(base)
    end = f.options_end
    return with_lengths(fix_udp_checksum(base[:end + 1] + pads + base[end + 1:]))


def _big_options_ack() -> bytes:
    return ack(mac(G1), XID1, lease_ip(G1), extra=opt(43, b"v" * 255) * 7)


MALFORMED = [
    # (name, from port, frame, counter)
    ("truncated-ip", UP, ack(mac(G1), XID1, lease_ip(G1))[:200], "malformed.truncated-ipv4"),
    ("truncated-ip-guest", G1, discover(mac(G1), XID1)[:200], "malformed.truncated-ipv4"),
    ("truncated-bootp", UP, with_lengths(ack(mac(G1), XID1, lease_ip(G1))[:BOOTP_AT + 200]),
     "dhcp.malformed.truncated"),
    ("truncated-bootp-guest", G1, with_lengths(discover(mac(G1), XID1)[:BOOTP_AT + 100]),
     "dhcp.malformed.truncated"),
    ("option-overruns", UP, reply(D.ACK, mac(G1), XID1, yiaddr=lease_ip(G1), options=opt(
        53, b"\x05") + b"\x33\x09\x00\x00"), "dhcp.malformed.bad-option-length"),
    ("option-overruns-guest", G1, client_msg(D.DISCOVER, mac(G1), XID1, options=opt(
        53, b"\x01") + b"\x0c"), "dhcp.malformed.bad-option-length"),
    ("lease-time-3-bytes", UP, reply(D.ACK, mac(G1), XID1, yiaddr=lease_ip(G1), options=opt(
        53, b"\x05") + opt(51, b"\0\0\1") + b"\xff"), "dhcp.malformed.bad-option-value"),
    ("wrong-magic", UP, set_bytes(ack(mac(G1), XID1, lease_ip(G1)), BOOTP_AT + 236,
                                  b"\x63\x82\x53\x64"), "dhcp.malformed.bad-magic"),
    ("wrong-magic-guest", G1, set_bytes(discover(mac(G1), XID1), BOOTP_AT + 236, b"DHCP"),
     "dhcp.malformed.bad-magic"),
    ("no-message-type", UP, reply(D.ACK, mac(G1), XID1, yiaddr=lease_ip(G1), options=opt(
        51, b"\0\0\1\0") + b"\xff"), "dhcp.malformed.no-message-type"),
    ("bootrequest-op-on-ack", UP, set_bytes(ack(mac(G1), XID1, lease_ip(G1)), BOOTP_AT, b"\x01"),
     "dhcp.malformed.bad-op"),
    ("oversized", UP, _big_options_ack(), "malformed.oversized"),
    ("oversized-1516", UP, _oversized_ack(1516), "dhcp.malformed.oversized"),
    ("oversized-guest", G1, discover(mac(G1), XID1, extra=opt(12, b"h" * 255) * 7),
     "malformed.oversized"),
    ("group-chaddr", UP, ack("03:00:00:00:00:01", XID1, lease_ip(G1)), "dhcp.malformed.bad-chaddr"),
    ("unknown-client", UP, ack("02:99:00:00:00:99", XID1, lease_ip(G1)),
     "dhcp.reply-unknown-client"),
    ("foreign-chaddr-from-guest", G1, client_msg(D.DISCOVER, mac(G1), XID1, chaddr=mac(G2)),
     "refused.dhcp-chaddr"),
]


@pytest.mark.parametrize("port,raw,counter", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_is_dropped_and_counted(port, raw, counter):
    rig = learned_guests()
    before = rig.core.counters[counter]
    d = send(rig, port, raw)
    assert d.outputs == [], d
    assert d.packet_ins >= 1  # the controller saw it and said no
    assert rig.core.counters[counter] == before + 1, dict(rig.core.counters)
    assert rig.core.bindings == {}


def test_malformed_frames_really_are_what_their_names_say():
    """Guard against a builder mistake making a 'malformed' case pass for another reason."""
    frames = {m[0]: m[2] for m in MALFORMED}
    assert len(frames["oversized"]) > 1518 and len(frames["oversized-1516"]) == 1516
    assert D.parse(_oversized_ack(1514)).msg_type == D.ACK
    with pytest.raises(D.DhcpError, match="bad-magic"):
        D.parse(frames["wrong-magic"])


# =================================================================== property: mutations
SEEDS_GUEST = [
    discover(mac(G1), XID1),
    request(mac(G1), XID1, lease_ip(G1), extra=opt(61, b"\x01\x02\x00\x00\x00\x00\x02")),
    renew(mac(G1), XID1, lease_ip(G1)),
    release(mac(G1), XID1, lease_ip(G1)),
    decline(mac(G1), XID1, lease_ip(G1)),
    client_msg(D.INFORM, mac(G1), XID1, ciaddr=ip(G1), ip_src=ip(G1)),
]
SEEDS_UPLINK = [
    offer(mac(G1), XID1, lease_ip(G1)),
    ack(mac(G1), XID1, lease_ip(G1)),
    ack(mac(G2), XID2, lease_ip(G2), eth_dst=STATION, ip_dst=lease_ip(G2)),
    cid_reply(ack, XID1, lease_ip(G1)),
    ack(STATION, XID1, "10.0.0.2"),
    nak(mac(G1), XID1),
]
OPTIONS_AT = BOOTP_AT + 240  # after the magic cookie


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few random edits.  Half the time only the DHCP message is edited (bytes
    of the fixed header changed in place, the options area also cut, grown or shrunk) and the
    IPv4/UDP lengths fixed up, so that the frame gets past the outer checks."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    inner = draw(st.booleans())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "flip", "set", "option", "truncate", "insert",
                                     "delete"]))
        low = (BOOTP_AT if kind in ("flip", "set") else OPTIONS_AT) if inner else 0
        if len(raw) <= low:
            continue
        pos = draw(st.integers(low, len(raw) - 1))
        if kind == "field":  # a byte of xid, ciaddr, yiaddr or chaddr: the frame stays valid
            pos = BOOTP_AT + draw(st.sampled_from([*range(4, 8), *range(12, 20), *range(28, 34)]))
            if pos < len(raw):
                raw[pos] = draw(st.integers(0, 255))
        elif kind == "flip":
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            raw[pos] = draw(st.integers(0, 255))
        elif kind == "option":
            raw[pos] = draw(st.sampled_from([0, 1, 4, 5, 6, 7, 50, 51, 52, 53, 54, 61, 255]))
        elif kind == "truncate":
            del raw[pos:]
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        else:
            del raw[pos:pos + draw(st.integers(1, 12))]
    if inner and len(raw) >= BOOTP_AT:
        raw = bytearray(with_lengths(bytes(raw)))
    return bytes(raw)


def valid_ack_yiaddr(raw: bytes) -> set[str]:
    try:
        f = D.parse(raw)
    except D.DhcpError:
        return set()
    return {f.yiaddr} if f.msg_type == D.ACK and f.is_server_reply else set()


def source_address(raw: bytes) -> str | None:
    h = headers_of(raw)
    return h.get("arp_spa") or h.get("ipv4_src")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["broadcast", "client-id"]), from_uplink=st.booleans(),
       data=st.data())
def test_mutated_frames_never_raise_nor_bind_what_no_valid_ack_gave(mode, from_uplink, data):
    rig = learned_guests(CoreConfig(uplink="wlan0", dhcp_mode=mode))
    send(rig, G1, discover(mac(G1), XID1))  # a live transaction for client-id replies
    port = UP if from_uplink else G1
    raw = data.draw(mutated(SEEDS_UPLINK if from_uplink else SEEDS_GUEST), label="frame")
    send(rig, port, raw)  # raises if the switch or the controller does
    allowed = valid_ack_yiaddr(raw) if from_uplink else set()
    for a, b in rig.core.bindings.items():
        if b.source == "dhcp":
            assert a in allowed and b.port_no in (G1, G2)
        else:  # ordinary learning from a (mutated, no longer DHCP) guest frame
            assert not from_uplink and b.port_no == G1 and a == source_address(raw)


@pytest.mark.parametrize("mode", ["broadcast", "client-id"])
def test_fuzz_seeds_do_what_they_should_unmutated(mode):
    """The property test starts from frames that work."""
    for raw in SEEDS_GUEST:
        rig = learned_guests(CoreConfig(uplink="wlan0", dhcp_mode=mode))
        assert send(rig, G1, raw).ports() == {UP}
    bound = []
    for raw in SEEDS_UPLINK:
        rig = learned_guests(CoreConfig(uplink="wlan0", dhcp_mode=mode))
        send(rig, G1, discover(mac(G1), XID1))
        delivered = send(rig, UP, raw).outputs
        # client-id: an ACK mapped to the guest by xid but giving the host's own address
        # is withheld (the guest must not configure it)
        assert delivered or (mode == "client-id" and rig.core.counters["dhcp.ack.withheld"])
        bound += list(dhcp_bindings(rig))
    # client-id: replies to the station by xid, and still any reply naming a guest's chaddr
    assert len(bound) == (2 if mode == "broadcast" else 3)


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
