"""Packet header dicts for the OpenFlow simulator (tests/ofsim.py): builders, bytes <-> dict.

Packets are dicts of OXM-named header fields (see `normalise`); `vlan_vid` holds the bare 12-bit VID
(absent = untagged), `payload` the L4 payload bytes, `data` the raw frame.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Mapping
from typing import Any

from wlbridge import compat
from wlbridge.compat import ofp

Headers = dict  # dict[str, Any]: OXM field name -> value
BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH_ARP, ETH_IP, ETH_IPV6 = 0x0806, 0x0800, 0x86DD


class SimError(ValueError):
    """Base class of the simulator's errors."""



# ---------------------------------------------------------------- fields and matches
def encode_field(name: str, value: Any) -> tuple[int, int, int]:
    """OXM (value, mask, width in bits) as ints; the value is normalised to value & mask."""
    try:
        _, vb, mb = ofp.oxm_from_user(name, value)
    except KeyError:
        raise SimError(f"unknown OXM field {name!r}") from None
    width, v = len(vb) * 8, int.from_bytes(vb, "big")
    m = int.from_bytes(mb, "big") if mb is not None else (1 << width) - 1
    return v & m, m, width


def decode_field(name: str, v: int, m: int, width: int) -> Any:
    """The user value of OXM ints (the inverse of `encode_field`)."""
    num = ofp.oxm_get_field_info_by_name(name)[0]
    mask = None if m == (1 << width) - 1 else m.to_bytes(width // 8, "big")
    return ofp.oxm_to_user(num, v.to_bytes(width // 8, "big"), mask)[1]


def normalise(pkt: Mapping[str, Any]) -> Headers:
    """Copy of `pkt` with MAC/IP strings in canonical form (lowercase etc.); other keys kept."""
    out = dict(pkt)
    for k, val in pkt.items():
        if isinstance(val, str):
            try:
                v, m, w = encode_field(k, val)
            except SimError:
                continue
            out[k] = decode_field(k, v, m, w)
    return out


# ---------------------------------------------------------------- packets
def _pkt_mod(name: str) -> Any:
    return importlib.import_module(f"{compat.FRAMEWORK}.lib.packet.{name}")


def ether(eth_src: str, eth_dst: str, eth_type: int, **fields: Any) -> Headers:
    return normalise(dict(eth_src=eth_src, eth_dst=eth_dst, eth_type=eth_type, **fields))


def arp_request(sha: str, spa: str, tpa: str, *, eth_dst: str = BROADCAST,
                tha: str = "00:00:00:00:00:00", **fields: Any) -> Headers:
    return ether(fields.pop("eth_src", sha), eth_dst, ETH_ARP, arp_op=1, arp_spa=spa,
                 arp_tpa=tpa, arp_sha=sha, arp_tha=tha, **fields)


def arp_reply(sha: str, spa: str, tha: str, tpa: str, **fields: Any) -> Headers:
    return ether(fields.pop("eth_src", sha), fields.pop("eth_dst", tha), ETH_ARP, arp_op=2,
                 arp_spa=spa, arp_tpa=tpa, arp_sha=sha, arp_tha=tha, **fields)


def ipv4(eth_src: str, eth_dst: str, src: str, dst: str, ip_proto: int = 0,
         **fields: Any) -> Headers:
    return ether(eth_src, eth_dst, ETH_IP, ipv4_src=src, ipv4_dst=dst, ip_proto=ip_proto, **fields)


def udp(eth_src: str, eth_dst: str, src: str, dst: str, sport: int, dport: int,
        payload: bytes = b"", **fields: Any) -> Headers:
    return ipv4(eth_src, eth_dst, src, dst, 17, udp_src=sport, udp_dst=dport, payload=payload,
                **fields)


def icmp_echo(eth_src: str, eth_dst: str, src: str, dst: str, payload: bytes = b"\0\1\0\1",
              **fields: Any) -> Headers:
    return ipv4(eth_src, eth_dst, src, dst, 1, icmpv4_type=8, icmpv4_code=0, payload=payload,
                **fields)


def from_bytes(data: bytes) -> Headers:
    """Parse an Ethernet frame (os-ken packet library) into a header dict; keeps `data`."""
    h: Headers = {}
    off, end = 0, len(data)
    for p in compat.packet.Packet(bytes(data)).protocols:
        kind = type(p).__name__
        if kind == "ethernet":
            h.update(eth_src=p.src, eth_dst=p.dst, eth_type=p.ethertype)
            off = 14
        elif kind == "vlan":
            h.update(vlan_vid=p.vid, vlan_pcp=p.pcp, eth_type=p.ethertype)
            off += 4
        elif kind == "arp":
            h.update(arp_op=p.opcode, arp_spa=p.src_ip, arp_tpa=p.dst_ip, arp_sha=p.src_mac,
                     arp_tha=p.dst_mac)
            break
        elif kind == "ipv4":
            h.update(ipv4_src=p.src, ipv4_dst=p.dst, ip_proto=p.proto)
            end, off = off + p.total_length, off + p.header_length * 4
        elif kind == "ipv6":  # ip_proto after the extension headers, as OVS has it
            ext = sum(len(x) for x in p.ext_hdrs)
            h.update(ipv6_src=p.src, ipv6_dst=p.dst, ipv6_hop_limit=p.hop_limit,
                     ip_proto=p.ext_hdrs[-1].nxt if p.ext_hdrs else p.nxt)
            end, off = off + 40 + p.payload_length, off + 40 + ext
            if h["ip_proto"] == 58:
                h.update(_icmpv6(bytes(data[off:end])))
                break
        elif kind in ("udp", "tcp", "icmp", "icmpv6"):
            if kind.startswith("icmp"):
                v, t = ("v6", p.type_) if kind == "icmpv6" else ("v4", p.type)
                h.update({f"icmp{v}_type": t, f"icmp{v}_code": p.code})
            else:
                h.update({f"{kind}_src": p.src_port, f"{kind}_dst": p.dst_port})
            off += {"udp": 8, "icmp": 4, "icmpv6": 4}.get(kind) or p.offset * 4
            h["payload"] = bytes(data[off:end])
            break
    h = normalise(h)
    h["data"] = bytes(data)
    return h


ND_NS, ND_NA = 135, 136
ND_FIELDS = {1: "ipv6_nd_sll", 2: "ipv6_nd_tll"}
ZERO_MAC = "00:00:00:00:00:00"


def _icmpv6(l4: bytes) -> Headers:
    """ICMPv6 header fields as OVS extracts them (lib/flow.c, parse_icmpv6): type and code
    from 4 bytes on; for an NS or NA of code 0 the target, and the first source (NS) or
    target (NA) link-layer option, zero when absent; the option walk stops at a zero-length
    or overlong option; a second option of one kind makes the target and both options
    zero.  `payload`: what follows the 4-byte header."""
    if len(l4) < 4:
        return {"payload": l4}
    h: Headers = {"icmpv6_type": l4[0], "icmpv6_code": l4[1], "payload": l4[4:]}
    if l4[1] != 0 or l4[0] not in (ND_NS, ND_NA) or len(l4) < 24:
        return h
    target = decode_field("ipv6_nd_target", int.from_bytes(l4[8:24], "big"), (1 << 128) - 1, 128)
    found: dict[int, str] = {}
    off = 24
    while len(l4) - off >= 8:
        kind, length = l4[off], l4[off + 1] * 8
        if not length or length > len(l4) - off:
            break
        if kind in ND_FIELDS and length == 8:
            if kind in found:
                target, found = "::", {}
                break
            found[kind] = decode_field("eth_src", int.from_bytes(l4[off + 2:off + 8], "big"),
                                  (1 << 48) - 1, 48)
        off += length
    h["ipv6_nd_target"] = target
    field = ND_FIELDS[1 if l4[0] == ND_NS else 2]
    h[field] = found.get(1 if l4[0] == ND_NS else 2, ZERO_MAC)
    return h


def _icmpv6_bytes(h: Mapping[str, Any]) -> bytes:
    """The ICMPv6 message of header dict `h` without its checksum; an NS/NA's target and its
    first link-layer option set from `h` as OVS's datapath does (lib/packets.c,
    packet_set_nd: the first option of either kind is the one rewritten)."""
    body = bytearray(h.get("payload", b""))
    if h["icmpv6_type"] in (ND_NS, ND_NA) and h.get("icmpv6_code", 0) == 0 and len(body) >= 20:
        if h.get("ipv6_nd_target") not in (None, "::"):
            body[4:20] = encode_field("ipv6_nd_target", h["ipv6_nd_target"])[0].to_bytes(16, "big")
        off = 20
        while len(body) - off >= 8 and body[off + 1]:
            kind, length = body[off], body[off + 1]
            if kind in ND_FIELDS and length == 1:
                mac = h.get(ND_FIELDS[kind])
                if mac is not None:
                    body[off + 2:off + 8] = encode_field("eth_src", mac)[0].to_bytes(6, "big")
                break
            off += length * 8
    return bytes([h["icmpv6_type"], h.get("icmpv6_code", 0), 0, 0]) + bytes(body)


def to_bytes(h: Mapping[str, Any]) -> bytes:
    """Build an Ethernet frame from a header dict (eth[/vlan]/arp|ipv4[/udp|tcp|icmp]/payload)."""
    pk, et = compat.packet.Packet(), h["eth_type"]
    vlan = h.get("vlan_vid")
    pk.add_protocol(compat.ethernet.ethernet(h["eth_dst"], h["eth_src"],
                                             et if vlan is None else 0x8100))
    if vlan is not None:
        pk.add_protocol(compat.vlan.vlan(pcp=h.get("vlan_pcp", 0), vid=vlan, ethertype=et))
    if et == ETH_ARP:
        pk.add_protocol(compat.arp.arp(opcode=h["arp_op"], src_mac=h["arp_sha"],
                                       src_ip=h["arp_spa"], dst_mac=h["arp_tha"],
                                       dst_ip=h["arp_tpa"]))
    elif et == ETH_IPV6:  # (extension headers are not rebuilt)
        proto = h.get("ip_proto", 59)
        ip6 = _pkt_mod("ipv6").ipv6(nxt=proto, hop_limit=h.get("ipv6_hop_limit", 255),
                                    src=h["ipv6_src"], dst=h["ipv6_dst"])
        pk.add_protocol(ip6)
        if proto == 58:
            raw = _icmpv6_bytes(h)
            csum = compat.packet_utils.checksum_ip(ip6, len(raw), raw)
            pk.add_protocol(raw[:2] + struct.pack("!H", csum) + raw[4:])
            pk.serialize()
            return bytes(pk.data)
        if proto == 17:
            pk.add_protocol(compat.udp.udp(h["udp_src"], h["udp_dst"]))
        elif proto == 6:
            pk.add_protocol(_pkt_mod("tcp").tcp(h["tcp_src"], h["tcp_dst"]))
    elif et == ETH_IP:
        proto = h.get("ip_proto", 0)
        pk.add_protocol(compat.ipv4.ipv4(proto=proto, src=h["ipv4_src"], dst=h["ipv4_dst"]))
        if proto == 17:
            pk.add_protocol(compat.udp.udp(h["udp_src"], h["udp_dst"]))
        elif proto == 6:
            pk.add_protocol(_pkt_mod("tcp").tcp(h["tcp_src"], h["tcp_dst"]))
        elif proto == 1:
            raw = struct.pack("!BBH", h["icmpv4_type"], h["icmpv4_code"], 0) + h.get("payload", b"")
            csum = compat.packet_utils.checksum(raw)
            pk.add_protocol(raw[:2] + struct.pack("!H", csum) + raw[4:])
            pk.serialize()
            return bytes(pk.data)
    pk.add_protocol(h.get("payload", b""))
    pk.serialize()
    return bytes(pk.data)


def data_of(h: Mapping[str, Any]) -> bytes:
    """The frame: the original bytes if the headers are unmodified, else rebuilt."""
    return h["data"] if "data" in h else to_bytes(h)
