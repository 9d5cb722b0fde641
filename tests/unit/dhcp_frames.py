"""DHCP frames for the core tests (built with os-ken's packet library) and checks on them.

Addresses follow `rig`: guests are ``mac(port)``, the LAN's DHCP server is the router
(``ROUTER`` / ``ROUTER_IP``), leases come from 10.0.0.100 up (``lease_ip(port)``).
"""

from __future__ import annotations

import contextlib
import socket
import struct

from dhcp_build import build, opt
from ofsim import data_of, from_bytes, normalise
from rig import BCAST, ROUTER, ROUTER_IP
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from wlbridge.proto import dhcp as D

ANY_IP = "0.0.0.0"
ALL_IP = "255.255.255.255"
BOOTP_AT = 14 + 20 + 8  # untagged, no IPv4 options
UDP_AT = 14 + 20


def lease_ip(port: int) -> str:
    return f"10.0.0.{100 + port}"


def ip_bytes(ip: str) -> bytes:
    return socket.inet_aton(ip)


def frame(msg_type: int, chaddr: str, *, xid: int, client: bool, eth_src: str, eth_dst: str,
          ip_src: str, ip_dst: str, flags: int = 0, ciaddr: str = ANY_IP,
          yiaddr: str = ANY_IP, extra: bytes = b"", options: bytes | None = None,
          csum: int | None = None) -> bytes:
    """An Ethernet/IPv4/UDP/DHCP frame (`dhcp_build.build`, the one builder).  ``options``
    (raw, after the magic cookie) replaces option 53 + ``extra`` + END; ``csum`` forces
    the UDP checksum field."""
    return build(msg_type, op=1 if client else 2, chaddr=chaddr, xid=xid, flags=flags,
                 ciaddr=ciaddr, yiaddr=yiaddr, extra=extra, options=options, eth_src=eth_src,
                 eth_dst=eth_dst, ip_src=ip_src, ip_dst=ip_dst, csum=csum)


# ----------------------------------------------------------------- client messages
def client_msg(msg_type: int, mac: str, xid: int, *, eth_dst: str = BCAST,
               ip_src: str = ANY_IP, ip_dst: str = ALL_IP, **kw) -> bytes:
    return frame(msg_type, kw.pop("chaddr", mac), xid=xid, client=True, eth_src=mac,
                 eth_dst=eth_dst, ip_src=ip_src, ip_dst=ip_dst, **kw)


def discover(mac: str, xid: int, **kw) -> bytes:
    return client_msg(D.DISCOVER, mac, xid, extra=kw.pop("extra", opt(55, b"\x01\x03\x06")),
                      **kw)


def request(mac: str, xid: int, ip: str, **kw) -> bytes:
    """REQUEST in SELECTING state: broadcast, requested IP and server id."""
    extra = opt(50, ip_bytes(ip)) + opt(54, ip_bytes(ROUTER_IP)) + kw.pop("extra", b"")
    return client_msg(D.REQUEST, mac, xid, extra=extra, **kw)


def renew(mac: str, xid: int, ip: str, **kw) -> bytes:
    """REQUEST in RENEWING state: unicast to the server from the leased address."""
    kw = {"eth_dst": ROUTER, "ip_dst": ROUTER_IP, **kw}
    return client_msg(D.REQUEST, mac, xid, ip_src=ip, ciaddr=ip, **kw)


def release(mac: str, xid: int, ip: str) -> bytes:
    return client_msg(D.RELEASE, mac, xid, eth_dst=ROUTER, ip_src=ip, ip_dst=ROUTER_IP,
                      ciaddr=ip, extra=opt(54, ip_bytes(ROUTER_IP)))


def decline(mac: str, xid: int, ip: str) -> bytes:
    return client_msg(D.DECLINE, mac, xid,
                      extra=opt(50, ip_bytes(ip)) + opt(54, ip_bytes(ROUTER_IP)))


# ----------------------------------------------------------------- server replies
def reply(msg_type: int, chaddr: str, xid: int, *, yiaddr: str = ANY_IP,
          lease: int | None = None, eth_dst: str = BCAST, ip_dst: str = ALL_IP,
          extra: bytes = b"", **kw) -> bytes:
    """A server reply from the router; broadcast unless ``eth_dst``/``ip_dst`` say otherwise."""
    extra = opt(54, ip_bytes(ROUTER_IP)) + extra
    if lease is not None:
        extra += opt(51, struct.pack("!I", lease)) + opt(1, ip_bytes("255.255.255.0"))
    return frame(msg_type, chaddr, xid=xid, client=False, eth_src=ROUTER, eth_dst=eth_dst,
                 ip_src=ROUTER_IP, ip_dst=ip_dst, yiaddr=yiaddr, extra=extra, **kw)


def offer(chaddr: str, xid: int, ip: str, lease: int = 3600, **kw) -> bytes:
    return reply(D.OFFER, chaddr, xid, yiaddr=ip, lease=lease, **kw)


def ack(chaddr: str, xid: int, ip: str, lease: int = 3600, **kw) -> bytes:
    return reply(D.ACK, chaddr, xid, yiaddr=ip, lease=lease, **kw)


def nak(chaddr: str, xid: int, **kw) -> bytes:
    return reply(D.NAK, chaddr, xid, **kw)


# ----------------------------------------------------------------- checks and plumbing
def parsed(headers: dict) -> D.DhcpFrame:
    """The DHCP message a delivery carried."""
    return D.parse(data_of(headers))


def udp_checksum_ok(raw: bytes) -> bool:
    """scapy recomputes the UDP checksum independently (re-parse, delete, rebuild, compare)."""
    p = Ether(raw)
    have = p[UDP].chksum
    del p[UDP].chksum
    return Ether(bytes(p))[UDP].chksum == have


def fix_udp_checksum(raw: bytes) -> bytes:
    """``raw`` with a correct UDP checksum (computed by scapy)."""
    p = Ether(raw)
    del p[UDP].chksum
    return bytes(p)


def udp_checksum(raw: bytes) -> int:
    return struct.unpack_from("!H", raw, UDP_AT + 6)[0]


def set_bytes(raw: bytes, pos: int, value: bytes) -> bytes:
    return raw[:pos] + value + raw[pos + len(value):]


def with_lengths(raw: bytes) -> bytes:
    """``raw`` with the IPv4 total length, header checksum and UDP length made consistent
    with its size (UDP checksum left as is: wrong, but the controller does not check it)."""
    buf = bytearray(raw)
    struct.pack_into("!H", buf, 14 + 2, len(buf) - 14)
    struct.pack_into("!H", buf, 14 + 10, 0)
    s = sum(w for (w,) in struct.iter_unpack("!H", bytes(buf[14:34])))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", buf, 14 + 10, ~s & 0xFFFF)
    struct.pack_into("!H", buf, UDP_AT + 4, len(buf) - UDP_AT)
    return bytes(buf)


def headers_of(raw: bytes) -> dict:
    """`ofsim.from_bytes`, or, for frames os-ken's packet library cannot parse as a whole
    (it decodes DHCP sname/file as ASCII, among others), the Ethernet/802.1Q/IPv4/UDP
    header fields the switch would match on, read directly."""
    with contextlib.suppress(Exception):  # os-ken raises many kinds on odd payloads
        return from_bytes(raw)
    h: dict = {}
    if len(raw) >= 14:
        et = struct.unpack_from("!H", raw, 12)[0]
        h.update(eth_dst=_mac(raw[0:6]), eth_src=_mac(raw[6:12]), eth_type=et)
        l3 = 14
        if et == 0x8100 and len(raw) >= 18:
            tci, et = struct.unpack_from("!HH", raw, 14)
            h.update(vlan_vid=tci & 0xFFF, vlan_pcp=tci >> 13, eth_type=et)
            l3 = 18
        if et == 0x0800 and len(raw) >= l3 + 20:
            ihl, proto = (raw[l3] & 0xF) * 4, raw[l3 + 9]
            h.update(ipv4_src=socket.inet_ntoa(raw[l3 + 12:l3 + 16]),
                     ipv4_dst=socket.inet_ntoa(raw[l3 + 16:l3 + 20]), ip_proto=proto)
            l4 = l3 + ihl
            if proto == 17 and ihl >= 20 and len(raw) >= l4 + 8:
                sport, dport = struct.unpack_from("!HH", raw, l4)
                h.update(udp_src=sport, udp_dst=dport, payload=bytes(raw[l4 + 8:]))
    h = normalise(h)
    h["data"] = bytes(raw)
    return h


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


__all__ = [
    "ack", "client_msg", "decline", "discover", "fix_udp_checksum", "frame", "headers_of", "lease_ip", "nak",
    "offer", "opt", "parsed", "release", "renew", "reply", "request", "set_bytes",
    "udp_checksum", "udp_checksum_ok", "with_lengths",
]
