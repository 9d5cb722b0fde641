"""Address predicates shared by the model and the protocol code (no framework imports).

One definition each, so that what the DHCP code accepts as a guest's hardware address is
what the binding table and the state file accept.
"""

from __future__ import annotations

import ipaddress
import re

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def mac_to_bytes(mac: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or with ``-``) -> 6 bytes; ValueError otherwise."""
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def is_unicast_mac(mac: str) -> bool:
    """True for a well-formed (six two-digit hex octets), non-zero, individual (not group)
    Ethernet address; False for anything else, never an exception."""
    try:
        octets = mac_to_bytes(mac)
    except ValueError:
        return False
    return not octets[0] & 1 and any(octets)


def canonical_ip6(ip: str) -> str | None:
    """RFC 5952 text of an IPv6 address (None: not one)."""
    try:
        return ipaddress.IPv6Address(ip).compressed
    except (ValueError, TypeError):
        return None


def is_guest_ip6(ip: str) -> bool:
    """An IPv6 address a guest may own: unicast (global, unique local or link-local), not
    unspecified, loopback, multicast, or an IPv4-mapped one; in canonical text."""
    try:
        addr = ipaddress.IPv6Address(ip)
    except (ValueError, TypeError):
        return False
    return addr.compressed == ip and not (
        addr.is_unspecified or addr.is_loopback or addr.is_multicast
        or addr.ipv4_mapped is not None)


IPV4_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
IPV6_MULTICAST = ipaddress.IPv6Network("ff00::/8")


def canonical_group(text: str) -> str | None:
    """`text` as a canonical multicast group address a guest may join, or None: IPv4
    224.0.0.0/4 but 224.0.0.0; IPv6 ff00::/8 of link-local or wider scope (not
    interface-local, not reserved scope 0)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 4:
        if addr not in IPV4_MULTICAST or int(addr) == int(IPV4_MULTICAST.network_address):
            return None
        return str(addr)
    if addr not in IPV6_MULTICAST:
        return None
    scope = (int(addr) >> 112) & 0xF
    if scope in (0, 1):
        return None
    return str(addr)
