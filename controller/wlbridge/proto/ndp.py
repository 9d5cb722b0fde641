"""IPv6 and Neighbor Discovery (RFC 4861) frames: parsed for the core, built for the uplink.

Parsing uses the framework's packet library for the Ethernet and IPv6 headers (extension
headers included) and the checksum; the ND options are walked here because the library
decodes only the first one, and the core must see every option to refuse a malformed
message (a zero-length option, one past the payload, two source link-layer options) as
Open vSwitch would not.  Anything the core must not act on raises `packets.FrameError`
with a short counter label.  Frames built here (a Router Solicitation rewritten to the
station MAC, an unsolicited Neighbor Advertisement) are built with the library.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from wlbridge.compat import addrconv, ethernet, icmpv6, ipv6, packet, packet_utils
from wlbridge.model.addresses import canonical_ip6 as canonical
from wlbridge.model.addresses import is_guest_ip6
from wlbridge.proto.packets import ETH_MIN, FRAME_MAX, FrameError

ETH_IPV6 = 0x86DD
PROTO_ICMPV6 = 58
RS, RA, NS, NA, REDIRECT = 133, 134, 135, 136, 137
OPT_SLL, OPT_TLL = 1, 2
ND_HOP_LIMIT = 255
ALL_NODES = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"
NA_OVERRIDE = 0x1  # os-ken's nd_neighbor.res holds the R, S, O flags as 3 bits
UNSPECIFIED = "::"
__all__ = ["FrameError", "Ipv6Info", "canonical", "is_guest_ip6", "parse_ipv6",
           "router_solicitation", "unsolicited_na"]


class Ipv6Info(NamedTuple):
    """The IPv6 header (after extension headers) and, for ICMPv6, the message."""

    src: str  # canonical (RFC 5952) text
    dst: str
    proto: int  # the upper-layer protocol (after extension headers)
    hop_limit: int
    icmp_type: int | None = None
    target: str | None = None  # NS/NA target
    sll: str | None = None  # source link-layer address option (NS, RS)
    tll: str | None = None  # target link-layer address option (NA)
    flags: int = 0  # NA: R, S, O as 3 bits (R = 4, S = 2, O = 1)


def parse_ipv6(data: bytes) -> Ipv6Info:
    """Parse an Ethernet frame carrying IPv6; ND messages (RS, RA, NS, NA, Redirect) are
    validated as a receiver must (RFC 4861 6.1, 7.1: hop limit 255, code 0, checksum,
    length, options) and their link-layer options read.  Raises FrameError."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < ETH_MIN + 40:
        raise FrameError("truncated-ipv6")
    if len(data) > FRAME_MAX:
        raise FrameError("oversized")
    data = bytes(data)
    try:
        eth, _, rest = ethernet.ethernet.parser(data)
        if eth.ethertype != ETH_IPV6:
            raise FrameError("not-ipv6")
        ip, _, _ = ipv6.ipv6.parser(rest)
    except FrameError:
        raise
    except Exception as exc:  # the library raises many kinds
        raise FrameError("bad-ipv6") from exc
    if ip.version != 6 or ip.payload_length > len(rest) - 40:
        raise FrameError("bad-ipv6")
    ext = sum(len(h) for h in ip.ext_hdrs)
    if ext > ip.payload_length:
        raise FrameError("bad-ipv6")
    proto = ip.ext_hdrs[-1].nxt if ip.ext_hdrs else ip.nxt
    src, dst = canonical(ip.src), canonical(ip.dst)
    if src is None or dst is None:  # pragma: no cover - the library gives valid text
        raise FrameError("bad-ipv6")
    if proto != PROTO_ICMPV6:
        return Ipv6Info(src, dst, proto, ip.hop_limit)
    l4 = rest[40 + ext:40 + ip.payload_length]
    if len(l4) < 4:
        raise FrameError("truncated-icmpv6")
    icmp_type, code = l4[0], l4[1]
    if icmp_type not in (RS, RA, NS, NA, REDIRECT):
        return Ipv6Info(src, dst, proto, ip.hop_limit, icmp_type)
    # Neighbor Discovery: validated before anything is learned from it
    if ext:
        raise FrameError("nd-extension-header")
    if ip.hop_limit != ND_HOP_LIMIT or code != 0:
        raise FrameError("nd-not-on-link")
    if packet_utils.checksum_ip(ip, len(l4), l4) != 0:
        raise FrameError("nd-checksum")
    fixed = {RS: 8, RA: 16, NS: 24, NA: 24, REDIRECT: 40}[icmp_type]
    if len(l4) < fixed:
        raise FrameError("truncated-nd")
    options = _options(l4[fixed:])
    target = flags = None
    if icmp_type in (NS, NA):
        target = canonical(addrconv.ipv6.bin_to_text(l4[8:24]))
        flags = struct.unpack_from("!I", l4, 4)[0] >> 29
        if target is None or ipaddress.IPv6Address(target).is_multicast:
            raise FrameError("nd-bad-target")
    sll, tll = options.get(OPT_SLL), options.get(OPT_TLL)
    if src == UNSPECIFIED and (sll is not None or icmp_type not in (NS, RS)):
        raise FrameError("nd-bad-source")
    return Ipv6Info(src, dst, proto, ip.hop_limit, icmp_type, target, sll, tll, flags or 0)


def _options(buf: bytes) -> dict[int, str]:
    """The link-layer address options of an ND message by type; raise FrameError for a
    zero-length option, one that runs past the message, a link-layer option that is not
    one Ethernet address long, or two of one kind."""
    found: dict[int, str] = {}
    off = 0
    while off < len(buf):
        if len(buf) - off < 2:
            raise FrameError("nd-option-truncated")
        kind, length = buf[off], buf[off + 1] * 8
        if length == 0:
            raise FrameError("nd-option-zero-length")
        if off + length > len(buf):
            raise FrameError("nd-option-truncated")
        if kind in (OPT_SLL, OPT_TLL):
            if length != 8 or kind in found:
                raise FrameError("nd-option-bad-lla")
            found[kind] = addrconv.mac.bin_to_text(buf[off + 2:off + 8]).lower()
        off += length
    return found


def router_solicitation(data: bytes, info: Ipv6Info, station_mac: str) -> bytes:
    """The guest's RS as the LAN must see it: from the station MAC, with the station MAC in
    its source link-layer option (none from the unspecified address, RFC 4861 4.1), so that
    a router's unicast answer comes to the station (built with the packet library)."""
    eth = ethernet.ethernet.parser(bytes(data))[0]
    option = None
    if info.src != UNSPECIFIED:
        option = icmpv6.nd_option_sla(hw_src=station_mac)
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(eth.dst, station_mac, ETH_IPV6))
    pkt.add_protocol(ipv6.ipv6(nxt=PROTO_ICMPV6, hop_limit=ND_HOP_LIMIT, src=info.src,
                               dst=info.dst))
    pkt.add_protocol(icmpv6.icmpv6(type_=RS, data=icmpv6.nd_router_solicit(option=option)))
    pkt.serialize()
    return bytes(pkt.data)


def unsolicited_na(mac: str, ip: str) -> bytes:
    """An unsolicited NA (override set) to all nodes: `ip` is at `mac` (RFC 4861 7.2.6), to
    update LAN hosts' neighbour caches when the station MAC changes."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(ALL_NODES_MAC, mac, ETH_IPV6))
    pkt.add_protocol(ipv6.ipv6(nxt=PROTO_ICMPV6, hop_limit=ND_HOP_LIMIT, src=ip,
                               dst=ALL_NODES))
    pkt.add_protocol(icmpv6.icmpv6(type_=NA, data=icmpv6.nd_neighbor(
        res=NA_OVERRIDE, dst=ip, option=icmpv6.nd_option_tla(hw_src=mac))))
    pkt.serialize()
    return bytes(pkt.data)
