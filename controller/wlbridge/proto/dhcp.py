"""Pure DHCP logic: parse packet-ins, set the broadcast flag, deliver replies, learn leases.

No I/O, no clock reads, no controller runtime: frames are ``bytes`` and time is
passed in.  Parsing goes through os-ken's packet library (via `wlbridge.compat`);
on top of it this module checks what os-ken does not (lengths, option bounds,
header sanity), so arbitrary bytes raise only `DhcpError`, whose ``reason`` is a
short stable string meant as a counter label (all of them are in `REASONS`).

Two strategies get a guest a lease through an AP that passes only the station MAC:

``broadcast`` (default)
    `set_broadcast_flag` on the guest's client messages; the server then
    broadcasts its replies, which the AP passes, and `reply_for_guest` picks the
    guest by ``chaddr`` (which stays the guest's MAC, so the server keeps a lease
    per guest).  dnsmasq, ISC dhcpd and Kea honour the flag.  The Ethernet source
    is rewritten to the station MAC by the switch (or `rewrite_eth_src`).
``client-id`` (`wlbridge.policy.dhcp_relay.ClientIdRelay`)
    For servers that ignore the flag (some AP/router built-in servers) or
    rate-limit/filter per ``chaddr``: ``chaddr`` becomes the station MAC, a client
    identifier (option 61: type 1 + guest MAC) keeps the leases apart, replies are
    mapped back by ``xid``.  Needs a server that keys leases on option 61 (RFC
    2131 4.2; dnsmasq, ISC dhcpd, Kea and most routers do); one that keys on
    ``chaddr`` alone would hand every guest the host's address.

Scope and choices:

* One 802.1Q tag is accepted (and kept); stacked tags (0x88a8/0x9100 or two 0x8100)
  are rejected ("vlan-stacked").  Frames larger than 1514 bytes (1518 tagged) are
  "oversized".
* IPv4 options are accepted; fragments are rejected.  Bytes after the IPv4 total
  length (Ethernet padding) are ignored and kept.
* DHCP options: pad anywhere, END optional when the options fill the message
  exactly, anything after END ignored.  Repeated options are concatenated (RFC
  3396).  Option overload (52) is not followed: options in sname/file are ignored.
* sname/file are not decoded (os-ken decodes them as ASCII and fails otherwise).
* Checksums are patched incrementally (RFC 1624): a wrong checksum stays exactly
  as wrong, a zero UDP checksum ("none") stays zero; `repair_udp_checksum` corrects a
  reply's wrong one before it goes to a guest.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from wlbridge.compat import dhcp, ethernet, ipv4, udp, vlan
from wlbridge.model.addresses import is_unicast_mac, mac_to_bytes

ETH_HLEN = 14
VLAN_HLEN = 4
MAX_FRAME = 1500 + ETH_HLEN
ETH_P_IP = 0x0800
ETH_P_8021Q = 0x8100
_STACKED_TPIDS = (0x88A8, 0x9100, ETH_P_8021Q)
IPPROTO_UDP = 17
SERVER_PORT = 67
CLIENT_PORT = 68

BOOTREQUEST = 1
BOOTREPLY = 2
BOOTP_FIXED_LEN = 236  # op .. file
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # 99.130.83.99
OPTIONS_OFFSET = BOOTP_FIXED_LEN + len(MAGIC_COOKIE)
FLAGS_OFFSET = 10  # within the BOOTP message
CHADDR_OFFSET = 28
BROADCAST_FLAG = 0x8000
INFINITE_LEASE = 0xFFFFFFFF

OPT_PAD = 0
OPT_END = 255
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_CLIENT_ID = 61

MSG_NAMES = {
    1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak",
    7: "release", 8: "inform", 9: "forcerenew", 10: "leasequery", 11: "leaseunassigned",
    12: "leaseunknown", 13: "leaseactive", 14: "bulkleasequery", 15: "leasequerydone",
    16: "activeleasequery", 17: "leasequerystatus", 18: "tls",
}
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
_CLIENT_TYPES = frozenset({DISCOVER, REQUEST, DECLINE, RELEASE, INFORM})
_SERVER_TYPES = frozenset({OFFER, ACK, NAK})

REASONS = frozenset({
    # parse()
    "truncated", "oversized", "not-ipv4", "vlan-stacked", "bad-ip-version", "bad-ihl",
    "bad-ip-length", "fragment", "not-udp", "bad-udp-length", "not-dhcp", "bad-op",
    "bad-htype", "bad-hlen", "bad-magic", "bad-option-length", "bad-option-value",
    "no-message-type", "bad-message-type", "parse-error",
    # operations on a parsed frame
    "wrong-direction", "bad-chaddr", "bad-yiaddr", "bad-ciaddr", "no-requested-ip",
    "bad-requested-ip", "no-lease-time", "chaddr-mismatch", "xid-collision",
})


class DhcpError(ValueError):
    """A frame we cannot or must not handle; ``reason`` is a stable counter label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class DhcpFrame:
    """What the controller needs from one DHCP frame (addresses as lowercase text).

    The ``*_offset``/``*_end`` fields are byte offsets into ``raw`` used by the
    rewriting helpers.
    """

    raw: bytes = field(repr=False)
    eth_dst: str
    eth_src: str
    vlan_id: int | None
    ip_src: str
    ip_dst: str
    sport: int
    dport: int
    udp_csum: int
    op: int
    xid: int
    flags: int
    ciaddr: str
    yiaddr: str
    giaddr: str
    chaddr: str
    msg_type: int
    requested_ip: str | None
    server_id: str | None
    lease_time: int | None
    client_id: bytes | None
    l4_offset: int  # UDP header
    bootp_offset: int  # BOOTP message (UDP payload)
    options_end: int  # the END option, or the end of the options when there is none
    bootp_end: int  # end of the UDP payload

    @property
    def msg_name(self) -> str:
        return MSG_NAMES.get(self.msg_type, str(self.msg_type))

    @property
    def broadcast(self) -> bool:
        """The BOOTP broadcast flag is set."""
        return bool(self.flags & BROADCAST_FLAG)

    @property
    def is_client_message(self) -> bool:
        """A client -> server message (BOOTREQUEST, UDP 68 -> 67)."""
        return self.op == BOOTREQUEST and self.sport == CLIENT_PORT and self.dport == SERVER_PORT

    @property
    def is_server_reply(self) -> bool:
        """A server -> client reply (BOOTREPLY, UDP 67 -> 68)."""
        return self.op == BOOTREPLY and self.sport == SERVER_PORT and self.dport == CLIENT_PORT

    @property
    def has_end(self) -> bool:
        return self.options_end < self.bootp_end and self.raw[self.options_end] == OPT_END


@dataclass(frozen=True)
class LeaseEvent:
    """A binding learned from DHCP: ``bind`` ``ip`` to ``mac``, or ``unbind`` it.

    ``ip`` is None only for a NAK ("drop whatever DHCP bound to ``mac``").
    ``lease_seconds`` is None for an infinite lease (and for unbinds).
    ``cause`` is the message that produced it: ack, nak, release, decline.
    """

    kind: str
    mac: str
    ip: str | None
    lease_seconds: int | None
    cause: str
    xid: int

    def expiry(self, now: float) -> float | None:
        """Absolute expiry for a bind at time ``now`` (None: never)."""
        return None if self.lease_seconds is None else now + self.lease_seconds


FrameLike = Union[bytes, bytearray, memoryview, DhcpFrame]

# --------------------------------------------------------------------------- helpers



def normalize_mac(mac: str) -> str:
    return ":".join(f"{b:02x}" for b in mac_to_bytes(mac))


def is_unicast_ipv4(ip: str | None) -> bool:
    """A plausible host address: not 0/8, loopback, multicast or 240/4 (incl. broadcast)."""
    if ip is None:
        return False
    try:
        a = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    first = int(a) >> 24
    return not (first == 0 or first == 127 or first >= 224)


def _os(fn: Callable[..., Any], *args: Any) -> Any:
    """Call an os-ken parser; anything it raises becomes DhcpError("parse-error")."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - os-ken raises struct/unicode/value errors
        raise DhcpError("parse-error", f"{type(exc).__name__}: {exc}") from None


def _ip_text(b: bytes) -> str:
    return str(ipaddress.IPv4Address(b))


def _option_value(opts: dict[int, bytes], code: int, size: int) -> bytes | None:
    v = opts.get(code)
    if v is not None and len(v) != size:
        raise DhcpError("bad-option-value", f"option {code} length {len(v)}")
    return v


# --------------------------------------------------------------------------- parsing


def parse(data: bytes | bytearray | memoryview) -> DhcpFrame:
    """Parse an Ethernet/[802.1Q]/IPv4/UDP/DHCP frame; DhcpError(reason) if malformed."""
    raw = bytes(data)
    n = len(raw)
    if n > MAX_FRAME + VLAN_HLEN:
        raise DhcpError("oversized", str(n))
    if n < ETH_HLEN:
        raise DhcpError("truncated", "ethernet")
    eth = _os(ethernet.ethernet.parser, raw)[0]
    l3, ethertype, vid = ETH_HLEN, eth.ethertype, None
    if ethertype == ETH_P_8021Q:
        if n < ETH_HLEN + VLAN_HLEN:
            raise DhcpError("truncated", "vlan")
        tag = _os(vlan.vlan.parser, raw[ETH_HLEN:])[0]
        l3, ethertype, vid = ETH_HLEN + VLAN_HLEN, tag.ethertype, tag.vid
        if ethertype in _STACKED_TPIDS:
            raise DhcpError("vlan-stacked")
    elif ethertype in _STACKED_TPIDS:
        raise DhcpError("vlan-stacked")
    if n > MAX_FRAME + (l3 - ETH_HLEN):
        raise DhcpError("oversized", str(n))
    if ethertype != ETH_P_IP:
        raise DhcpError("not-ipv4", hex(ethertype))

    if n < l3 + 20:
        raise DhcpError("truncated", "ipv4")
    ip = _os(ipv4.ipv4.parser, raw[l3:])[0]
    if ip.version != 4:
        raise DhcpError("bad-ip-version", str(ip.version))
    ihl = ip.header_length * 4
    if ihl < 20:
        raise DhcpError("bad-ihl", str(ip.header_length))
    if l3 + ihl > n:
        raise DhcpError("truncated", "ipv4 options")
    if ip.total_length < ihl:
        raise DhcpError("bad-ip-length", str(ip.total_length))
    ip_end = l3 + ip.total_length
    if ip_end > n:
        raise DhcpError("truncated", "ipv4 payload")
    if ip.offset or ip.flags & 0x1:
        raise DhcpError("fragment")
    if ip.proto != IPPROTO_UDP:
        raise DhcpError("not-udp", str(ip.proto))

    l4 = l3 + ihl
    if ip_end - l4 < 8:
        raise DhcpError("truncated", "udp")
    u = _os(udp.udp.parser, raw[l4:ip_end])[0]
    if u.total_length < 8 or l4 + u.total_length > ip_end:
        raise DhcpError("bad-udp-length", str(u.total_length))
    ports = (SERVER_PORT, CLIENT_PORT)
    if u.src_port not in ports or u.dst_port not in ports:
        raise DhcpError("not-dhcp", f"{u.src_port}->{u.dst_port}")

    bootp, bootp_end = l4 + 8, l4 + u.total_length
    if bootp_end - bootp < BOOTP_FIXED_LEN:
        raise DhcpError("truncated", "bootp")
    if bootp_end - bootp < OPTIONS_OFFSET:
        raise DhcpError("bad-magic", "no cookie")
    # sname/file blanked: os-ken decodes them as ASCII, and we never use them.
    fixed = raw[bootp:bootp + 44] + bytes(192) + raw[bootp + BOOTP_FIXED_LEN:bootp + OPTIONS_OFFSET]
    d = _os(dhcp.dhcp.parser, fixed)[0]
    if d.options is None or d.options.magic_cookie != "99.130.83.99":
        raise DhcpError("bad-magic")
    if d.op not in (BOOTREQUEST, BOOTREPLY):
        raise DhcpError("bad-op", str(d.op))
    if d.htype != 1:
        raise DhcpError("bad-htype", str(d.htype))
    if d.hlen != 6:
        raise DhcpError("bad-hlen", str(d.hlen))

    opts, end = _walk_options(raw, bootp + OPTIONS_OFFSET, bootp_end)
    mt = _option_value(opts, OPT_MESSAGE_TYPE, 1)
    if mt is None:
        raise DhcpError("no-message-type")
    msg_type = mt[0]
    if msg_type not in MSG_NAMES:
        raise DhcpError("bad-message-type", str(msg_type))
    if (msg_type in _CLIENT_TYPES and d.op != BOOTREQUEST) or (
        msg_type in _SERVER_TYPES and d.op != BOOTREPLY
    ):
        raise DhcpError("bad-op", f"op {d.op} with {MSG_NAMES[msg_type]}")
    req = _option_value(opts, OPT_REQUESTED_IP, 4)
    sid = _option_value(opts, OPT_SERVER_ID, 4)
    lease = _option_value(opts, OPT_LEASE_TIME, 4)
    cid = opts.get(OPT_CLIENT_ID)
    if cid is not None and len(cid) < 2:
        raise DhcpError("bad-option-value", "option 61 shorter than 2")

    return DhcpFrame(
        raw=raw, eth_dst=eth.dst, eth_src=eth.src, vlan_id=vid,
        ip_src=ip.src, ip_dst=ip.dst, sport=u.src_port, dport=u.dst_port, udp_csum=u.csum,
        op=d.op, xid=d.xid, flags=d.flags, ciaddr=d.ciaddr, yiaddr=d.yiaddr,
        giaddr=d.giaddr, chaddr=d.chaddr, msg_type=msg_type,
        requested_ip=None if req is None else _ip_text(req),
        server_id=None if sid is None else _ip_text(sid),
        lease_time=None if lease is None else struct.unpack("!I", lease)[0],
        client_id=cid, l4_offset=l4, bootp_offset=bootp, options_end=end, bootp_end=bootp_end,
    )


def _walk_options(raw: bytes, start: int, stop: int) -> tuple[dict[int, bytes], int]:
    """Bounds-checked walk over the options; each TLV is decoded by os-ken.

    Returns {code: value (repeats concatenated)} and the offset of END (or ``stop``).
    """
    opts: dict[int, bytes] = {}
    i = start
    while i < stop:
        tag = raw[i]
        if tag == OPT_PAD:
            i += 1
            continue
        if tag == OPT_END:
            return opts, i
        if i + 2 > stop or i + 2 + raw[i + 1] > stop:
            raise DhcpError("bad-option-length", f"option {tag}")
        opt = _os(dhcp.option.parser, raw[i:i + 2 + raw[i + 1]])
        opts[opt.tag] = opts.get(opt.tag, b"") + bytes(opt.value)
        i += 2 + opt.length
    return opts, stop


def coerce(frame: FrameLike) -> DhcpFrame:
    """A DhcpFrame as is, or parse bytes."""
    return frame if isinstance(frame, DhcpFrame) else parse(frame)


# --------------------------------------------------------------------------- byte patches


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum_update(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3 over even-length, word-aligned ``old``->``new``; UDP rules:
    0 (no checksum) stays 0 and a result of 0 is sent as 0xffff."""
    if csum == 0:
        return 0
    s = ~csum & 0xFFFF
    for (m,) in struct.iter_unpack("!H", old):
        s += ~m & 0xFFFF
    for (m,) in struct.iter_unpack("!H", new):
        s += m
    return (~_fold(s) & 0xFFFF) or 0xFFFF


def patch_udp_payload(frame: DhcpFrame, pos: int, new: bytes) -> bytearray:
    """Copy of the frame with ``new`` at absolute ``pos`` (inside the UDP datagram),
    UDP checksum updated incrementally; the IPv4 header is not touched."""
    if not (frame.bootp_offset <= pos and pos + len(new) <= frame.bootp_end):
        raise ValueError("patch outside the UDP payload")
    buf = bytearray(frame.raw)
    l4 = frame.l4_offset
    a = pos - ((pos - l4) & 1)
    b = pos + len(new)
    b += (b - l4) & 1
    pad = b"\0" if b > frame.bootp_end else b""  # odd-length datagram: checksum pads a zero
    old = bytes(buf[a:b]) + pad
    buf[pos:pos + len(new)] = new
    csum = csum_update(frame.udp_csum, old, bytes(buf[a:b]) + pad)
    struct.pack_into("!H", buf, l4 + 6, csum)
    return buf


def udp_checksum(frame: DhcpFrame) -> int:
    """The UDP checksum the datagram should carry (pseudo-header included; 0 sent as
    0xffff)."""
    l4, end = frame.l4_offset, frame.bootp_end
    datagram = bytearray(frame.raw[l4:end])
    datagram[6:8] = b"\0\0"
    if len(datagram) & 1:
        datagram += b"\0"
    pseudo = (ipaddress.IPv4Address(frame.ip_src).packed + ipaddress.IPv4Address(frame.ip_dst).packed
              + struct.pack("!BBH", 0, 17, end - l4))
    s = sum(m for (m,) in struct.iter_unpack("!H", pseudo + datagram))
    return (~_fold(s) & 0xFFFF) or 0xFFFF


def repair_udp_checksum(frame: DhcpFrame) -> bytes | None:
    """The frame with its UDP checksum corrected, or None when it is right (or 0: none).
    A reply an AP copied from its bridge before the sender's checksum offload filled the
    checksum in (hostapd's DHCP multicast-to-unicast conversion) carries a wrong one,
    which the guest's kernel drops; on 802.11 the frame itself is integrity-protected, so
    the wrong checksum is the sender's, never damage."""
    if frame.udp_csum == 0:
        return None
    right = udp_checksum(frame)
    if right == frame.udp_csum:
        return None
    buf = bytearray(frame.raw)
    struct.pack_into("!H", buf, frame.l4_offset + 6, right)
    return bytes(buf)


def set_eth_dst(frame: bytes | bytearray, mac: str) -> bytes:
    """Frame with the Ethernet destination set to ``mac`` (no checksum involved)."""
    if len(frame) < ETH_HLEN:
        raise DhcpError("truncated", "ethernet")
    return mac_to_bytes(mac) + bytes(frame[6:])


def rewrite_eth_src(frame: bytes | bytearray, mac: str) -> bytes:
    """Frame with the Ethernet source set to ``mac`` (e.g. the station MAC)."""
    if len(frame) < ETH_HLEN:
        raise DhcpError("truncated", "ethernet")
    return bytes(frame[:6]) + mac_to_bytes(mac) + bytes(frame[12:])


# --------------------------------------------------------------------------- broadcast strategy


def set_broadcast_flag(frame: FrameLike) -> bytes:
    """Client message with the BOOTP broadcast flag set, all else byte-identical
    (UDP checksum patched incrementally, zero stays zero)."""
    f = coerce(frame)
    if not f.is_client_message:
        raise DhcpError("wrong-direction", "not a client message")
    if f.broadcast:
        return f.raw
    pos = f.bootp_offset + FLAGS_OFFSET
    return bytes(patch_udp_payload(f, pos, struct.pack("!H", f.flags | BROADCAST_FLAG)))


def reply_chaddr(reply: FrameLike) -> str:
    """The client MAC a server reply is for (validated unicast)."""
    f = coerce(reply)
    if not f.is_server_reply:
        raise DhcpError("wrong-direction", "not a server reply")
    if not is_unicast_mac(f.chaddr):
        raise DhcpError("bad-chaddr", f.chaddr)
    return f.chaddr


def reply_for_guest(reply: FrameLike, station_mac: str) -> tuple[str, bytes] | None:
    """(guest MAC, frame with eth dst = guest MAC) for a server reply, or None when
    it is for the host itself (chaddr == station MAC: deliver unchanged)."""
    f = coerce(reply)
    mac = reply_chaddr(f)
    if mac == normalize_mac(station_mac):
        return None
    return mac, set_eth_dst(f.raw, mac)


# --------------------------------------------------------------------------- lease learning


def lease_event(frame: FrameLike) -> LeaseEvent | None:
    """Binding change carried by a frame: ACK -> bind yiaddr to chaddr, NAK -> unbind
    chaddr's DHCP binding (ip None), RELEASE -> unbind ciaddr, DECLINE -> unbind the
    requested IP (option 50).  None for other messages and for an ACK to INFORM
    (yiaddr 0.0.0.0, no lease time).  In the client-id strategy call it on the frame
    returned by `ClientIdRelay.inbound` (chaddr restored)."""
    f = coerce(frame)
    mt = f.msg_type
    if mt not in (ACK, NAK, RELEASE, DECLINE):
        return None
    if not is_unicast_mac(f.chaddr):
        raise DhcpError("bad-chaddr", f.chaddr)
    if mt == ACK:
        if f.yiaddr == "0.0.0.0" and f.lease_time is None:
            return None  # DHCPINFORM answer: configuration only
        if not is_unicast_ipv4(f.yiaddr):
            raise DhcpError("bad-yiaddr", f.yiaddr)
        if f.lease_time is None:
            raise DhcpError("no-lease-time")
        lease = None if f.lease_time == INFINITE_LEASE else f.lease_time
        return LeaseEvent("bind", f.chaddr, f.yiaddr, lease, "ack", f.xid)
    if mt == NAK:
        return LeaseEvent("unbind", f.chaddr, None, None, "nak", f.xid)
    if mt == RELEASE:
        if not is_unicast_ipv4(f.ciaddr):
            raise DhcpError("bad-ciaddr", f.ciaddr)
        return LeaseEvent("unbind", f.chaddr, f.ciaddr, None, "release", f.xid)
    if f.requested_ip is None:
        raise DhcpError("no-requested-ip")
    if not is_unicast_ipv4(f.requested_ip):
        raise DhcpError("bad-requested-ip", f.requested_ip)
    return LeaseEvent("unbind", f.chaddr, f.requested_ip, None, "decline", f.xid)
