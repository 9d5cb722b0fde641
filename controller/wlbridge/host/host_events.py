"""The host's addresses and the uplink's link state, from netlink events (no polling).

`HostWatcher` subscribes to rtnetlink's link and IPv4/IPv6 address groups on one socket and
sleeps in ``recv`` until the kernel reports something.  It tells the app shell

* the IPv4 addresses on the bridge's internal port (the host's own, with their prefix
  length), whenever they change;
* each change of the uplink interface (`link_change`): removed, (re)appeared under a new
  interface index (a driver reload), carrier lost or back (reassociation, roaming).

Queries (the bridge's addresses after an address event) go through a second netlink socket
opened once, never one per check.  The decisions (`link_change`, `link_state`) are pure.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger("wlbridge.app")

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
SO_ATTACH_FILTER = 26
RTM_NEWLINK = 16
IFLA_IFNAME = 3
ALL_CHANGED = 0xFFFFFFFF    # ifi_change of the RTM_NEWLINK announcing a new interface
DUMP_TRIES = 5              # a dump the kernel interrupted (interfaces changing meanwhile)

REMOVED, APPEARED, RECREATED = "removed", "appeared", "recreated"
CARRIER_DOWN, CARRIER_UP = "carrier-down", "carrier-up"


@dataclass(frozen=True)
class LinkState:
    """What matters of an interface: its index, whether it is up with carrier, its MAC."""

    index: int
    up: bool
    carrier: bool
    mac: str | None


def link_state(msg: Any) -> LinkState:
    """A `LinkState` from an RTM_NEWLINK message."""
    flags = msg["flags"]
    mac = msg.get_attr("IFLA_ADDRESS")
    return LinkState(msg["index"], bool(flags & IFF_UP),
                     bool(flags & IFF_UP and flags & IFF_LOWER_UP), mac.lower() if mac else None)


def link_change(old: LinkState | None, new: LinkState | None) -> str | None:
    """What happened to an interface between two states (None: nothing that matters)."""
    if new is None:
        return None if old is None else REMOVED
    if old is None:
        return APPEARED
    if new.index != old.index:
        return RECREATED
    if old.carrier and not new.carrier:
        return CARRIER_DOWN
    if new.carrier and not old.carrier:
        return CARRIER_UP
    return None


def _swap32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


def _name_words(name: str) -> list[int]:
    """`name` as the kernel puts it in IFLA_IFNAME (NUL-terminated, zero-padded to 4 bytes),
    in 4-byte words as BPF loads them (network order)."""
    raw = name.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    return [int.from_bytes(raw[i:i + 4], "big") for i in range(0, len(raw), 4)]


def event_filter(indexes: tuple[int, ...],
                 names: tuple[str, ...] = ()) -> list[tuple[int, int, int, int]]:
    """A classic BPF program (code, jt, jf, k) for the events socket: only messages about
    interfaces `indexes` (link and address messages both carry the index at byte 20), and
    new interfaces (RTM_NEWLINK with all fields changed: the uplink may come back under a new
    index) named one of `names` -- the kernel puts IFLA_IFNAME first in a link message, at
    byte 32 (a new interface whose first attribute is another one is let through).  Without
    `names`, every new interface.  A busy host (containers, VMs, other bridges coming and
    going) then wakes the controller only for what concerns it.  Loads read network byte
    order; netlink is host order (little-endian here), hence the swapped constants."""
    ld_h, ld_w, jeq, ret = 0x28, 0x20, 0x15, 0x06
    a, b = (tuple(indexes) + (0, 0))[:2]
    accept, drop = (ret, 0, 0, 0xFFFFFFFF), (ret, 0, 0, 0)
    by_index = [(ld_w, 0, 0, 20), (jeq, 1, 0, _swap32(a)), (jeq, 0, 1, _swap32(b)),
                accept, drop]
    if names:
        by_name = [(ld_h, 0, 0, 34), (jeq, 1, 0, IFLA_IFNAME << 8), accept]
        for name in names:
            words = _name_words(name)
            for i, word in enumerate(words):   # a mismatch skips to the next name
                left = len(words) - 1 - i
                by_name += [(ld_w, 0, 0, 36 + 4 * i), (jeq, 0, 2 * left + 1, word)]
            by_name.append(accept)
        by_name.append(drop)
    else:
        by_name = [accept]
    return [(ld_h, 0, 0, 4), (jeq, 0, 2, RTM_NEWLINK << 8),
            (ld_w, 0, 0, 28), (jeq, len(by_index), 0, ALL_CHANGED),
            *by_index, *by_name]


def attach_filter(fd: int, program: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program to the socket `fd` (SO_ATTACH_FILTER)."""
    import ctypes
    import struct

    insns = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    finally:
        sock.close()


class HostWatcher:
    """Netlink events for one bridge and its uplink (see the module docstring).  `run` is the
    loop (a thread or green thread of its own); the callbacks run on it and must not block
    long.  `stop` ends it."""

    def __init__(self, bridge: str, uplink: str, *,
                 on_addresses: Callable[[list[str]], None],
                 on_uplink: Callable[[str, LinkState | None], None],
                 iproute: Callable[[], Any] | None = None) -> None:
        self.bridge = bridge
        self.uplink = uplink
        self._on_addresses = on_addresses
        self._on_uplink = on_uplink
        self._iproute = iproute or _iproute
        self._events: Any = None
        self._query: Any = None
        self._addresses: list[str] | None = None
        self._bridge_index: int | None = None
        self.uplink_state: LinkState | None = None
        self._filtered: tuple[int, ...] | None = None
        self.stopped = False

    def run(self) -> None:
        try:
            self._events = self._iproute()
            self._events.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
            self.begin(self._iproute())
            while not self.stopped:
                self.handle(self._events.get())
        except Exception:
            if not self.stopped:
                LOG.exception("host netlink events stopped: host address and uplink changes "
                              "are no longer followed")
        finally:
            self._close()

    def begin(self, query: Any) -> None:
        """Read the state before the first event through `query` (a netlink socket for
        requests: ``get_links``, ``get_addr``), kept for later requests."""
        self._query = query
        links = {m.get_attr("IFLA_IFNAME"): m for m in _dump(self._query.get_links)}
        up = links.get(self.uplink)
        self.uplink_state = link_state(up) if up is not None else None
        br = links.get(self.bridge)
        self._bridge_index = br["index"] if br is not None else None
        self._refresh_addresses()
        self._refilter()

    def handle(self, msgs: list) -> None:
        """Apply a batch of netlink messages (also for tests, with a fake query socket)."""
        addresses_changed = False
        before = self._indexes()
        for msg in msgs:
            event = msg.get("event")
            if event in ("RTM_NEWLINK", "RTM_DELLINK"):
                name = msg.get_attr("IFLA_IFNAME")
                if name == self.bridge:
                    self._bridge_index = msg["index"] if event == "RTM_NEWLINK" else None
                    addresses_changed = True
                elif name == self.uplink:
                    self._uplink(link_state(msg) if event == "RTM_NEWLINK" else None)
            elif (event in ("RTM_NEWADDR", "RTM_DELADDR")
                  and msg["family"] in (socket.AF_INET, socket.AF_INET6)
                  and msg["index"] == self._bridge_index):
                addresses_changed = True
        if self._indexes() != before:
            # messages queued before the filter follows the new index were dropped: read
            # the uplink again (it may have come up meanwhile) and the bridge's addresses
            self._refilter()
            self._reread_uplink()
            addresses_changed = True
        if addresses_changed:
            self._refresh_addresses()

    def _reread_uplink(self) -> None:
        if self.uplink_state is None or self._query is None:
            return
        try:
            found = self._query.get_links(self.uplink_state.index)
        except Exception:  # noqa: BLE001 - gone again: its deletion is on its way
            return
        if found:
            self._uplink(link_state(found[0]))

    def _indexes(self) -> tuple[int, ...]:
        up = self.uplink_state.index if self.uplink_state is not None else 0
        return (self._bridge_index or 0, up)

    def _refilter(self) -> None:
        """Let only this bridge's and uplink's messages wake us (see `event_filter`)."""
        indexes = self._indexes()
        if indexes == self._filtered or self._events is None or sys.byteorder != "little":
            return
        try:
            attach_filter(self._events.fileno(),
                          event_filter(indexes, (self.bridge, self.uplink)))
            self._filtered = indexes
        except (OSError, AttributeError, ValueError) as exc:
            LOG.debug("no netlink event filter (%s): every link event wakes the controller",
                      exc)
            self._filtered = indexes

    def _uplink(self, new: LinkState | None) -> None:
        old, self.uplink_state = self.uplink_state, new
        change = link_change(old, new)
        if change is not None:
            self._on_uplink(change, new)

    def _refresh_addresses(self) -> None:
        ips: list[str] = []
        if self._bridge_index is not None:  # IPv4 and IPv6 (a guest may claim neither)
            ips = sorted({_with_prefix(a)
                          for family in (socket.AF_INET, socket.AF_INET6)
                          for a in _dump(self._query.get_addr, index=self._bridge_index,
                                         family=family)})
        if ips != self._addresses:
            self._addresses = ips
            self._on_addresses(ips)

    def stop(self) -> None:
        self.stopped = True
        self._close()

    def _close(self) -> None:
        for sock in (self._events, self._query):
            if sock is not None:
                try:
                    sock.close()
                except Exception:
                    LOG.debug("closing a netlink socket", exc_info=True)
        self._events = self._query = None


def _with_prefix(msg: Any) -> str:
    """An address message as ``address/prefixlen`` (bare when the length is missing): the
    core restores its subnet's directed broadcast (`Core.host_addresses`)."""
    address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    try:
        prefixlen = msg["prefixlen"]
    except (KeyError, TypeError):
        return address
    return f"{address}/{prefixlen}" if isinstance(prefixlen, int) else address
def _dump(request: Callable[..., Any], *args: Any, **kwargs: Any) -> list:
    """A netlink dump, asked again when the kernel says it was interrupted (interfaces or
    addresses changing meanwhile: seen on a machine where other test runs create and delete
    interfaces; it ended the watcher: "host netlink events stopped").  The last
    interruption is raised."""
    from wlbridge.host.pyroute2_lazy import NetlinkDumpInterrupted

    for attempt in range(DUMP_TRIES):
        try:
            return list(request(*args, **kwargs))
        except NetlinkDumpInterrupted:
            if attempt == DUMP_TRIES - 1:
                raise
    return []      # not reached


def _iproute() -> Any:
    from wlbridge.host.pyroute2_lazy import IPRoute

    return IPRoute()
