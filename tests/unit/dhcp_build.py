"""Frame builders and checks shared by the wlbridge.proto.dhcp / dhcp_relay unit tests
(test_dhcp.py, test_dhcp_relay.py): frames built with os-ken, checksums checked with scapy."""

from __future__ import annotations

import struct

import pytest
from wlbridge.compat import dhcp, ethernet, ipv4, packet, udp, vlan
from wlbridge.proto import dhcp as D
from wlbridge.proto.dhcp import DhcpError

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

