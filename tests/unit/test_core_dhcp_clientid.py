"""DHCP through the whole core and the fake switch (issue #4): the client-id strategy."""

from __future__ import annotations

import random

from core_dhcp_rig import (
    CLIENT_ID,
    G1,
    G2,
    XID1,
    cid_reply,
    dhcp_bindings,
    reaches,
    send,
    tolerant_switch,  # noqa: F401  (autouse fixture)
)
from dhcp_frames import (
    ack,
    discover,
    lease_ip,
    offer,
    opt,
    parsed,
    request,
    udp_checksum_ok,
)
from ofsim import data_of
from rig import LOCAL, STATION, UP, Rig, mac
from wlbridge.proto import dhcp as D


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
