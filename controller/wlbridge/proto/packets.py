"""Packet-in frames, parsed with the framework's packet library into what the core needs, and
the frames the core sends of its own (announcements), built with it."""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from wlbridge.compat import arp as arp_mod
from wlbridge.compat import ethernet, ipv4, ipv6, packet, udp

ETH_MIN = 14
ETH_PADDED = 60  # the Ethernet minimum, without the FCS
FRAME_MAX = 1514 + 4  # one VLAN tag at most
BROADCAST = "ff:ff:ff:ff:ff:ff"


class FrameError(ValueError):
    """A frame the controller will not act on; `reason` is a short counter label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ArpInfo(NamedTuple):
    op: int
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


class Ipv4Info(NamedTuple):
    src: str
    dst: str
    proto: int


class Ipv6Info(NamedTuple):
    src: str
    dst: str
    proto: int  # the upper-layer protocol, after any extension headers


class Frame(NamedTuple):
    """What the core reads of a packet-in frame (immutable records like the others here:
    named tuples, built for a fraction of a frozen dataclass's cost on the packet-in path)."""

    data: bytes
    eth_src: str
    eth_dst: str
    eth_type: int
    arp: ArpInfo | None = None
    ipv4: Ipv4Info | None = None
    udp_src: int | None = None
    udp_dst: int | None = None
    ipv6: Ipv6Info | None = None

    @property
    def is_dhcp_client(self) -> bool:
        return self.udp_src == 68 and self.udp_dst == 67 and self.ipv6 is None

    @property
    def is_dhcp_server(self) -> bool:
        return self.udp_src == 67 and self.udp_dst == 68 and self.ipv6 is None

    @property
    def is_dhcp6_client(self) -> bool:
        """A DHCPv6 client message (UDP 546 -> 547)."""
        return self.ipv6 is not None and self.udp_src == 546 and self.udp_dst == 547

    @property
    def is_dhcp6_server(self) -> bool:
        """A DHCPv6 server's or relay agent's message: from UDP 547 (Advertise, Reply,
        Reconfigure, Relay-forward/-reply), or to a client's UDP 546."""
        return self.ipv6 is not None and (self.udp_src == 547 or self.udp_dst == 546)


class _Headers:
    """Like `packet.Packet`, but only the layers the core reads (Ethernet, ARP, IPv4/IPv6, UDP):
    the payload is never decoded.  os-ken's DHCP parser fails on a non-ASCII sname/file,
    which option overload (52) makes legal; DHCP is parsed by `wlbridge.proto.dhcp`."""

    LAYERS = (ethernet.ethernet, arp_mod.arp, ipv4.ipv4, ipv6.ipv6, udp.udp)

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
        for p in self.protocols:
            if isinstance(p, kind):
                return p
        return None


def parse_frame(data: bytes) -> Frame:
    """Parse an Ethernet frame with the framework's packet library (Ethernet, ARP, IPv4 and
    UDP headers only); raise FrameError for anything the core must not act on."""
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
    src, dst, ethertype = eth.src.lower(), eth.dst.lower(), eth.ethertype
    if ethertype == 0x0806:
        a = pkt.get_protocol(arp_mod.arp)
        if a is None:
            raise FrameError("truncated-arp")
        if a.hwtype != 1 or a.proto != 0x0800 or a.hlen != 6 or a.plen != 4 \
                or a.opcode not in (1, 2):
            raise FrameError("bad-arp")
        info = ArpInfo(a.opcode, a.src_mac.lower(), a.src_ip, a.dst_mac.lower(), a.dst_ip)
        return Frame(data, src, dst, ethertype, arp=info)
    if ethertype == 0x0800:
        ip = pkt.get_protocol(ipv4.ipv4)
        if ip is None or ip.version != 4 or ip.header_length < 5:
            raise FrameError("bad-ipv4")
        if ip.total_length > len(data) - ETH_MIN:
            raise FrameError("truncated-ipv4")
        info4 = Ipv4Info(ip.src, ip.dst, ip.proto)
        u = pkt.get_protocol(udp.udp) if ip.proto == 17 else None
        return Frame(data, src, dst, ethertype, ipv4=info4,
                     udp_src=u.src_port if u else None, udp_dst=u.dst_port if u else None)
    if ethertype == 0x86DD:
        ip6 = pkt.get_protocol(ipv6.ipv6)
        if ip6 is None or ip6.version != 6:
            raise FrameError("bad-ipv6")
        if ip6.payload_length > len(data) - ETH_MIN - 40:
            raise FrameError("truncated-ipv6")
        u = pkt.get_protocol(udp.udp)
        proto = 17 if u is not None else ip6.nxt
        return Frame(data, src, dst, ethertype, ipv6=Ipv6Info(ip6.src, ip6.dst, proto),
                     udp_src=u.src_port if u else None, udp_dst=u.dst_port if u else None)
    return Frame(data, src, dst, ethertype)


def gratuitous_arp(mac: str, ip: str) -> bytes:
    """A broadcast ARP request announcing that `ip` is at `mac` (RFC 5227 announcement),
    padded to the Ethernet minimum."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(BROADCAST, mac, 0x0806))
    pkt.add_protocol(arp_mod.arp(opcode=1, src_mac=mac, src_ip=ip,
                                 dst_mac="00:00:00:00:00:00", dst_ip=ip))
    pkt.serialize()
    return bytes(pkt.data) + bytes(ETH_PADDED - len(pkt.data))
