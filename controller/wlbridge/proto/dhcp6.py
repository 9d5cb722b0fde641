"""Pure DHCPv6 (RFC 8415) logic: parse packet-ins, find the addresses a Reply leases.

No I/O, no clock reads: frames are ``bytes``.  The headers and the option TLVs are parsed
with the framework's packet library (``compat.ipv6``, ``compat.udp``, ``compat.dhcp6``: os-ken's
``os_ken.lib.packet.dhcp6``, Ryu 4.34's ``ryu.lib.packet.dhcp6``); on top of it this module
checks what the library does not (lengths, option bounds, the nested IA_NA / IA_TA / IAADDR /
STATUS_CODE options), so arbitrary bytes raise only `Dhcp6Error`, whose ``reason`` is a short
counter label (all in `REASONS`).

Why nothing in a DHCPv6 message is rewritten for the one-MAC AP (unlike DHCPv4's ``chaddr``):
a DHCPv6 client is named by its DUID (option 1) and IAIDs, never by a hardware address field,
and the server answers to the client's IPv6 source address (its link-local), resolved by
Neighbor Discovery -- which wlbridge answers with the station MAC.  A DUID-LL/LLT does carry
the guest MAC, but only as an opaque identifier: dnsmasq keys its DHCPv6 leases on the DUID
and IAID, and takes a client MAC (for ``dhcp-host=<mac>`` matching only) from its neighbour
cache (``get_client_mac`` in rfc3315.c; "in IPv6 DHCP, the hardware address may not be
available", dnsmasq(8)).  So a guest's Solicit leaves with only its Ethernet source rewritten.

Scope: untagged frames; no IPv6 extension headers ("ipv6-ext-header"); relay messages
(Relay-forward/Relay-reply) are recognised by type only.  Of the options, CLIENTID (1),
SERVERID (2), IA_NA (3), IA_TA (4), IAADDR (5) and STATUS_CODE (13) are decoded; the others are
only bounds-checked.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from wlbridge.compat import dhcp6, ethernet, ipv6, udp
from wlbridge.model.addresses import mac_to_bytes

ETH_HLEN = 14
IPV6_HLEN = 40
UDP_HLEN = 8
MAX_FRAME = 1500 + ETH_HLEN
ETH_P_IPV6 = 0x86DD
IPPROTO_UDP = 17
CLIENT_PORT = 546
SERVER_PORT = 547  # servers and relay agents
ALL_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers

SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
RECONFIGURE, INFORMATION_REQUEST, RELAY_FORW, RELAY_REPL = range(10, 14)
MSG_NAMES = {
    1: "solicit", 2: "advertise", 3: "request", 4: "confirm", 5: "renew", 6: "rebind",
    7: "reply", 8: "release", 9: "decline", 10: "reconfigure", 11: "information-request",
    12: "relay-forw", 13: "relay-repl",
}
CLIENT_TYPES = frozenset({SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE,
                          INFORMATION_REQUEST})
SERVER_TYPES = frozenset({ADVERTISE, REPLY, RECONFIGURE})  # server -> client
RELAY_TYPES = frozenset({RELAY_FORW, RELAY_REPL})

OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_IA_NA = 3
OPT_IA_TA = 4
OPT_IAADDR = 5
OPT_STATUS_CODE = 13
STATUS_SUCCESS = 0
INFINITY = 0xFFFFFFFF
DUID_MAX = 130  # 2 octets of type + at most 128 (RFC 8415 11.1)

REASONS = frozenset({
    "truncated", "oversized", "not-ipv6", "bad-ip-version", "bad-ip-length",
    "ipv6-ext-header", "not-udp", "bad-udp-length", "not-dhcp6", "bad-message-type",
    "bad-option", "duplicate-option", "bad-duid", "bad-status", "bad-ia", "bad-iaaddr",
    "parse-error",
})


class Dhcp6Error(ValueError):
    """A frame we cannot or must not handle; ``reason`` is a stable counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class IaAddress:
    """One IAADDR: an address with its lifetimes (seconds, INFINITY = forever)."""

    address: str  # canonical (compressed, lowercase) text
    preferred: int
    valid: int
    status: int = STATUS_SUCCESS


@dataclass(frozen=True)
class IdentityAssociation:
    """One IA_NA (or IA_TA: ``temporary``, no T1/T2) with its addresses."""

    iaid: int
    t1: int
    t2: int
    status: int
    addresses: tuple[IaAddress, ...]
    temporary: bool = False


@dataclass(frozen=True)
class Dhcp6Message:
    """What the controller needs from one DHCPv6 frame (addresses as canonical text)."""

    raw: bytes = field(repr=False)
    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    sport: int
    dport: int
    msg_type: int
    xid: int | None  # None for relay messages
    client_id: bytes | None = None
    server_id: bytes | None = None
    status: int = STATUS_SUCCESS  # top-level STATUS_CODE
    ias: tuple[IdentityAssociation, ...] = ()

    @property
    def msg_name(self) -> str:
        return MSG_NAMES.get(self.msg_type, str(self.msg_type))

    @property
    def is_client_message(self) -> bool:
        return (self.msg_type in CLIENT_TYPES and self.sport == CLIENT_PORT
                and self.dport == SERVER_PORT)

    @property
    def is_server_reply(self) -> bool:
        return (self.msg_type in SERVER_TYPES and self.sport == SERVER_PORT
                and self.dport == CLIENT_PORT)


@dataclass(frozen=True)
class AddressLease:
    """What a Reply says about one address: leased for ``valid`` seconds (INFINITY: forever,
    0: no longer the client's)."""

    address: str
    valid: int
    preferred: int

    def expiry(self, now: float) -> float | None:
        return None if self.valid == INFINITY else now + self.valid

    @property
    def lease(self) -> int | None:
        return None if self.valid == INFINITY else self.valid


# --------------------------------------------------------------------------- helpers
def _os(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a packet-library parser; anything it raises becomes Dhcp6Error("parse-error")."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the library raises struct/value/index errors
        raise Dhcp6Error("parse-error", f"{type(exc).__name__}: {exc}") from None


def _options(buf: bytes, reason: str) -> list[tuple[int, bytes]]:
    """The TLVs of `buf` as (code, data), through the library's option parser; a truncated
    option or one whose length runs past `buf` raises Dhcp6Error(`reason`)."""
    if not buf:
        return []
    try:
        parsed = dhcp6.options.parser(bytes(buf))
    except Exception as exc:  # noqa: BLE001 - struct.error for lengths past the buffer
        raise Dhcp6Error(reason, f"{type(exc).__name__}: {exc}") from None
    out = [(o.code, bytes(o.data)) for o in parsed.option_list]
    if sum(4 + len(d) for _, d in out) != len(buf):  # the library's own walk, double-checked
        raise Dhcp6Error(reason, "options do not fill their container")
    return out


def _status(data: bytes) -> int:
    if len(data) < 2:
        raise Dhcp6Error("bad-status", f"length {len(data)}")
    return int(struct.unpack_from("!H", data)[0])


def _address_text(b: bytes) -> str:
    return ipaddress.IPv6Address(b).compressed


def _iaaddr(data: bytes) -> IaAddress:
    if len(data) < 24:
        raise Dhcp6Error("bad-iaaddr", f"length {len(data)}")
    preferred, valid = struct.unpack_from("!II", data, 16)
    status = STATUS_SUCCESS
    for code, value in _options(data[24:], "bad-iaaddr"):
        if code == OPT_STATUS_CODE:
            status = _status(value)
    return IaAddress(_address_text(data[:16]), preferred, valid, status)


def _ia(code: int, data: bytes) -> IdentityAssociation:
    head = 12 if code == OPT_IA_NA else 4
    if len(data) < head:
        raise Dhcp6Error("bad-ia", f"option {code} length {len(data)}")
    iaid = struct.unpack_from("!I", data)[0]
    t1, t2 = struct.unpack_from("!II", data, 4) if code == OPT_IA_NA else (0, 0)
    status, addresses = STATUS_SUCCESS, []
    for sub, value in _options(data[head:], "bad-ia"):
        if sub == OPT_IAADDR:
            addresses.append(_iaaddr(value))
        elif sub == OPT_STATUS_CODE:
            status = _status(value)
    return IdentityAssociation(iaid, t1, t2, status, tuple(addresses), code == OPT_IA_TA)


# --------------------------------------------------------------------------- parsing
def parse(data: bytes | bytearray | memoryview) -> Dhcp6Message:
    """Parse an Ethernet/IPv6/UDP/DHCPv6 frame; Dhcp6Error(reason) if malformed."""
    raw = bytes(data)
    n = len(raw)
    if n > MAX_FRAME:
        raise Dhcp6Error("oversized", str(n))
    if n < ETH_HLEN + IPV6_HLEN + UDP_HLEN:
        raise Dhcp6Error("truncated", "headers")
    eth = _os(ethernet.ethernet.parser, raw)[0]
    if eth.ethertype != ETH_P_IPV6:
        raise Dhcp6Error("not-ipv6", hex(eth.ethertype))
    if raw[ETH_HLEN] >> 4 != 6:
        raise Dhcp6Error("bad-ip-version", str(raw[ETH_HLEN] >> 4))
    if raw[ETH_HLEN + 6] != IPPROTO_UDP:  # checked before the library walks ext headers
        if raw[ETH_HLEN + 6] in (0, 43, 44, 50, 51, 60, 135, 139, 140):
            raise Dhcp6Error("ipv6-ext-header", str(raw[ETH_HLEN + 6]))
        raise Dhcp6Error("not-udp", str(raw[ETH_HLEN + 6]))
    ip = _os(ipv6.ipv6.parser, raw[ETH_HLEN:])[0]
    ip_end = ETH_HLEN + IPV6_HLEN + ip.payload_length
    if ip_end > n:
        raise Dhcp6Error("bad-ip-length", str(ip.payload_length))
    l4 = ETH_HLEN + IPV6_HLEN
    if ip_end - l4 < UDP_HLEN:
        raise Dhcp6Error("truncated", "udp")
    u = _os(udp.udp.parser, raw[l4:ip_end])[0]
    if u.total_length < UDP_HLEN or l4 + u.total_length > ip_end:
        raise Dhcp6Error("bad-udp-length", str(u.total_length))
    ports = (CLIENT_PORT, SERVER_PORT)
    if u.src_port not in ports or u.dst_port not in ports:
        raise Dhcp6Error("not-dhcp6", f"{u.src_port}->{u.dst_port}")
    body = raw[l4 + UDP_HLEN:l4 + u.total_length]
    if len(body) < 4:
        raise Dhcp6Error("truncated", "dhcpv6 header")
    msg_type = body[0]
    if msg_type not in MSG_NAMES:
        raise Dhcp6Error("bad-message-type", str(msg_type))
    common: dict[str, Any] = {
        "raw": raw, "eth_src": eth.src.lower(), "eth_dst": eth.dst.lower(),
        "ip_src": _address_text(raw[ETH_HLEN + 8:ETH_HLEN + 24]),
        "ip_dst": _address_text(raw[ETH_HLEN + 24:ETH_HLEN + 40]),
        "sport": u.src_port, "dport": u.dst_port, "msg_type": msg_type}
    if msg_type in RELAY_TYPES:
        if len(body) < 34:
            raise Dhcp6Error("truncated", "relay header")
        return Dhcp6Message(xid=None, **common)
    options = _options(body[4:], "bad-option")
    msg = _os(dhcp6.dhcp6.parser, body)[0]  # None when there are no options
    xid = int.from_bytes(body[1:4], "big")
    if msg is not None and (msg.msg_type != msg_type or msg.transaction_id != xid):
        raise Dhcp6Error("parse-error", "library disagrees on the header")
    client_id = server_id = None
    status, ias = STATUS_SUCCESS, []
    for code, value in options:
        if code in (OPT_CLIENTID, OPT_SERVERID):
            if not 2 <= len(value) <= DUID_MAX:
                raise Dhcp6Error("bad-duid", f"option {code} length {len(value)}")
            if (client_id if code == OPT_CLIENTID else server_id) is not None:
                raise Dhcp6Error("duplicate-option", str(code))
            if code == OPT_CLIENTID:
                client_id = value
            else:
                server_id = value
        elif code in (OPT_IA_NA, OPT_IA_TA):
            ias.append(_ia(code, value))
        elif code == OPT_STATUS_CODE:
            status = _status(value)
    return Dhcp6Message(xid=xid, client_id=client_id, server_id=server_id, status=status,
                        ias=tuple(ias), **common)


# --------------------------------------------------------------------------- meaning
def is_leasable(address: str) -> bool:
    """An address a server may lease to a guest: unicast, not link-local, loopback,
    unspecified, multicast, IPv4-mapped or reserved."""
    try:
        a = ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return not (a.is_multicast or a.is_link_local or a.is_loopback or a.is_unspecified
                or a.ipv4_mapped is not None or a.is_reserved)


def leases(msg: Dhcp6Message) -> tuple[list[AddressLease], list[str]]:
    """The addresses a Reply leases (or, with valid lifetime 0, takes back), and why others
    are not learned (counter labels).  Only a Reply carries leases (an Advertise offers);
    a non-success status (top level, IA or address) leases nothing under it; an IA_NA with
    T1 > T2 > 0 and an address with preferred > valid are ones the client must discard
    (RFC 8415 21.4, 21.6), so they are not learned either."""
    if msg.msg_type != REPLY:
        return [], []
    if msg.status != STATUS_SUCCESS:
        return [], [f"status-{msg.status}"]
    out, skipped = [], []
    for ia in msg.ias:
        if ia.status != STATUS_SUCCESS:
            skipped.append(f"status-{ia.status}")
            continue
        if ia.t1 and ia.t2 and ia.t1 > ia.t2:
            skipped.append("ia-times")
            continue
        for a in ia.addresses:
            if a.status != STATUS_SUCCESS:
                skipped.append(f"status-{a.status}")
            elif a.preferred > a.valid:
                skipped.append("lifetimes")
            elif not is_leasable(a.address):
                skipped.append("address")
            else:
                out.append(AddressLease(a.address, a.valid, a.preferred))
    return out, skipped


def given_back(msg: Dhcp6Message) -> list[str]:
    """Addresses a client's Release or Decline gives back."""
    if msg.msg_type not in (RELEASE, DECLINE):
        return []
    return sorted({a.address for ia in msg.ias for a in ia.addresses})


def duid_mac(duid: bytes | None) -> str | None:
    """The Ethernet address inside a DUID-LLT (1) or DUID-LL (3), if it has one."""
    if duid is None or len(duid) < 4:
        return None
    kind, hwtype = struct.unpack_from("!HH", duid)
    lladdr = duid[8:] if kind == 1 else duid[4:] if kind == 3 else b""
    if hwtype != 1 or len(lladdr) != 6:
        return None
    return ":".join(f"{b:02x}" for b in lladdr)


def link_local_of(mac: str) -> str:
    """The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A)."""
    b = bytearray(mac_to_bytes(mac))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return _address_text(b"\xfe\x80" + bytes(6) + iid)


def set_eth_src(raw: bytes, mac: str) -> bytes:
    return raw[:6] + mac_to_bytes(mac) + raw[12:]


def set_eth_dst(raw: bytes, mac: str) -> bytes:
    return mac_to_bytes(mac) + raw[6:]
