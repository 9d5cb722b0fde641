"""The ``client-id`` DHCP strategy: chaddr rewritten to the station MAC, replies mapped back by xid.

For servers/APs that ignore the BOOTP broadcast flag or filter per ``chaddr`` (see
`wlbridge.proto.dhcp`).  Outbound client messages get ``chaddr`` = station MAC and, when
the guest sent none, a client identifier (option 61, type 1 + guest MAC) so the
server keeps one lease per guest.  The broadcast flag is deliberately *not* set:
the server's unicast reply goes to ``chaddr`` = the station MAC, which the AP
delivers, and a broadcast would only add load (a flag the guest set itself is kept).
Server replies are matched by ``xid`` to the guest, ``chaddr`` and the Ethernet
destination restored to the guest MAC; option 61 echoed by the server (RFC 6842)
is left in place.

The table is bounded (``max_entries`` overall, ``max_per_port`` per guest port, the
oldest going first) and entries expire ``ttl`` seconds after the guest's last
message of that transaction.  An ``xid`` in use by another guest is refused
("xid-collision") rather than risking a reply delivered to the wrong guest.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import NamedTuple

from wlbridge.compat import ethernet, ipv4, packet, udp, vlan
from wlbridge.proto.dhcp import (
    CHADDR_OFFSET,
    ETH_HLEN,
    MAX_FRAME,
    OPT_CLIENT_ID,
    OPT_END,
    DhcpError,
    DhcpFrame,
    FrameLike,
    coerce,
    mac_to_bytes,
    normalize_mac,
    patch_udp_payload,
    set_eth_dst,
)


class RelayEntry(NamedTuple):
    guest_mac: str
    port: int
    station_mac: str
    expiry: float


class RelayedReply(NamedTuple):
    """A server reply mapped back to its guest: deliver ``frame`` out of ``port``."""

    guest_mac: str
    port: int
    frame: bytes


class ClientIdRelay:
    """xid -> guest table plus the outbound/inbound frame rewrites (pure, time injected)."""

    def __init__(self, max_entries: int = 4096, ttl: float = 60.0, max_per_port: int = 256) -> None:
        if max_entries < 1 or max_per_port < 1 or ttl <= 0:
            raise ValueError("max_entries, max_per_port and ttl must be positive")
        self.max_entries = max_entries
        self.max_per_port = max_per_port
        self.ttl = ttl
        self._entries: OrderedDict[int, RelayEntry] = OrderedDict()  # oldest refresh first
        self._by_port: dict[int, OrderedDict[int, None]] = {}
        self.evicted = 0  # entries dropped to make room (not expiry)

    # ---------------------------------------------------------------- table

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, xid: int, now: float) -> RelayEntry | None:
        """The live entry for ``xid``, if any."""
        e = self._entries.get(xid)
        return e if e is not None and now < e.expiry else None

    def next_expiry(self) -> float | None:
        """When the oldest entry expires (None: the table is empty)."""
        first = next(iter(self._entries.values()), None)
        return first.expiry if first is not None else None

    def expire(self, now: float) -> int:
        """Drop expired entries; returns how many."""
        dead = [x for x, e in self._entries.items() if now >= e.expiry]
        for x in dead:
            self._remove(x)
        return len(dead)

    def forget_port(self, port: int) -> int:
        """Drop all transactions of a guest port (port removed); returns how many."""
        xids = list(self._by_port.get(port, ()))
        for x in xids:
            self._remove(x)
        return len(xids)

    def record(self, xid: int, guest_mac: str, port: int, station_mac: str, now: float) -> None:
        """Remember (or refresh) a transaction; DhcpError("xid-collision") if another
        guest's live transaction uses ``xid``."""
        guest_mac, station_mac = normalize_mac(guest_mac), normalize_mac(station_mac)
        old = self.lookup(xid, now)
        if old is not None and old.guest_mac != guest_mac:
            raise DhcpError("xid-collision", f"{xid:#010x}")
        if xid in self._entries:
            self._remove(xid)
        self._expire_head(now)
        mine = self._by_port.get(port)
        if mine is not None and len(mine) >= self.max_per_port:
            self._remove(next(iter(mine)))
            self.evicted += 1
        if len(self._entries) >= self.max_entries:
            self._remove(next(iter(self._entries)))
            self.evicted += 1
        self._entries[xid] = RelayEntry(guest_mac, port, station_mac, now + self.ttl)
        self._by_port.setdefault(port, OrderedDict())[xid] = None

    def _remove(self, xid: int) -> None:
        e = self._entries.pop(xid)
        mine = self._by_port[e.port]
        del mine[xid]
        if not mine:
            del self._by_port[e.port]

    def _expire_head(self, now: float) -> None:
        # Constant ttl: insertion order is expiry order (while time does not go back).
        while self._entries:
            xid, e = next(iter(self._entries.items()))
            if now < e.expiry:
                break
            self._remove(xid)

    # ---------------------------------------------------------------- frames

    def outbound(
        self, frame: FrameLike, guest_mac: str, port: int, station_mac: str, now: float
    ) -> bytes:
        """Guest client message -> frame for the uplink: eth src and chaddr = station
        MAC, option 61 (1 + guest MAC) added when absent, lengths and checksums
        recomputed (a zero UDP checksum stays zero); records the xid."""
        f = coerce(frame)
        if not f.is_client_message:
            raise DhcpError("wrong-direction", "not a client message")
        guest, station = normalize_mac(guest_mac), normalize_mac(station_mac)
        if f.chaddr != guest:
            raise DhcpError("chaddr-mismatch", f"{f.chaddr} from {guest}")
        out = _rebuild(f, station, None if f.client_id is not None else b"\x01" + mac_to_bytes(guest))
        self.record(f.xid, guest, port, station, now)  # may refuse: xid-collision
        return out

    def inbound(self, reply: FrameLike, now: float) -> RelayedReply | None:
        """Server reply -> (guest MAC, port, frame with chaddr and eth dst = guest MAC,
        UDP checksum patched), or None when the xid is not a live transaction of ours."""
        f = coerce(reply)
        if not f.is_server_reply:
            raise DhcpError("wrong-direction", "not a server reply")
        e = self.lookup(f.xid, now)
        if e is None or f.chaddr != e.station_mac:
            return None
        pos = f.bootp_offset + CHADDR_OFFSET
        buf = patch_udp_payload(f, pos, mac_to_bytes(e.guest_mac))
        return RelayedReply(e.guest_mac, e.port, set_eth_dst(buf, e.guest_mac))


def _rebuild(f: DhcpFrame, station_mac: str, client_id: bytes | None) -> bytes:
    """Re-serialise ``f`` with os-ken: chaddr = station MAC, eth src = station MAC,
    ``client_id`` (option 61 value) inserted before END when given."""
    raw = f.raw
    bootp = bytearray(raw[f.bootp_offset:f.bootp_end])
    bootp[CHADDR_OFFSET:CHADDR_OFFSET + 6] = mac_to_bytes(station_mac)
    if client_id is not None:
        opt = bytes([OPT_CLIENT_ID, len(client_id)]) + client_id
        end = f.options_end - f.bootp_offset
        if f.has_end:
            tail = bytes(bootp[end + 1:])
            if not tail.strip(b"\0"):  # absorb the insertion into trailing pad
                tail = tail[len(opt):]
            bootp = bootp[:end] + opt + bytes([OPT_END]) + tail
        else:
            bootp = bootp[:end] + opt + bytes([OPT_END])

    l3 = ETH_HLEN
    protos = []
    eth = ethernet.ethernet.parser(raw)[0]
    eth.src = station_mac
    protos.append(eth)
    if f.vlan_id is not None:
        protos.append(vlan.vlan.parser(raw[l3:])[0])
        l3 += 4
    ip = ipv4.ipv4.parser(raw[l3:])[0]
    ip.total_length = 0  # recomputed, as is the header checksum
    u = udp.udp(f.sport, f.dport, 0, 0)  # length and checksum recomputed
    size = f.l4_offset + 8 + len(bootp)
    if size > MAX_FRAME + (l3 - ETH_HLEN):
        raise DhcpError("oversized", str(size))
    pkt = packet.Packet()
    for p in (*protos, ip, u):
        pkt.add_protocol(p)
    pkt.add_protocol(bytes(bootp))
    pkt.serialize()
    out = bytearray(pkt.data)
    csum_at = f.l4_offset + 6
    if f.udp_csum == 0:
        out[csum_at:csum_at + 2] = b"\0\0"  # the guest sent no checksum: neither do we
    elif out[csum_at:csum_at + 2] == b"\0\0":
        out[csum_at:csum_at + 2] = struct.pack("!H", 0xFFFF)  # computed 0 is sent as 0xffff
    return bytes(out)
