"""Property-based tests: random mutations of valid DHCP frames never raise anything but
DhcpError, never yield an invalid binding, and rewrites of accepted frames stay valid."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from wlbridge.compat import dhcp, ethernet, ipv4, packet, udp, vlan
from wlbridge.policy.dhcp_relay import ClientIdRelay
from wlbridge.proto import dhcp as D
from wlbridge.proto.dhcp import DhcpError

GUEST = "52:54:00:12:34:56"
STATION = "02:11:22:33:44:55"


def opt(tag: int, value: bytes) -> bytes:
    return bytes([tag, len(value)]) + value


def frame(msg: int, extra: bytes = b"", *, chaddr: str = GUEST, tagged: bool = False,
          yiaddr: str = "0.0.0.0", ciaddr: str = "0.0.0.0") -> bytes:
    client = msg in (1, 3, 4, 7, 8)
    d = dhcp.dhcp(op=1 if client else 2, chaddr=chaddr, xid=0x01020304, yiaddr=yiaddr,
                  ciaddr=ciaddr, options=dhcp.options([opt(53, bytes([msg])) + extra + b"\xff"]))
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet("ff:ff:ff:ff:ff:ff", chaddr if client else STATION,
                                     0x8100 if tagged else 0x0800))
    if tagged:
        p.add_protocol(vlan.vlan(vid=10, ethertype=0x0800))
    p.add_protocol(ipv4.ipv4(src="0.0.0.0", dst="255.255.255.255", proto=17))
    p.add_protocol(udp.udp(*((68, 67) if client else (67, 68))))
    p.add_protocol(d)
    p.serialize()
    return bytes(p.data)


LEASE = opt(51, struct.pack("!I", 3600)) + opt(54, b"\xc0\xa8\x01\x01")
SEEDS = [
    frame(1, opt(55, b"\x01\x03\x06") + opt(12, b"guest")),
    frame(3, opt(50, b"\xc0\xa8\x01\x32") + opt(54, b"\xc0\xa8\x01\x01") + opt(61, b"\x01abcdef")),
    frame(5, LEASE, yiaddr="192.168.1.50"),
    frame(5, LEASE, chaddr=STATION, yiaddr="192.168.1.51"),
    frame(2, LEASE, yiaddr="192.168.1.52", tagged=True),
    frame(6),
    frame(7, ciaddr="192.168.1.50"),
    frame(4, opt(50, b"\xc0\xa8\x01\x32")),
    frame(8, ciaddr="192.168.1.50", tagged=True),
]


@st.composite
def mutated(draw) -> bytes:
    return mutate(draw, draw(st.sampled_from(SEEDS)), (1, 6),
                  ("flip", "set", "truncate", "insert", "delete", "splice"), chunk=16)


@st.composite
def mutated_payload(draw) -> bytes:
    """Mutations inside the BOOTP message only, IPv4/UDP lengths and checksums made
    consistent again (a correct UDP checksum, or zero), so deeper code runs."""
    seed = draw(st.sampled_from(SEEDS))
    f = D.parse(seed)
    body = bytearray(seed[f.bootp_offset:f.bootp_end])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "options"]))
        low = 0 if kind == "set" else 240  # the fixed header keeps its size
        pos = draw(st.integers(min(low, len(body) - 1), len(body) - 1))
        if kind == "set":
            body[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "delete":
            del body[pos:pos + draw(st.integers(1, 12))]
        else:  # rewrite one byte of the options area, where the parsing is subtle
            at = draw(st.integers(240, max(240, len(body) - 1)))
            body[at:at + 1] = bytes([draw(st.sampled_from([0, 1, 2, 4, 50, 51, 53, 54, 61, 255]))])
    head = bytearray(seed[:f.bootp_offset])
    struct.pack_into("!H", head, f.l4_offset - 20 + 2, 20 + 8 + len(body))
    struct.pack_into("!H", head, f.l4_offset + 4, 8 + len(body))
    struct.pack_into("!H", head, f.l4_offset + 6, 0)
    raw = bytes(head) + bytes(body)
    if draw(st.booleans()):
        p = Ether(raw)
        del p[UDP].chksum
        raw = bytes(p)
    return raw


def udp_ok(raw: bytes) -> bool:
    p = Ether(raw)
    have = p[UDP].chksum
    if have == 0:
        return True
    del p[UDP].chksum
    return Ether(bytes(p))[UDP].chksum == have


def exercise(raw: bytes) -> None:
    try:
        f = D.parse(raw)
    except DhcpError as e:
        # "parse-error" would mean os-ken raised on input our own checks let through
        assert e.reason in D.REASONS and e.reason != "parse-error"
        return
    checksum_was_ok = f.udp_csum == 0 or udp_ok(raw)
    steps = [
        lambda: D.lease_event(f),
        lambda: D.set_broadcast_flag(f),
        lambda: D.reply_for_guest(f, STATION),
        lambda: ClientIdRelay().outbound(f, f.chaddr, 1, STATION, 0.0),
    ]
    for step in steps:
        try:
            out = step()
        except DhcpError as e:
            assert e.reason in D.REASONS
            continue
        if isinstance(out, D.LeaseEvent):
            assert out.kind in ("bind", "unbind") and D.is_unicast_mac(out.mac)
            if out.kind == "bind":
                assert D.is_unicast_ipv4(out.ip)
            else:
                assert out.ip is None and out.cause == "nak" or D.is_unicast_ipv4(out.ip)
        elif isinstance(out, tuple):
            out = out[1]
        if isinstance(out, bytes):  # a rewritten frame must parse, checksum as good as before
            g = D.parse(out)
            assert g.xid == f.xid and g.msg_type == f.msg_type
            if checksum_was_ok:
                assert g.udp_csum == 0 or udp_ok(out)
            assert (g.udp_csum == 0) == (f.udp_csum == 0)
    relay = ClientIdRelay()
    relay.record(f.xid, GUEST, 3, STATION, 0.0)
    try:
        got = relay.inbound(f, 1.0)
    except DhcpError as e:
        assert e.reason in D.REASONS
    else:
        if got is not None:
            g = D.parse(got.frame)
            assert g.chaddr == GUEST and g.eth_dst == GUEST and got.port == 3
            if checksum_was_ok:
                assert udp_ok(got.frame)


FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutations_only_raise_dhcp_error(raw):
    exercise(raw)


@FUZZ
@given(mutated_payload())
def test_payload_mutations_keep_invariants(raw):
    exercise(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1600))
def test_random_bytes(raw):
    exercise(raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.binary(min_size=1, max_size=80))
def test_random_option_area(seed, junk):
    """Arbitrary bytes after the magic cookie, with the IPv4/UDP lengths kept consistent."""
    f = D.parse(seed)
    bootp = seed[f.bootp_offset:f.bootp_offset + 240] + junk
    head = bytearray(seed[:f.bootp_offset])
    ip = f.l4_offset - 20
    struct.pack_into("!H", head, ip + 2, 20 + 8 + len(bootp))
    struct.pack_into("!H", head, f.l4_offset + 4, 8 + len(bootp))
    struct.pack_into("!H", head, f.l4_offset + 6, 0)
    exercise(bytes(head) + bootp)


def test_seeds_are_valid():
    for s in SEEDS:
        D.parse(s)
