"""Unit tests for wlbridge.proto.dhcp lease events and wlbridge.policy.dhcp_relay (client-id strategy)
(frames built with os-ken, checked with scapy)."""

from __future__ import annotations

import random

import pytest
from dhcp_build import (
    BCAST,
    GUEST,
    GUEST2,
    SERVER_IP,
    STATION,
    ack,
    build,
    diff_positions,
    opt,
    reason,
)
from dhcp_frames import BOOTP_AT, udp_checksum_ok
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from wlbridge.policy.dhcp_relay import ClientIdRelay
from wlbridge.proto import dhcp as D

# ------------------------------------------------------------------ lease events


def test_ack_binds():
    ev = D.lease_event(ack(lease=600, xid=9))
    assert ev == D.LeaseEvent("bind", GUEST, "192.168.1.50", 600, "ack", 9)
    assert ev.expiry(1000.0) == 1600.0


def test_ack_infinite_lease():
    ev = D.lease_event(ack(lease=0xFFFFFFFF))
    assert ev.kind == "bind" and ev.lease_seconds is None and ev.expiry(5.0) is None


def test_ack_to_inform_is_not_a_binding():
    assert D.lease_event(ack(yiaddr="0.0.0.0", lease=None)) is None


@pytest.mark.parametrize("bad", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1",
                                 "240.0.0.1", "0.1.2.3"])
def test_ack_bad_yiaddr(bad):
    assert reason(D.lease_event, ack(yiaddr=bad)) == "bad-yiaddr"


def test_ack_without_lease_time():
    assert reason(D.lease_event, ack(lease=None)) == "no-lease-time"


def test_ack_bad_chaddr():
    assert reason(D.lease_event, ack(chaddr="ff:ff:ff:ff:ff:ff")) == "bad-chaddr"


def test_nak_unbinds_mac():
    ev = D.lease_event(build(D.NAK, xid=3))
    assert ev == D.LeaseEvent("unbind", GUEST, None, None, "nak", 3)


def test_release():
    ev = D.lease_event(build(D.RELEASE, ciaddr="192.168.1.50", ip_src="192.168.1.50",
                             ip_dst=SERVER_IP))
    assert (ev.kind, ev.mac, ev.ip, ev.cause) == ("unbind", GUEST, "192.168.1.50", "release")
    assert reason(D.lease_event, build(D.RELEASE)) == "bad-ciaddr"


def test_decline():
    ev = D.lease_event(build(D.DECLINE, extra=opt(50, bytes([192, 168, 1, 77]))))
    assert (ev.kind, ev.ip, ev.cause) == ("unbind", "192.168.1.77", "decline")
    assert reason(D.lease_event, build(D.DECLINE)) == "no-requested-ip"
    assert reason(D.lease_event, build(D.DECLINE, extra=opt(50, b"\xff\xff\xff\xff"))) == \
        "bad-requested-ip"


@pytest.mark.parametrize("msg", [D.DISCOVER, D.OFFER, D.REQUEST, D.INFORM])
def test_other_messages_no_event(msg):
    assert D.lease_event(build(msg)) is None


# ------------------------------------------------------------------ client-id strategy


def _check_outbound(raw: bytes, out: bytes) -> D.DhcpFrame:
    f, o = D.parse(raw), D.parse(out)
    assert o.chaddr == STATION and o.eth_src == STATION and o.eth_dst == f.eth_dst
    assert (o.xid, o.flags, o.msg_type, o.requested_ip, o.ip_src, o.ip_dst) == \
        (f.xid, f.flags, f.msg_type, f.requested_ip, f.ip_src, f.ip_dst)
    s = Ether(out)
    assert s[IP].len == len(s[IP]) and s[UDP].len == len(s[UDP])
    ipc = s[IP].chksum
    del s[IP].chksum
    assert Ether(bytes(s))[IP].chksum == ipc
    if f.udp_csum:
        assert udp_checksum_ok(out)
    return o


def test_outbound_adds_client_id_and_rewrites_chaddr():
    raw = build(D.DISCOVER, extra=opt(55, b"\x01\x03\x06"), flags=0)
    r = ClientIdRelay()
    out = r.outbound(raw, GUEST, 5, STATION, 0.0)
    o = _check_outbound(raw, out)
    assert o.client_id == b"\x01" + bytes.fromhex(GUEST.replace(":", ""))
    assert not o.broadcast  # deliberately not set in this strategy
    opts = out[o.bootp_offset + 240:o.options_end + 1]
    assert opts == opt(53, b"\x01") + opt(55, b"\x01\x03\x06") + opt(61, o.client_id) + b"\xff"
    assert out[o.bootp_offset:o.bootp_offset + 28] == raw[BOOTP_AT:BOOTP_AT + 28]
    assert r.lookup(D.parse(raw).xid, 1.0).guest_mac == GUEST


def test_outbound_keeps_existing_client_id_and_flag():
    cid = b"\xff\x00\x01\x02\x03\x04\x05\x06"
    raw = build(D.REQUEST, flags=0x8000, extra=opt(61, cid) + opt(50, b"\x0a\0\0\x09"))
    out = ClientIdRelay().outbound(raw, GUEST, 5, STATION, 0.0)
    o = _check_outbound(raw, out)
    assert o.client_id == cid and o.broadcast and len(out) == len(raw)


def test_outbound_absorbs_trailing_pad_and_handles_no_end():
    raw = build(trailer=b"\0" * 60)  # clients pad BOOTP to 300 bytes
    out = ClientIdRelay().outbound(raw, GUEST, 1, STATION, 0.0)
    _check_outbound(raw, out)
    assert len(out) == len(raw)
    raw = build(options=opt(53, b"\x01"), end=False)
    o = _check_outbound(raw, ClientIdRelay().outbound(raw, GUEST, 1, STATION, 0.0))
    assert o.has_end and o.client_id is not None


def test_outbound_zero_checksum_stays_zero_and_vlan_kept():
    raw = build(csum=0, vlan_id=9)
    out = ClientIdRelay().outbound(raw, GUEST, 1, STATION, 0.0)
    o = _check_outbound(raw, out)
    assert o.udp_csum == 0 and o.vlan_id == 9
    assert udp_checksum_ok(ClientIdRelay().outbound(build(vlan_id=9), GUEST, 1, STATION, 0.0))


def test_outbound_rejects():
    r = ClientIdRelay()
    assert reason(r.outbound, ack(), GUEST, 1, STATION, 0.0) == "wrong-direction"
    assert reason(r.outbound, build(), GUEST2, 1, STATION, 0.0) == "chaddr-mismatch"
    big = build(trailer=b"\x01" * (1514 - len(build())))  # non-pad tail: cannot absorb
    assert reason(r.outbound, big, GUEST, 1, STATION, 0.0) == "oversized"
    assert len(r) == 0


def test_xid_collision_refused_until_expiry():
    r = ClientIdRelay(ttl=60)
    r.outbound(build(xid=7), GUEST, 1, STATION, 0.0)
    assert reason(r.outbound, build(xid=7, chaddr=GUEST2), GUEST2, 2, STATION, 10.0) == "xid-collision"
    r.outbound(build(xid=7), GUEST, 1, STATION, 30.0)  # the owner may retransmit (refresh)
    assert reason(r.outbound, build(xid=7, chaddr=GUEST2), GUEST2, 2, STATION, 80.0) == "xid-collision"
    r.outbound(build(xid=7, chaddr=GUEST2), GUEST2, 2, STATION, 90.0)  # 30 + 60 -> expired
    assert r.lookup(7, 90.0).guest_mac == GUEST2


def _server_reply(msg: int, xid: int, *, chaddr: str = STATION, eth_dst: str = BCAST, **kw) -> bytes:
    extra = opt(54, bytes([192, 168, 1, 1])) + opt(51, b"\0\0\x0e\x10") \
        + opt(61, b"\x01" + bytes.fromhex(GUEST.replace(":", "")))
    return build(msg, xid=xid, chaddr=chaddr, eth_dst=eth_dst, yiaddr="192.168.1.61", extra=extra, **kw)


@pytest.mark.parametrize("eth_dst", [BCAST, STATION])
def test_inbound_restores_guest(eth_dst):
    r = ClientIdRelay()
    r.outbound(build(xid=77), GUEST, 4, STATION, 0.0)
    reply = _server_reply(D.OFFER, 77, eth_dst=eth_dst)
    got = r.inbound(reply, 1.0)
    mac, port, out = got
    assert (mac, port) == (GUEST, 4)
    o = D.parse(out)
    assert o.chaddr == GUEST and o.eth_dst == GUEST and udp_checksum_ok(out)
    assert diff_positions(reply, out) <= set(range(6)) | set(range(BOOTP_AT + 28, BOOTP_AT + 34)) | {40, 41}
    ev = D.lease_event(r.inbound(_server_reply(D.ACK, 77), 2.0).frame)
    assert (ev.kind, ev.mac, ev.ip) == ("bind", GUEST, "192.168.1.61")


def test_inbound_zero_checksum_and_vlan():
    r = ClientIdRelay()
    r.outbound(build(xid=78, vlan_id=3), GUEST, 4, STATION, 0.0)
    out = r.inbound(_server_reply(D.ACK, 78, csum=0, vlan_id=3), 1.0).frame
    assert D.parse(out).udp_csum == 0 and D.parse(out).vlan_id == 3 and D.parse(out).chaddr == GUEST


def test_inbound_unknown_expired_foreign():
    r = ClientIdRelay(ttl=60)
    r.outbound(build(xid=5), GUEST, 4, STATION, 0.0)
    assert r.inbound(_server_reply(D.OFFER, 6), 1.0) is None  # unknown xid
    assert r.inbound(_server_reply(D.OFFER, 5, chaddr=GUEST2), 1.0) is None  # not relayed by us
    assert r.inbound(_server_reply(D.OFFER, 5), 60.0) is None  # expired
    assert reason(r.inbound, build(xid=5), 1.0) == "wrong-direction"


def _with_xid_chaddr(template: bytes, xid: int, mac: str) -> bytes:
    """Template (UDP checksum 0) with xid and chaddr replaced: cheap variants."""
    raw = bytearray(template)
    raw[BOOTP_AT + 4:BOOTP_AT + 8] = xid.to_bytes(4, "big")
    raw[BOOTP_AT + 28:BOOTP_AT + 34] = bytes.fromhex(mac.replace(":", ""))
    return bytes(raw)


def test_many_concurrent_transactions():
    request = build(D.REQUEST, csum=0, extra=opt(50, b"\xc0\xa8\x01\x3d"))
    offer = _server_reply(D.OFFER, 0, csum=0)
    r = ClientIdRelay(max_entries=4096, max_per_port=4096)
    rng = random.Random(7)
    guests = {}
    for i in range(4096):
        xid = rng.getrandbits(32)
        while xid in guests:
            xid = rng.getrandbits(32)
        mac = "52:54:" + ":".join(f"{b:02x}" for b in (i * 7919 + 1).to_bytes(4, "big"))
        guests[xid] = (mac, i % 50 + 1)
        r.outbound(_with_xid_chaddr(request, xid, mac), mac, i % 50 + 1, STATION, i * 0.001)
    assert len(r) == 4096
    items = list(guests.items())
    rng.shuffle(items)
    for xid, (mac, port) in items[:500]:
        got = r.inbound(_with_xid_chaddr(offer, xid, STATION), 5.0)
        assert (got.guest_mac, got.port) == (mac, port) and D.parse(got.frame).chaddr == mac


def test_table_bounds_and_eviction():
    r = ClientIdRelay(max_entries=8, max_per_port=3, ttl=60)
    for x in range(3):
        r.record(x, GUEST, 1, STATION, float(x))
    r.record(3, GUEST, 1, STATION, 3.0)  # port 1 over quota: its oldest (0) goes
    assert r.lookup(0, 3.0) is None and r.lookup(3, 3.0) and r.evicted == 1
    for x in range(10, 15):
        r.record(x, GUEST2, 2 + x, STATION, 4.0)
    assert len(r) == 8
    r.record(99, GUEST2, 50, STATION, 5.0)  # full: globally oldest (1) goes
    assert len(r) == 8 and r.lookup(1, 5.0) is None and r.evicted == 2


def test_table_expiry_and_forget_port():
    r = ClientIdRelay(ttl=60)
    r.record(1, GUEST, 1, STATION, 0.0)
    r.record(2, GUEST2, 2, STATION, 30.0)
    assert r.lookup(1, 59.9) and r.lookup(1, 60.0) is None
    assert r.expire(60.0) == 1 and len(r) == 1
    r.record(2, GUEST2, 2, STATION, 80.0)  # refresh
    assert r.lookup(2, 139.0) and r.forget_port(2) == 1 and len(r) == 0
    r.record(3, GUEST, 1, STATION, 0.0)
    r.record(4, GUEST, 1, STATION, 100.0)  # stale head purged on insert
    assert len(r) == 1


def test_relay_rejects_bad_config():
    with pytest.raises(ValueError):
        ClientIdRelay(max_entries=0)


def test_all_reasons_documented():
    assert all(isinstance(x, str) and x == x.lower() and " " not in x for x in D.REASONS)
