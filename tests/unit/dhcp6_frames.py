"""DHCPv6 frames for the unit tests, built with scapy's DHCP6 layers (an implementation
independent of the controller's parser), and the header fields the switch matches on."""

from __future__ import annotations

import contextlib
import struct

from ofsim import from_bytes, normalise
from scapy.layers.dhcp6 import (
    DUID_LL,
    DUID_LLT,
    DHCP6_Advertise,
    DHCP6_Decline,
    DHCP6_InfoRequest,
    DHCP6_Reconf,
    DHCP6_RelayReply,
    DHCP6_Release,
    DHCP6_Renew,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptIA_NA,
    DHCP6OptIA_TA,
    DHCP6OptIAAddress,
    DHCP6OptServerId,
    DHCP6OptStatusCode,
)
from scapy.layers.inet6 import UDP, IPv6
from scapy.layers.l2 import Ether

ALL_SERVERS_MAC = "33:33:00:01:00:02"
ALL_SERVERS = "ff02::1:2"
SERVER_MAC = "02:10:00:00:00:01"
SERVER_LL = "fe80::10:ff:fe00:1"
SERVER_DUID = bytes(DUID_LL(lladdr=SERVER_MAC))


def link_local(port: int) -> str:
    return f"fe80::{port:x}:ff:fe00:{port:x}"


def leased(port: int, n: int = 0) -> str:
    return f"2001:db8::{port:x}:{0x10 + n:x}"


def duid(mac: str) -> bytes:
    return bytes(DUID_LLT(lladdr=mac, timeval=0x2A000000))


def client_msg(kind, mac: str, xid: int, *opts, src: str | None = None,
               eth_dst: str = ALL_SERVERS_MAC, dst: str = ALL_SERVERS,
               client_id: bytes | None = None, sport: int = 546, dport: int = 547) -> bytes:
    """A guest's client message (`kind`: a scapy DHCP6 message class)."""
    body = kind(trid=xid)
    body /= DHCP6OptClientId(duid=DUID_LLT(client_id or duid(mac)))
    for o in opts:
        body /= o
    return bytes(Ether(src=mac, dst=eth_dst) / IPv6(src=src or "fe80::1", dst=dst)
                 / UDP(sport=sport, dport=dport) / body)


def ia_na(*addresses: tuple[str, int, int], iaid: int = 1, t1: int = 0, t2: int = 0,
          status: int | None = None) -> DHCP6OptIA_NA:
    opts = [DHCP6OptIAAddress(addr=a, preflft=p, validlft=v) for a, p, v in addresses]
    if status is not None:
        opts.append(DHCP6OptStatusCode(statuscode=status))
    return DHCP6OptIA_NA(iaid=iaid, T1=t1, T2=t2, ianaopts=opts)


def ia_ta(*addresses: tuple[str, int, int], iaid: int = 2) -> DHCP6OptIA_TA:
    return DHCP6OptIA_TA(iaid=iaid, iataopts=[
        DHCP6OptIAAddress(addr=a, preflft=p, validlft=v) for a, p, v in addresses])


def server_msg(kind, client_mac: str, xid: int, *opts, dst: str, eth_dst: str,
               eth_src: str = SERVER_MAC, src: str = SERVER_LL, sport: int = 547,
               dport: int = 546, client_id: bytes | None = None,
               with_client_id: bool = True) -> bytes:
    """A server's message to a client (`kind`: Advertise, Reply, Reconfigure)."""
    body = kind(trid=xid) / DHCP6OptServerId(duid=DUID_LL(SERVER_DUID))
    if with_client_id:
        body /= DHCP6OptClientId(duid=DUID_LLT(client_id or duid(client_mac)))
    for o in opts:
        body /= o
    return bytes(Ether(src=eth_src, dst=eth_dst) / IPv6(src=src, dst=dst)
                 / UDP(sport=sport, dport=dport) / body)


def raw_dhcp6(eth_src: str, eth_dst: str, src: str, dst: str, payload: bytes,
              sport: int = 547, dport: int = 546) -> bytes:
    """Any UDP payload in a correct Ethernet/IPv6/UDP frame (for malformed DHCPv6)."""
    return bytes(Ether(src=eth_src, dst=eth_dst) / IPv6(src=src, dst=dst)
                 / UDP(sport=sport, dport=dport) / payload)


def opt(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def headers6(raw: bytes) -> dict:
    """`ofsim.from_bytes`, or for frames os-ken cannot parse as a whole, the Ethernet/IPv6/UDP
    fields the switch matches on, read directly."""
    with contextlib.suppress(Exception):
        h = from_bytes(raw)
        if (h.get("eth_type") != 0x86DD or "udp_src" in h or "icmpv6_type" in h
                or len(raw) < 62):
            return h
    h = {}
    if len(raw) >= 14:
        et = struct.unpack_from("!H", raw, 12)[0]
        h.update(eth_dst=_mac(raw[0:6]), eth_src=_mac(raw[6:12]), eth_type=et)
        if et == 0x86DD and len(raw) >= 54:
            import ipaddress
            h.update(ipv6_src=str(ipaddress.IPv6Address(raw[22:38])),
                     ipv6_dst=str(ipaddress.IPv6Address(raw[38:54])), ip_proto=raw[20])
            if raw[20] == 17 and len(raw) >= 62:
                sport, dport = struct.unpack_from("!HH", raw, 54)
                h.update(udp_src=sport, udp_dst=dport, payload=bytes(raw[62:]))
    h = normalise(h)
    h["data"] = bytes(raw)
    return h


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


__all__ = [
    "ALL_SERVERS",
    "ALL_SERVERS_MAC",
    "SERVER_DUID",
    "SERVER_LL",
    "SERVER_MAC",
    "DHCP6OptIA_NA",
    "DHCP6_Advertise",
    "DHCP6_Decline",
    "DHCP6_InfoRequest",
    "DHCP6_Reconf",
    "DHCP6_RelayReply",
    "DHCP6_Release",
    "DHCP6_Renew",
    "DHCP6_Reply",
    "DHCP6_Request",
    "DHCP6_Solicit",
    "client_msg",
    "duid",
    "headers6",
    "ia_na",
    "ia_ta",
    "leased",
    "link_local",
    "opt",
    "raw_dhcp6",
    "server_msg",
]
