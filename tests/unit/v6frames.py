"""IPv6 and Neighbor Discovery frames for the unit tests, built with scapy, as header dicts
for the simulated switch (`ofsim.from_bytes`: the OXM fields OVS would extract, the bytes
kept)."""

from __future__ import annotations

import socket
from typing import Any

from ofsim import from_bytes
from scapy.layers.inet6 import (
    UDP,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_getnsma,
    in6_getnsmac,
)
from scapy.layers.l2 import Ether

ALL_NODES, ALL_ROUTERS = "ff02::1", "ff02::2"
ALL_NODES_MAC, ALL_ROUTERS_MAC = "33:33:00:00:00:01", "33:33:00:00:00:02"
PREFIX = "2001:db8:1::"
ROUTER6_LL = "fe80::10:1"


def ll(port: int) -> str:
    """A guest's link-local address."""
    return f"fe80::{port}"


def gua(port: int, n: int = 1) -> str:
    """A guest's global address."""
    return f"2001:db8:1::{port}:{n}"


def solicited(addr: str) -> tuple[str, str]:
    """(solicited-node group, its MAC) of an address."""
    group = in6_getnsma(socket.inet_pton(socket.AF_INET6, addr))
    return socket.inet_ntop(socket.AF_INET6, group), in6_getnsmac(group)


def headers(frame: Any) -> dict:
    return from_bytes(bytes(frame))


def ns(src_mac: str, src: str, target: str, *, eth_dst: str | None = None,
       dst: str | None = None, sll: str | None = "same", hlim: int = 255) -> dict:
    """A Neighbor Solicitation (to the target's solicited-node group unless `dst`)."""
    group, group_mac = solicited(target)
    pkt = (Ether(src=src_mac, dst=eth_dst or group_mac)
           / IPv6(src=src, dst=dst or group, hlim=hlim) / ICMPv6ND_NS(tgt=target))
    if sll is not None and src != "::":
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=src_mac if sll == "same" else sll)
    return headers(pkt)


def dad(src_mac: str, target: str) -> dict:
    """Duplicate address detection: an NS from ::, no option."""
    return ns(src_mac, "::", target, sll=None)


def na(src_mac: str, src: str, target: str, eth_dst: str, dst: str, *,
       tll: str | None = "same", solicited_flag: bool = True) -> dict:
    pkt = (Ether(src=src_mac, dst=eth_dst) / IPv6(src=src, dst=dst, hlim=255)
           / ICMPv6ND_NA(tgt=target, S=int(solicited_flag), O=1, R=0))
    if tll is not None:
        pkt = pkt / ICMPv6NDOptDstLLAddr(lladdr=src_mac if tll == "same" else tll)
    return headers(pkt)


def rs(src_mac: str, src: str, *, sll: bool = True) -> dict:
    pkt = (Ether(src=src_mac, dst=ALL_ROUTERS_MAC) / IPv6(src=src, dst=ALL_ROUTERS, hlim=255)
           / ICMPv6ND_RS())
    if sll:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
    return headers(pkt)


def ra(src_mac: str, src: str, eth_dst: str = ALL_NODES_MAC, dst: str = ALL_NODES) -> dict:
    return headers(Ether(src=src_mac, dst=eth_dst) / IPv6(src=src, dst=dst, hlim=255)
                   / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=src_mac))


def redirect(src_mac: str, src: str, eth_dst: str, dst: str) -> dict:
    return headers(Ether(src=src_mac, dst=eth_dst) / IPv6(src=src, dst=dst, hlim=255)
                   / ICMPv6ND_Redirect(tgt="fe80::99", dst="2001:db8:9::1"))


def udp6(src_mac: str, eth_dst: str, src: str, dst: str, payload: bytes = b"hello") -> dict:
    return headers(Ether(src=src_mac, dst=eth_dst) / IPv6(src=src, dst=dst)
                   / UDP(sport=40000, dport=7) / payload)


def echo6(src_mac: str, eth_dst: str, src: str, dst: str) -> dict:
    return headers(Ether(src=src_mac, dst=eth_dst) / IPv6(src=src, dst=dst)
                   / ICMPv6EchoRequest(id=1, seq=1))


def options(h: dict) -> dict[str, str]:
    """The link-layer options of the ND frame of delivered headers `h`, read from its bytes
    (rebuilt by the simulator if a flow changed it), after checking its ICMPv6 checksum."""
    from ofsim import data_of

    frame = Ether(data_of(h))
    icmp = frame[IPv6].payload
    sent = icmp.cksum
    del icmp.cksum
    assert Ether(bytes(frame))[IPv6].payload.cksum == sent, "bad ICMPv6 checksum"
    found = {}
    for kind, name in ((ICMPv6NDOptSrcLLAddr, "sll"), (ICMPv6NDOptDstLLAddr, "tll")):
        if frame.haslayer(kind):
            found[name] = frame[kind].lladdr
    return found
