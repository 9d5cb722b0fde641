"""Unit tests for wlbridge.dhcp and wlbridge.dhcp_relay (frames built with os-ken, checked with scapy)."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from wlbridge import dhcp as D
from wlbridge.compat import dhcp, ethernet, ipv4, packet, udp, vlan
from wlbridge.dhcp import DhcpError
from wlbridge.dhcp_relay import ClientIdRelay

GUEST = "52:54:00:12:34:56"
GUEST2 = "52:54:00:ab:cd:ef"
STATION = "02:11:22:33:44:55"
BCAST = "ff:ff:ff:ff:ff:ff"
SERVER_IP = "192.168.1.1"


def opt(tag: int, value: bytes) -> bytes:
    return bytes([tag, len(value)]) + value


def build(
    msg: int = D.DISCOVER,
    *,
    op: int | None = None,
    chaddr: str = GUEST,
    xid: int = 0x11223344,
    flags: int = 0,
    ciaddr: str = "0.0.0.0",
    yiaddr: str = "0.0.0.0",
    extra: bytes = b"",
    options: bytes | None = None,
    end: bool = True,
    trailer: bytes = b"",
    eth_src: str | None = None,
    eth_dst: str = BCAST,
    ip_src: str | None = None,
    ip_dst: str | None = None,
    ports: tuple[int, int] | None = None,
    vlan_id: int | None = None,
    csum: int | None = None,
    sname: str = "",
) -> bytes:
    """A DHCP frame serialised by os-ken.  ``options`` (raw, after the cookie) replaces
    the default ``53`` + ``extra`` (+ END); ``csum`` forces the UDP checksum field."""
    client = op == 1 if op is not None else msg in (1, 3, 4, 7, 8)
    op = op if op is not None else (1 if client else 2)
    if options is None:
        options = opt(53, bytes([msg])) + extra + (b"\xff" if end else b"")
    options += trailer
    d = dhcp.dhcp(op=op, chaddr=chaddr, xid=xid, flags=flags, ciaddr=ciaddr, yiaddr=yiaddr,
                  sname=sname, options=dhcp.options([options]) if options else None)
    p = packet.Packet()
    if eth_src is None:
        eth_src = chaddr if client else "00:00:5e:00:53:01"
    if vlan_id is None:
        p.add_protocol(ethernet.ethernet(eth_dst, eth_src, 0x0800))
    else:
        p.add_protocol(ethernet.ethernet(eth_dst, eth_src, 0x8100))
        p.add_protocol(vlan.vlan(vid=vlan_id, ethertype=0x0800))
    p.add_protocol(ipv4.ipv4(src=ip_src or ("0.0.0.0" if client else SERVER_IP),
                             dst=ip_dst or "255.255.255.255", proto=17))
    p.add_protocol(udp.udp(*(ports or ((68, 67) if client else (67, 68)))))
    p.add_protocol(d)
    p.serialize()
    raw = bytearray(p.data)
    l4 = 14 + (4 if vlan_id is not None else 0) + 20
    if csum is None and raw[l4 + 6:l4 + 8] == b"\0\0":
        csum = 0xFFFF  # os-ken sends a computed 0 as 0 ("no checksum"); RFC 768 says 0xffff
    if csum is not None:
        struct.pack_into("!H", raw, l4 + 6, csum)
    return bytes(raw)


def ack(yiaddr: str = "192.168.1.50", lease: int | None = 3600, **kw) -> bytes:
    extra = opt(54, bytes([192, 168, 1, 1])) + (b"" if lease is None else opt(51, struct.pack("!I", lease)))
    return build(D.ACK, yiaddr=yiaddr, extra=extra + kw.pop("extra", b""), **kw)


def scapy_csum_ok(frame: bytes) -> bool:
    """scapy recomputes the UDP checksum independently; compare with the frame's."""
    p = Ether(frame)
    have = p[UDP].chksum
    del p[UDP].chksum
    return Ether(bytes(p))[UDP].chksum == have


def residual(frame: bytes) -> int:
    """Ones-complement sum over pseudo-header + UDP datagram incl. the checksum (0xffff: valid)."""
    f = D.parse(frame)
    seg = frame[f.l4_offset:f.bootp_end]
    ip = f.l4_offset - 20
    pseudo = frame[ip + 12:ip + 20] + struct.pack("!BBH", 0, 17, len(seg))
    data = pseudo + seg + (b"\0" if len(seg) % 2 else b"")
    s = sum(w for (w,) in struct.iter_unpack("!H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s or 0xFFFF


def diff_positions(a: bytes, b: bytes) -> set[int]:
    assert len(a) == len(b)
    return {i for i in range(len(a)) if a[i] != b[i]}


def reason(fn, *args) -> str:
    with pytest.raises(DhcpError) as ei:
        fn(*args)
    assert ei.value.reason in D.REASONS
    return ei.value.reason


# ------------------------------------------------------------------ parse


def test_parse_discover_fields():
    f = D.parse(build(D.DISCOVER, xid=0xDEADBEEF, flags=0))
    assert (f.eth_src, f.eth_dst, f.ip_src, f.ip_dst) == (GUEST, BCAST, "0.0.0.0", "255.255.255.255")
    assert (f.sport, f.dport, f.op, f.xid, f.flags) == (68, 67, 1, 0xDEADBEEF, 0)
    assert (f.chaddr, f.msg_type, f.msg_name) == (GUEST, 1, "discover")
    assert f.requested_ip is f.server_id is f.lease_time is f.client_id is None
    assert f.is_client_message and not f.is_server_reply and not f.broadcast
    assert f.has_end and f.vlan_id is None


def test_parse_request_options():
    cid = b"\xffABCDEFGH"
    f = D.parse(build(D.REQUEST, extra=opt(50, bytes([10, 0, 0, 7])) + opt(54, bytes([10, 0, 0, 1]))
                      + opt(61, cid)))
    assert (f.requested_ip, f.server_id, f.client_id) == ("10.0.0.7", "10.0.0.1", cid)


def test_parse_ack_lease_time():
    f = D.parse(ack(lease=86400))
    assert f.is_server_reply and f.lease_time == 86400 and f.yiaddr == "192.168.1.50"


def test_parse_scapy_built_frame():
    """A second, independent encoder."""
    p = (Ether(src=GUEST, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
         / UDP(sport=68, dport=67)
         / BOOTP(chaddr=bytes.fromhex(GUEST.replace(":", "")), xid=42, flags=0x8000)
         / DHCP(options=[("message-type", "request"), ("requested_addr", "10.1.2.3"),
                         ("client_id", b"\x01abcdef"), "end", "pad", "pad"]))
    f = D.parse(bytes(p))
    assert (f.xid, f.broadcast, f.msg_type, f.requested_ip) == (42, True, 3, "10.1.2.3")
    assert f.client_id == b"\x01abcdef" and f.chaddr == GUEST


def test_parse_lenient_options():
    pad_middle = opt(53, b"\x01") + b"\0\0\0" + opt(12, b"host") + b"\xff"
    assert D.parse(build(options=pad_middle)).msg_type == 1
    no_end = opt(53, b"\x03") + opt(12, b"h")  # options fill the message exactly
    f = D.parse(build(options=no_end))
    assert f.msg_type == 3 and not f.has_end
    junk_after_end = opt(53, b"\x01") + b"\xff" + b"\x07\xee\x01"
    assert D.parse(build(options=junk_after_end)).msg_type == 1
    repeated = opt(53, b"\x01") + opt(61, b"\x01ab") + opt(61, b"cdef") + b"\xff"  # RFC 3396
    assert D.parse(build(options=repeated)).client_id == b"\x01abcdef"


def test_parse_non_ascii_sname_and_file():
    raw = bytearray(build())
    raw[42 + 44:42 + 236] = bytes(range(64, 256))  # sname/file: os-ken alone would fail
    assert D.parse(bytes(raw)).msg_type == 1


def test_parse_vlan_tag():
    f = D.parse(build(vlan_id=42))
    assert f.vlan_id == 42 and f.l4_offset == 38 and f.chaddr == GUEST


def test_parse_ethernet_padding_ignored():
    raw = build() + b"\0" * 20
    assert D.parse(raw).bootp_end == len(raw) - 20


@pytest.mark.parametrize("frame", [build(), build(D.REQUEST, vlan_id=7), ack(), build(D.NAK)])
def test_truncated_at_every_length(frame):
    for n in range(len(frame)):
        assert reason(D.parse, frame[:n]) in {"truncated", "bad-magic", "bad-udp-length"}


def test_truncated_reasons_are_truncated_where_ip_says_more():
    frame = build()
    assert {reason(D.parse, frame[:n]) for n in range(len(frame))} == {"truncated"}


def _set(frame: bytes, pos: int, value: bytes) -> bytes:
    return frame[:pos] + value + frame[pos + len(value):]


BOOTP_AT = 42


@pytest.mark.parametrize("frame,want", [
    (_set(build(), 12, b"\x86\xdd"), "not-ipv4"),
    (_set(build(), 12, b"\x88\xa8"), "vlan-stacked"),
    (_set(build(vlan_id=3), 16, b"\x81\x00"), "vlan-stacked"),
    (_set(build(), 14, b"\x65"), "bad-ip-version"),
    (_set(build(), 14, b"\x44"), "bad-ihl"),
    (_set(build(), 16, b"\x00\x10"), "bad-ip-length"),
    (_set(build(), 16, b"\x05\x00"), "truncated"),
    (_set(build(), 20, b"\x20\x00"), "fragment"),
    (_set(build(), 20, b"\x00\x08"), "fragment"),
    (_set(build(), 23, b"\x06"), "not-udp"),
    (_set(build(), 38, b"\x00\x07"), "bad-udp-length"),
    (_set(build(), 38, b"\x05\x00"), "bad-udp-length"),
    (_set(build(), 36, b"\x00\x35"), "not-dhcp"),
    (_set(build(), BOOTP_AT, b"\x03"), "bad-op"),
    (_set(build(), BOOTP_AT, b"\x02"), "bad-op"),  # BOOTREPLY carrying DISCOVER
    (_set(build(), BOOTP_AT + 1, b"\x06"), "bad-htype"),
    (_set(build(), BOOTP_AT + 2, b"\x10"), "bad-hlen"),
    (_set(build(), BOOTP_AT + 236, b"\x63\x82\x53\x64"), "bad-magic"),
    (build(options=opt(53, b"\x01") + b"\x0c\x09abc"), "bad-option-length"),
    (build(options=opt(53, b"\x01") + b"\x0c"), "bad-option-length"),
    (build(options=opt(12, b"host") + b"\xff"), "no-message-type"),
    (build(options=b""), "bad-magic"),
    (build(options=opt(53, b"\x00") + b"\xff"), "bad-message-type"),
    (build(options=opt(53, b"\x13") + b"\xff"), "bad-message-type"),
    (build(options=opt(53, b"\x01\x01") + b"\xff"), "bad-option-value"),
    (build(options=opt(53, b"\x03") + opt(50, b"\x01\x02\x03") + b"\xff"), "bad-option-value"),
    (build(options=opt(53, b"\x03") + opt(61, b"\x01") + b"\xff"), "bad-option-value"),
    (build(trailer=b"\0" * 1300), "oversized"),
    (b"", "truncated"),
])
def test_malformed(frame, want):
    assert reason(D.parse, frame) == want


def test_size_limits():
    assert len(build(trailer=b"\0" * (1514 - len(build())))) == 1514
    D.parse(build(trailer=b"\0" * (1514 - len(build()))))
    assert reason(D.parse, build(trailer=b"\0" * (1515 - len(build())))) == "oversized"
    D.parse(build(vlan_id=1, trailer=b"\0" * (1518 - len(build(vlan_id=1)))))
    assert reason(D.parse, build(vlan_id=1, trailer=b"\0" * (1519 - len(build(vlan_id=1))))) == "oversized"


def test_message_types_up_to_18_accepted():
    for t in range(9, 19):
        assert D.parse(build(options=opt(53, bytes([t])) + b"\xff", op=1)).msg_type == t


def test_relay_to_relay_ports_accepted():
    assert D.parse(build(ports=(67, 67))).sport == 67


# ------------------------------------------------------------------ broadcast strategy


def test_set_broadcast_flag_only_flag_and_checksum_change():
    raw = build(D.REQUEST, extra=opt(50, b"\x0a\x00\x00\x05"), flags=0x0001)
    out = D.set_broadcast_flag(raw)
    f = D.parse(out)
    assert f.flags == 0x8001 and f.chaddr == GUEST and f.broadcast
    assert diff_positions(raw, out) <= {BOOTP_AT + 10, BOOTP_AT + 11, 40, 41}
    assert scapy_csum_ok(out) and Ether(out)[IP].chksum == Ether(raw)[IP].chksum


def test_set_broadcast_flag_already_set_is_identity():
    raw = build(flags=0x8000)
    assert D.set_broadcast_flag(raw) == raw


def test_set_broadcast_flag_zero_checksum_stays_zero():
    out = D.set_broadcast_flag(build(csum=0))
    assert D.parse(out).udp_csum == 0 and D.parse(out).broadcast


def test_set_broadcast_flag_vlan_and_odd_length():
    raw = build(vlan_id=5, trailer=b"\0" * 3)  # odd-length UDP datagram
    out = D.set_broadcast_flag(raw)
    assert D.parse(out).vlan_id == 5 and scapy_csum_ok(out) and residual(out) == 0xFFFF


def test_set_broadcast_flag_random_frames_scapy_agrees():
    rng = random.Random(4)
    for _ in range(200):
        raw = build(rng.choice([1, 3, 4, 7, 8]), xid=rng.getrandbits(32), flags=rng.getrandbits(15),
                    chaddr="52:54:" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(4)),
                    extra=opt(12, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))))
        out = D.set_broadcast_flag(raw)
        assert scapy_csum_ok(out)


def test_set_broadcast_flag_wrong_checksum_stays_exactly_as_wrong():
    rng = random.Random(5)
    for _ in range(200):
        raw = build(csum=rng.randrange(1, 0x10000), xid=rng.getrandbits(32))
        before = residual(raw)
        out = D.set_broadcast_flag(raw)
        assert residual(out) == before and D.parse(out).udp_csum != 0


def _xid_for_sum(target_flags: int, want_csum_zero: bool) -> bytes:
    """A frame whose correct checksum, once flags = target_flags, computes to 0 (sent 0xffff)."""
    probe = build(xid=0x11220000, flags=target_flags, csum=0)
    seg_sum = residual(probe)  # csum field is 0, so this is the plain data sum
    low = ~seg_sum & 0xFFFF  # makes the data sum 0xffff -> checksum 0
    return build(xid=0x11220000 | low, flags=0 if want_csum_zero else target_flags)


def test_checksum_0xffff_edge_cases():
    raw = _xid_for_sum(0x8000, want_csum_zero=True)
    out = D.set_broadcast_flag(raw)
    assert D.parse(out).udp_csum == 0xFFFF and scapy_csum_ok(out)
    raw = _xid_for_sum(0, want_csum_zero=False)  # the original checksum field is 0xffff
    assert D.parse(raw).udp_csum == 0xFFFF and scapy_csum_ok(raw)
    out = D.set_broadcast_flag(raw)
    assert scapy_csum_ok(out) and D.parse(out).broadcast


def _udp_csum(rest: int, word: int) -> int:
    """Checksum computed from scratch: ones-complement sum mod 0xffff, 0 sent as 0xffff."""
    return (~((rest + word) % 0xFFFF or 0xFFFF) & 0xFFFF) or 0xFFFF


def test_csum_update_random_words():
    rng = random.Random(6)
    for _ in range(5000):
        old, new = rng.getrandbits(16).to_bytes(2, "big"), rng.getrandbits(16).to_bytes(2, "big")
        rest = rng.getrandbits(16)  # the sum of all other words
        hc = _udp_csum(rest, int.from_bytes(old, "big"))
        assert D.csum_update(hc, old, new) == _udp_csum(rest, int.from_bytes(new, "big"))
    assert D.csum_update(0, b"\0\0", b"\x80\0") == 0


def test_set_broadcast_flag_rejects_replies():
    assert reason(D.set_broadcast_flag, ack()) == "wrong-direction"


def test_eth_helpers():
    raw = build()
    assert D.parse(D.rewrite_eth_src(raw, STATION)).eth_src == STATION
    assert D.rewrite_eth_src(raw, STATION)[12:] == raw[12:]
    assert D.parse(D.set_eth_dst(raw, GUEST2)).eth_dst == GUEST2
    assert reason(D.set_eth_dst, b"\0" * 10, GUEST) == "truncated"
    with pytest.raises(ValueError):
        D.set_eth_dst(raw, "not-a-mac")


def test_reply_delivery_by_chaddr():
    offer = build(D.OFFER, yiaddr="192.168.1.60", flags=0x8000)
    assert D.reply_chaddr(offer) == GUEST
    mac, out = D.reply_for_guest(offer, STATION)
    assert mac == GUEST and D.parse(out).eth_dst == GUEST and out[6:] == offer[6:]
    # the AP converted the broadcast reply to unicast toward the station
    mac, out = D.reply_for_guest(build(D.OFFER, eth_dst=STATION), STATION)
    assert mac == GUEST and out[:6] == bytes.fromhex(GUEST.replace(":", ""))
    assert D.reply_for_guest(build(D.ACK, chaddr=STATION, extra=opt(51, b"\0\0\1\0"),
                                   yiaddr="192.168.1.2"), STATION.upper()) is None


def test_reply_delivery_rejects():
    assert reason(D.reply_chaddr, build(D.DISCOVER)) == "wrong-direction"
    assert reason(D.reply_chaddr, build(D.OFFER, chaddr="01:00:5e:00:00:01")) == "bad-chaddr"
    assert reason(D.reply_chaddr, build(D.OFFER, chaddr="00:00:00:00:00:00")) == "bad-chaddr"


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
        assert scapy_csum_ok(out)
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
    assert scapy_csum_ok(ClientIdRelay().outbound(build(vlan_id=9), GUEST, 1, STATION, 0.0))


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
    assert o.chaddr == GUEST and o.eth_dst == GUEST and scapy_csum_ok(out)
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
