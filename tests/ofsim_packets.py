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
def _encode(name: str, value: Any) -> tuple[int, int, int]:
    """OXM (value, mask, width in bits) as ints; the value is normalised to value & mask."""
    try:
        _, vb, mb = ofp.oxm_from_user(name, value)
    except KeyError:
        raise SimError(f"unknown OXM field {name!r}") from None
    width, v = len(vb) * 8, int.from_bytes(vb, "big")
    m = int.from_bytes(mb, "big") if mb is not None else (1 << width) - 1
    return v & m, m, width


def _decode(name: str, v: int, m: int, width: int) -> Any:
    num = ofp.oxm_get_field_info_by_name(name)[0]
    mask = None if m == (1 << width) - 1 else m.to_bytes(width // 8, "big")
    return ofp.oxm_to_user(num, v.to_bytes(width // 8, "big"), mask)[1]


def normalise(pkt: Mapping[str, Any]) -> Headers:
    """Copy of `pkt` with MAC/IP strings in canonical form (lowercase etc.); other keys kept."""
    out = dict(pkt)
    for k, val in pkt.items():
        if isinstance(val, str):
            try:
                v, m, w = _encode(k, val)
            except SimError:
                continue
            out[k] = _decode(k, v, m, w)
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
        elif kind == "ipv6":  # extension headers walked as OVS does (ip_proto: the last)
            ext = list(p.ext_hdrs or [])
            h.update(ipv6_src=p.src, ipv6_dst=p.dst, ip_proto=ext[-1].nxt if ext else p.nxt)
            end, off = off + 40 + p.payload_length, off + 40 + sum(len(e) for e in ext)
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
    elif et == ETH_IPV6:
        raise NotImplementedError("to_bytes: IPv6")
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
