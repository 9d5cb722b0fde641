"""Unit tests for wlbridge.proto.dhcp: parsing/validation, the broadcast-flag strategy and reply delivery
(frames built with os-ken, checked with scapy)."""

from __future__ import annotations

import random

import pytest
from dhcp_build import (
    BCAST,
    GUEST,
    GUEST2,
    STATION,
    ack,
    build,
    diff_positions,
    opt,
    reason,
    residual,
)
from dhcp_frames import BOOTP_AT, udp_checksum_ok
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from wlbridge.proto import dhcp as D

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
    assert udp_checksum_ok(out) and Ether(out)[IP].chksum == Ether(raw)[IP].chksum


def test_set_broadcast_flag_already_set_is_identity():
    raw = build(flags=0x8000)
    assert D.set_broadcast_flag(raw) == raw


def test_set_broadcast_flag_zero_checksum_stays_zero():
    out = D.set_broadcast_flag(build(csum=0))
    assert D.parse(out).udp_csum == 0 and D.parse(out).broadcast


def test_set_broadcast_flag_vlan_and_odd_length():
    raw = build(vlan_id=5, trailer=b"\0" * 3)  # odd-length UDP datagram
    out = D.set_broadcast_flag(raw)
    assert D.parse(out).vlan_id == 5 and udp_checksum_ok(out) and residual(out) == 0xFFFF


def test_set_broadcast_flag_random_frames_scapy_agrees():
    rng = random.Random(4)
    for _ in range(200):
        raw = build(rng.choice([1, 3, 4, 7, 8]), xid=rng.getrandbits(32), flags=rng.getrandbits(15),
                    chaddr="52:54:" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(4)),
                    extra=opt(12, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))))
        out = D.set_broadcast_flag(raw)
        assert out == scapy_broadcast(raw) and udp_checksum_ok(out)


def scapy_broadcast(raw: bytes) -> bytes:
    """The frame with the BOOTP broadcast flag set, rebuilt by scapy (checksum recomputed
    from scratch, not updated)."""
    p = Ether(raw)
    p[BOOTP].flags = int(p[BOOTP].flags) | 0x8000
    del p[UDP].chksum
    return bytes(p)


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
    assert D.parse(out).udp_csum == 0xFFFF and udp_checksum_ok(out)
    raw = _xid_for_sum(0, want_csum_zero=False)  # the original checksum field is 0xffff
    assert D.parse(raw).udp_csum == 0xFFFF and udp_checksum_ok(raw)
    out = D.set_broadcast_flag(raw)
    assert udp_checksum_ok(out) and D.parse(out).broadcast


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
