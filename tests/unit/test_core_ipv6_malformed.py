"""Malformed Neighbor Discovery: a counter and a drop, never an exception, never a false
binding (hand-made cases, then hypothesis mutations of valid ND and IPv6 frames)."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate
from ofsim import from_bytes
from rig import ROUTER, STATION, UP, Rig, mac
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_chksum,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from v6frames import ROUTER6_LL, dad, gua, ll, solicited
from wlbridge.proto.ndp import parse_ipv6
from wlbridge.proto.packets import FrameError

G1, G2 = 2, 3
ND_TYPES = (133, 134, 135, 136, 137)
SLL = ICMPv6NDOptSrcLLAddr(lladdr=mac(G1))


def ns_from(src: str, *opts, hlim: int = 255, cksum: int | None = None, target: str = ""):
    target = target or ROUTER6_LL
    group, group_mac = solicited(target)
    icmp = ICMPv6ND_NS(tgt=target) if cksum is None else ICMPv6ND_NS(tgt=target, cksum=cksum)
    pkt = Ether(src=mac(G1), dst=group_mac) / IPv6(src=src, dst=group, hlim=hlim) / icmp
    for o in opts:
        pkt = pkt / o
    return bytes(pkt)


CASES = {
    "nd-not-on-link": ns_from(ll(G1), SLL, hlim=64),
    "nd-checksum": ns_from(ll(G1), SLL, cksum=0x1234),
    "nd-option-zero-length": ns_from(ll(G1), Raw(b"\x01\x00" + bytes(6))),
    "nd-option-truncated": ns_from(ll(G1), Raw(b"\x01\x02" + bytes.fromhex("020000000002"))),
    "nd-option-bad-lla": ns_from(ll(G1), SLL, SLL),
    "nd-bad-source": ns_from("::", SLL, target=gua(G1)),
}


def with_checksum(raw: bytes) -> bytes:
    """An Ethernet/IPv6/ICMPv6 frame with its ICMPv6 checksum computed (whatever follows)."""
    from wlbridge.compat import ipv6 as ip6mod
    from wlbridge.compat import packet_utils

    l4 = bytearray(raw[54:])
    l4[2:4] = b"\0\0"
    hdr = ip6mod.ipv6.parser(raw[14:54])[0]
    l4[2:4] = packet_utils.checksum_ip(hdr, len(l4), bytes(l4)).to_bytes(2, "big")
    return raw[:54] + bytes(l4)


CASES["truncated-nd"] = with_checksum(bytes(
    Ether(src=mac(G1), dst="33:33:00:00:00:01")
    / IPv6(src=ll(G1), dst="ff02::1", hlim=255, nh=58) / Raw(bytes([135, 0, 0, 0]) + bytes(8))))


@pytest.mark.parametrize("reason", sorted(CASES))
def test_malformed_nd_is_counted_and_teaches_nothing(reason):
    rig = Rig()
    raw = CASES[reason]
    with pytest.raises(FrameError) as err:
        parse_ipv6(raw)
    assert err.value.reason == reason
    d = rig.send(G1, from_bytes(raw))
    assert rig.core.counters[f"malformed.{reason}"] == 1
    assert not any(":" in a for a in rig.core.bindings)
    assert UP not in d.ports() or from_bytes(raw)["ipv6_src"] == "::"


SEEDS = [
    ns_from(ll(G1), SLL),
    ns_from("::", target=gua(G1)),
    bytes(Ether(src=mac(G1), dst=ROUTER) / IPv6(src=gua(G1), dst=ROUTER6_LL, hlim=255)
          / ICMPv6ND_NA(tgt=gua(G1), S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac(G1))),
    bytes(Ether(src=mac(G1), dst="33:33:00:00:00:02") / IPv6(src=ll(G1), dst="ff02::2", hlim=255)
          / ICMPv6ND_RS() / SLL),
    bytes(Ether(src=ROUTER, dst=STATION) / IPv6(src=ROUTER6_LL, dst=gua(G2), hlim=255)
          / ICMPv6ND_NA(tgt=gua(G2), O=1) / ICMPv6NDOptDstLLAddr(lladdr=ROUTER)),
]


class Scapy(NamedTuple):
    """An IPv6 frame as scapy reads it: the oracle, independent of the parser under test."""
    src: str
    hop_limit: int
    icmp_type: int | None     # None: not ICMPv6
    checksum_ok: bool         # the ICMPv6 checksum (False when not ICMPv6)
    target: str | None        # an NS's or NA's target


def read_with_scapy(raw: bytes) -> Scapy | None:
    try:
        p = Ether(raw)
    except Exception:  # noqa: BLE001 - scapy cannot read it: no IPv6 frame
        return None
    if p.type != 0x86DD or IPv6 not in p or p[IPv6].version != 6 or len(raw) < 54:
        return None
    ip = p[IPv6]
    l4 = raw[54:54 + ip.plen]
    if ip.nh != 58 or len(l4) < 4 or len(l4) < ip.plen:
        return Scapy(ip.src, ip.hlim, None, False, None)
    zeroed = l4[:2] + b"\0\0" + l4[4:]
    ok = in6_chksum(58, ip, zeroed) == int.from_bytes(l4[2:4], "big")
    target = (str(ipaddress.IPv6Address(l4[8:24]))
              if l4[0] in (135, 136) and len(l4) >= 24 else None)
    return Scapy(ip.src, ip.hlim, l4[0], ok, target)


def allowed(raw: bytes) -> set[str]:
    """Addresses a frame may teach, as scapy reads it: its IPv6 source and an NS/NA's target;
    none from an ND message without hop limit 255 and a valid checksum."""
    seen = read_with_scapy(raw)
    if seen is None or (seen.icmp_type in ND_TYPES
                        and not (seen.hop_limit == 255 and seen.checksum_ok)):
        return set()
    return {str(ipaddress.IPv6Address(a)) for a in (seen.src, seen.target)
            if a and a != "::"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fix=st.booleans(), from_uplink=st.booleans())
def test_mutated_nd_frames_never_raise_nor_bind_falsely(data, fix, from_uplink):
    rig = Rig()
    rig.send(G2, dad(mac(G2), gua(G2)))  # for the LAN's NA naming a guest address
    before = set(rig.core.bindings)
    raw = mutate(data.draw, data.draw(st.sampled_from(SEEDS)), (1, 3))
    # past the checksum, so the option and length checks are what stops it
    if fix and len(raw) >= 58 and raw[12:14] == b"\x86\xdd" and raw[14] >> 4 == 6 \
            and raw[20] == 58:
        raw = with_checksum(raw)
    port = UP if from_uplink else G1
    try:
        headers = from_bytes(raw)
    except Exception:  # noqa: BLE001 - the simulator cannot parse it: the core alone
        assert rig.core.packet_in(port, raw, rig.now) is not None
        headers = None
    if headers is not None and "eth_type" in headers:
        rig.send(port, headers)
    assert rig.core.counters["errors.internal"] == 0
    new = {a: b for a, b in rig.core.bindings.items() if a not in before}
    for a, b in new.items():
        assert not from_uplink and b.port_no == G1, (a, raw.hex())
        assert str(ipaddress.ip_address(a)) in allowed(raw), (a, raw.hex())


def test_fuzz_seeds_are_valid():
    for raw in SEEDS:
        assert allowed(raw)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_nd_parser_answers_or_refuses_every_mutation(data):
    """`ndp.parse_ipv6` on mutated ND frames: a result or a FrameError, nothing else, and
    what it accepts has a valid checksum and only well-formed link-layer options."""
    raw = mutate(data.draw, data.draw(st.sampled_from(SEEDS + list(CASES.values()))), (1, 4))
    try:
        info = parse_ipv6(raw)
    except FrameError:
        return
    seen = read_with_scapy(raw)
    assert seen is not None, raw.hex()
    assert info.src == str(ipaddress.IPv6Address(seen.src)), (info, seen)
    if info.icmp_type in ND_TYPES:      # (never behind an extension header)
        assert seen.icmp_type == info.icmp_type, (info, seen)
        assert seen.hop_limit == 255 and seen.checksum_ok, (info, seen, raw.hex())
        assert info.target == seen.target, (info, seen)
        assert info.sll is None or len(info.sll) == 17
