"""Packet-in frames, parsed with the framework's packet library into what the core needs."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .compat import arp as arp_mod
from .compat import ethernet, ipv4, udp

ETH_MIN = 14
FRAME_MAX = 1514 + 4  # one VLAN tag at most


class FrameError(ValueError):
    """A frame the controller will not act on; `reason` is a short counter label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ArpInfo:
    op: int
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


@dataclass(frozen=True)
class Ipv4Info:
    src: str
    dst: str
    proto: int


@dataclass(frozen=True)
class Frame:
    data: bytes
    eth_src: str
    eth_dst: str
    eth_type: int
    arp: ArpInfo | None = None
    ipv4: Ipv4Info | None = None
    udp_src: int | None = None
    udp_dst: int | None = None

    @property
    def is_dhcp_client(self) -> bool:
        return self.udp_src == 68 and self.udp_dst == 67

    @property
    def is_dhcp_server(self) -> bool:
        return self.udp_src == 67 and self.udp_dst == 68


class _Headers:
    """Like `packet.Packet`, but only the layers the core reads (Ethernet, ARP, IPv4, UDP):
    the payload is never decoded.  os-ken's DHCP parser fails on a non-ASCII sname/file,
    which option overload (52) makes legal; DHCP is parsed by `wlbridge.dhcp`."""

    LAYERS = (ethernet.ethernet, arp_mod.arp, ipv4.ipv4, udp.udp)

    def __init__(self, data: bytes) -> None:
        self.protocols: list = []
        cls, rest = ethernet.ethernet, data
        while cls in self.LAYERS and bytes(rest).strip(b"\0"):
            try:
                proto, cls, rest = cls.parser(rest)
            except struct.error:
                break
            self.protocols.append(proto)

    def get_protocol(self, kind: type) -> Any:
        return next((p for p in self.protocols if isinstance(p, kind)), None)


_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP_PORTS = struct.Struct("!HH")


def _mac(b: bytes) -> str:
    return b.hex(":")


def _ip(b: bytes) -> str:
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


def _has_data(b: bytes) -> bool:
    return bool(b.strip(b"\0"))


def parse_frame(data: bytes) -> Frame:
    """Parse an Ethernet frame; raise FrameError for anything unusable.

    Decodes exactly what `parse_frame_reference` decodes with os-ken's packet library
    (a layer that is all zero bytes or too short is not decoded), with `struct` directly:
    the packet-in path must sustain thousands of frames a second.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) < ETH_MIN:
        raise FrameError("truncated")
    if len(data) > FRAME_MAX:
        raise FrameError("oversized")
    data = bytes(data)
    if not _has_data(data):
        raise FrameError("truncated")
    dst, src, eth_type = _ETH.unpack_from(data)
    eth_src, eth_dst = _mac(src), _mac(dst)
    rest = data[ETH_MIN:]
    if eth_type == 0x0806:
        if len(rest) < _ARP.size or not _has_data(rest):
            raise FrameError("truncated-arp")
        hwtype, proto, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(rest)
        if hwtype != 1 or proto != 0x0800 or hlen != 6 or plen != 4 or op not in (1, 2):
            raise FrameError("bad-arp")
        info = ArpInfo(op, _mac(sha), _ip(spa), _mac(tha), _ip(tpa))
        return Frame(data, eth_src, eth_dst, eth_type, arp=info)
    if eth_type == 0x0800:
        if len(rest) < _IPV4.size or not _has_data(rest):
            raise FrameError("bad-ipv4")
        vihl, _tos, total, _id, _frag, _ttl, proto, _csum, ip_src, ip_dst = \
            _IPV4.unpack_from(rest)
        ihl = vihl & 0xF
        if vihl >> 4 != 4 or ihl < 5:
            raise FrameError("bad-ipv4")
        if total > len(rest):
            raise FrameError("truncated-ipv4")
        info4 = Ipv4Info(_ip(ip_src), _ip(ip_dst), proto)
        udp_src = udp_dst = None
        if proto == 17:
            payload = rest[ihl * 4:total]
            if len(payload) >= 8 and _has_data(payload):
                udp_src, udp_dst = _UDP_PORTS.unpack_from(payload)
        return Frame(data, eth_src, eth_dst, eth_type, ipv4=info4, udp_src=udp_src,
                     udp_dst=udp_dst)
    return Frame(data, eth_src, eth_dst, eth_type)


def parse_frame_reference(data: bytes) -> Frame:
    """`parse_frame` through os-ken's packet library: slower (about 150 us a frame), kept as
    the reference the unit tests compare `parse_frame` with."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < ETH_MIN:
        raise FrameError("truncated")
    if len(data) > FRAME_MAX:
        raise FrameError("oversized")
    data = bytes(data)
    try:
        pkt = _Headers(data)
    except Exception as exc:  # the library raises many kinds
        raise FrameError("unparsable") from exc
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth is None:
        raise FrameError("truncated")
    frame = Frame(data, eth.src.lower(), eth.dst.lower(), eth.ethertype)
    if eth.ethertype == 0x0806:
        a = pkt.get_protocol(arp_mod.arp)
        if a is None:
            raise FrameError("truncated-arp")
        if a.hwtype != 1 or a.proto != 0x0800 or a.hlen != 6 or a.plen != 4 \
                or a.opcode not in (1, 2):
            raise FrameError("bad-arp")
        info = ArpInfo(a.opcode, a.src_mac.lower(), a.src_ip, a.dst_mac.lower(), a.dst_ip)
        return Frame(data, frame.eth_src, frame.eth_dst, frame.eth_type, arp=info)
    if eth.ethertype == 0x0800:
        ip = pkt.get_protocol(ipv4.ipv4)
        if ip is None or ip.version != 4 or ip.header_length < 5:
            raise FrameError("bad-ipv4")
        if ip.total_length > len(data) - ETH_MIN:
            raise FrameError("truncated-ipv4")
        info4 = Ipv4Info(ip.src, ip.dst, ip.proto)
        u = pkt.get_protocol(udp.udp) if ip.proto == 17 else None
        return Frame(data, frame.eth_src, frame.eth_dst, frame.eth_type, ipv4=info4,
                     udp_src=u.src_port if u else None, udp_dst=u.dst_port if u else None)
    return frame
