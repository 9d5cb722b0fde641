"""Host addresses, routes and link flags through pyroute2 (no `ip`, no `ethtool`).

`HostNet.snapshot` reads what lives on an interface (IPv4/IPv6 addresses except
IPv6 link-local and temporary ones, main-table routes except kernel-made ones,
MAC, allmulticast, TX checksum offload) into a JSON-serialisable `SavedState`;
`HostNet.move` moves the saved addresses and routes from one interface to
another, idempotently (what is already in place is left alone), keeping
prefix length, broadcast, scope, flags, lifetimes, gateway, metric, protocol,
scope, preferred source, type, preference, expiry and metrics.

Uplink isolation (userspace datapath only): OVS's netdev datapath reads the uplink
through an AF_PACKET tap, and the kernel still receives every frame itself (duplicate
replies to the host's pings, frames for guests dropped or even routed by the host
stack).  `HostNet.isolate_uplink` adds a ``clsact`` qdisc with an ingress filter that
drops everything except what wpa_supplicant reads through its own packet sockets
(EAPOL, RSN pre-authentication, TDLS); taps run before tc ingress, so OVS still sees
every frame.  The filter is a direct-action ``cls_bpf`` classifier (a 10-instruction
eBPF program loaded with the ``bpf()`` syscall); where that is not possible, ``u32``
filters with ``gact`` ok/drop actions.  Ours are recognised by their priorities
(`ISOLATION_PRIO` and the few just below it), so `release_uplink` removes exactly
those, and the qdisc only when nothing else is left on it.

Why ``clsact`` and not the classic ``ingress`` qdisc: ovs-vswitchd owns the ingress
qdisc of its ports (ingress policing).  After every link change of a port (carrier,
flags, a Wi-Fi reconnect) it deletes the port's qdisc of kind "ingress", but its delete
fails harmlessly on a clsact qdisc, which therefore stays.  The price: setting
``ingress_policing_rate`` on the uplink's Interface fails (the hook is taken).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

STATE_VERSION = 1
MAIN_TABLE = 254
RTPROT_KERNEL = 2
RTN_UNICAST = 1
IFF_UP = 0x1
IFF_ALLMULTI = 0x200
IFA_F_TEMPORARY = 0x01      # IPv6 (same bit as IPv4's IFA_F_SECONDARY)
IFA_F_NODAD = 0x02
# Address flags a user may set (the others are state the kernel keeps).
IFA_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400   # nodad home mngtmpaddr noprefixroute autojoin
FOREVER = 0xFFFFFFFF
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
TX_CSUM_PREFIX = "tx-checksum-"


@dataclass(frozen=True)
class Address:
    """One interface address."""

    family: int                     # 4 or 6
    address: str
    prefixlen: int
    broadcast: str | None = None
    scope: int = 0
    flags: int = 0                  # IFA_F_* (only IFA_SETTABLE are re-applied)
    valid_lft: int | None = None    # seconds; None = forever
    preferred_lft: int | None = None
    label: str | None = None        # IPv4 label, when not just the interface name

    def key(self) -> tuple[int, str, int]:
        return (self.family, self.address, self.prefixlen)

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    """One route through an interface (single next hop)."""

    family: int
    dst: str | None                 # None = default route
    dst_len: int = 0
    gateway: str | None = None
    priority: int | None = None     # metric
    proto: int = 3                  # RTPROT_BOOT, what `ip route add` uses
    scope: int = 0
    prefsrc: str | None = None
    type: int = RTN_UNICAST
    table: int = MAIN_TABLE
    tos: int = 0
    flags: int = 0                  # RTNH_F_ONLINK etc.
    pref: int | None = None         # IPv6 router preference
    expires: int | None = None      # seconds left, IPv6 only
    metrics: dict[str, int] = field(default_factory=dict, hash=False, compare=False)

    def key(self) -> tuple[Any, ...]:
        return (self.family, self.dst, self.dst_len, self.table, self.priority or 0, self.tos,
                self.gateway)

    def __str__(self) -> str:
        text = "default" if self.dst is None else f"{self.dst}/{self.dst_len}"
        if self.gateway:
            text += f" via {self.gateway}"
        if self.priority:
            text += f" metric {self.priority}"
        if self.prefsrc:
            text += f" src {self.prefsrc}"
        return text


@dataclass
class SavedState:
    """What setup took from the uplink, so teardown can put it back."""

    uplink: str
    mac: str
    allmulticast: bool
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    tx_checksum: dict[str, bool] | None = None   # None: not changed by setup
    # INGRESS_OURS: setup isolates the uplink's ingress (teardown removes the filter);
    # INGRESS_FOREIGN: the uplink had another ingress qdisc, left alone; None: not needed
    # (kernel datapath) or a state saved by an older wlbridge.
    uplink_ingress: str | None = None
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SavedState:
        """Parse `to_json` output; ValueError on anything else."""
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported saved-state version {data.get('version')!r}")
            return cls(uplink=data["uplink"], mac=data["mac"],
                       allmulticast=bool(data["allmulticast"]),
                       addresses=[Address(**a) for a in data.get("addresses", [])],
                       routes=[Route(**r) for r in data.get("routes", [])],
                       tx_checksum=data.get("tx_checksum"),
                       uplink_ingress=data.get("uplink_ingress"), version=data["version"])
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"invalid saved state: {exc}") from exc


# ---- uplink isolation: constants and pure helpers -----------------------------
INGRESS_OURS = "wlbridge"
INGRESS_FOREIGN = "foreign"
TC_H_CLSACT = 0xFFFFFFF1        # where an ingress or clsact qdisc hangs
CLSACT_HANDLE = 0xFFFF0000      # "ffff:"
CLSACT_INGRESS = 0xFFFFFFF2     # parent of filters on clsact's ingress hook
CLSACT_EGRESS = 0xFFFFFFF3
ETH_P_ALL = 0x0003
#: Ethertypes the host stack still gets from the uplink: what wpa_supplicant reads through
#: its l2_packet sockets (fed after tc ingress, unlike OVS's ETH_P_ALL tap): EAPOL, RSN
#: pre-authentication, TDLS.
HOST_ETHERTYPES = (0x888E, 0x88C7, 0x890D)
#: Priority of our drop filter; the u32 fallback's pass filters sit just below it.
ISOLATION_PRIO = 0xC1D0
ISOLATION_NAME = "wlbridge-uplink"
TC_ACT_OK, TC_ACT_SHOT = 0, 2

Filter = tuple[int, int, str]   # (prio, ethertype, kind) of one tc filter


def isolation_filters(kind: str) -> frozenset[Filter]:
    """The filters a complete isolation of `kind` ("bpf" or "u32") consists of."""
    if kind == "bpf":
        return frozenset({(ISOLATION_PRIO, ETH_P_ALL, "bpf")})
    first = ISOLATION_PRIO - len(HOST_ETHERTYPES)
    return frozenset({(first + i, proto, "u32") for i, proto in enumerate(HOST_ETHERTYPES)}
                     | {(ISOLATION_PRIO, ETH_P_ALL, "u32")})


def is_isolation_filter(f: Filter) -> bool:
    return f in isolation_filters("bpf") or f in isolation_filters("u32")


def ingress_status(qdisc_kind: str | None, ingress: Iterable[Filter] = (),
                   egress: Iterable[Filter] = ()) -> str:
    """What the uplink's ingress hook holds:

    * "absent": no qdisc there;
    * "ingress": a classic ingress qdisc (ovs-vswitchd deletes those on its ports);
    * "ours": a clsact qdisc with a complete set of our filters and nothing else;
    * "partial": a clsact qdisc with some of ours and nothing else (e.g. after a crash);
    * "foreign": anything else (someone's filters, an empty clsact, another kind).
    """
    if qdisc_kind is None:
        return "absent"
    if qdisc_kind == "ingress":
        return "ingress"
    found = set(ingress)
    if (qdisc_kind != "clsact" or not found or set(egress)
            or not all(map(is_isolation_filter, found))):
        return "foreign"
    if found in (isolation_filters("bpf"), isolation_filters("u32")):
        return "ours"
    return "partial"


def ingress_plan(status: str) -> str:
    """`SavedState.uplink_ingress` for a fresh setup: isolate unless someone else's
    qdisc is there (ours left over from an earlier run, e.g. a bridge deleted by hand,
    is adopted).  Setup refuses a classic ingress qdisc before asking (see
    `bridge_setup.check`)."""
    return INGRESS_OURS if status in ("absent", "ours", "partial") else INGRESS_FOREIGN


def _bpf_insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    regs = (src << 4 | dst) if sys.byteorder == "little" else (dst << 4 | src)
    return struct.pack("=BBhi", code, regs, off, imm)


def isolation_program(pass_types: Iterable[int] = HOST_ETHERTYPES) -> bytes:
    """eBPF for a direct-action cls_bpf filter: TC_ACT_OK for `pass_types`, else SHOT.

    ``r0 = skb->protocol; if r0 == htons(t) goto ok; ...; return SHOT; ok: return OK``
    (no `pass_types`: just ``return SHOT``, as the verifier refuses unreachable code).
    """
    types = list(pass_types)
    if not types:
        return _bpf_insn(0xB7, imm=TC_ACT_SHOT) + _bpf_insn(0x95)
    prog = _bpf_insn(0x61, dst=0, src=1, off=16)      # ldxw r0, [r1 + __sk_buff.protocol]
    for i, proto in enumerate(types):                  # jeq r0, htons(proto), +to "ok"
        prog += _bpf_insn(0x15, dst=0, off=len(types) - i + 1, imm=socket.htons(proto))
    prog += _bpf_insn(0xB7, imm=TC_ACT_SHOT) + _bpf_insn(0x95)   # mov r0, SHOT; exit
    prog += _bpf_insn(0xB7, imm=TC_ACT_OK) + _bpf_insn(0x95)     # ok: mov r0, OK; exit
    return prog


_BPF_SYSCALL = {"x86_64": 321, "i386": 357, "i686": 357, "aarch64": 280, "arm64": 280,
                "armv7l": 386, "armv6l": 386, "riscv64": 280, "loongarch64": 280,
                "ppc64le": 361, "ppc64": 361, "s390x": 351}
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SCHED_CLS = 3
_BPF_ATTR_SIZE = 128


def load_isolation_program(pass_types: Iterable[int] = HOST_ETHERTYPES,
                           name: bytes = b"wlbridge_uplink") -> int:
    """Load `isolation_program` into the kernel; its file descriptor. OSError if refused."""
    import ctypes
    import platform

    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"no bpf() syscall number known for {platform.machine()}")
    prog = isolation_program(pass_types)
    insns = ctypes.create_string_buffer(prog, len(prog))
    license = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(_BPF_ATTR_SIZE)
    struct.pack_into("=IIQQ", attr, 0, BPF_PROG_TYPE_SCHED_CLS, len(prog) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license))
    struct.pack_into("16s", attr, 48, name[:15])   # prog_name
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(BPF_PROG_LOAD), attr,
                      ctypes.c_ulong(_BPF_ATTR_SIZE))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bpf(BPF_PROG_LOAD): {os.strerror(code)}")
    return int(fd)


def isolation_requests(kind: str) -> list[dict[str, Any]]:
    """Arguments for ``IPRoute.tc("add-filter", ...)`` (after kind and index) adding
    isolation of `kind` to a clsact qdisc; a "bpf" request needs ``fd`` added."""
    common = {"parent": CLSACT_INGRESS}
    if kind == "bpf":
        return [{**common, "prio": ISOLATION_PRIO, "protocol": ETH_P_ALL,
                 "name": ISOLATION_NAME, "direct_action": True}]
    match_all = {**common, "target": CLSACT_HANDLE | 1, "keys": ["0x0/0x0+0"]}
    ok = [{**match_all, "prio": prio, "protocol": proto, "action": "ok"}
          for prio, proto, _ in sorted(isolation_filters("u32")) if proto != ETH_P_ALL]
    return ok + [{**match_all, "prio": ISOLATION_PRIO, "protocol": ETH_P_ALL,
                  "action": "drop"}]


# Guest ports (userspace datapath): the host stack gets nothing from a guest port's
# host-side interface.  Its own priority and name, so the uplink's filters and these are
# never mistaken for one another.
GUEST_ISOLATION_PRIO = ISOLATION_PRIO + 8
GUEST_ISOLATION_NAME = "wlbridge-guest"


def guest_isolation_filters(kind: str) -> frozenset[Filter]:
    """The filter a complete guest-port isolation of `kind` ("bpf" or "u32") consists of."""
    return frozenset({(GUEST_ISOLATION_PRIO, ETH_P_ALL, kind)})


def guest_isolation_request(kind: str) -> dict[str, Any]:
    """Arguments for ``IPRoute.tc("add-filter", kind, index, ...)`` adding the guest-port
    drop filter to a clsact qdisc; a "bpf" request needs ``fd`` added."""
    req = {"parent": CLSACT_INGRESS, "prio": GUEST_ISOLATION_PRIO, "protocol": ETH_P_ALL}
    if kind == "bpf":
        return {**req, "name": GUEST_ISOLATION_NAME, "direct_action": True}
    return {**req, "target": CLSACT_HANDLE | 1, "keys": ["0x0/0x0+0"], "action": "drop"}


class IsolationError(Exception):
    """The uplink's ingress could not be isolated (nothing of ours is left behind)."""


# ---- pure helpers -----------------------------------------------------------
def _lft(value: int | None) -> int | None:
    return None if value is None or value >= FOREVER else int(value)


def address_from_nl(msg: Any) -> Address:
    """Build an `Address` from an RTM_NEWADDR message."""
    family = 4 if msg["family"] == socket.AF_INET else 6
    addr = msg.get_attr("IFA_LOCAL") if family == 4 else None
    addr = addr or msg.get_attr("IFA_ADDRESS")
    cache = msg.get_attr("IFA_CACHEINFO") or {}
    flags = msg.get_attr("IFA_FLAGS")
    return Address(family=family, address=addr, prefixlen=msg["prefixlen"],
                   broadcast=msg.get_attr("IFA_BROADCAST"), scope=msg["scope"],
                   flags=msg["flags"] if flags is None else flags,
                   valid_lft=_lft(cache.get("ifa_valid")),
                   preferred_lft=_lft(cache.get("ifa_preferred")),
                   label=msg.get_attr("IFA_LABEL"))


def route_from_nl(msg: Any) -> Route:
    """Build a `Route` from an RTM_NEWROUTE message."""
    family = 4 if msg["family"] == socket.AF_INET else 6
    cache = msg.get_attr("RTA_CACHEINFO") or {}
    expires = cache.get("rta_expires") or 0
    metrics_nla = msg.get_attr("RTA_METRICS")
    metrics = {}
    if metrics_nla is not None:
        metrics = {name[len("RTAX_"):].lower(): value
                   for name, value in metrics_nla.get("attrs", []) if name.startswith("RTAX_")}
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    return Route(family=family, dst=msg.get_attr("RTA_DST") if msg["dst_len"] else None,
                 dst_len=msg["dst_len"], gateway=msg.get_attr("RTA_GATEWAY"),
                 priority=msg.get_attr("RTA_PRIORITY"), proto=msg["proto"], scope=msg["scope"],
                 prefsrc=msg.get_attr("RTA_PREFSRC"), type=msg["type"], table=table,
                 tos=msg["tos"], flags=msg["flags"] & 0xFF, pref=msg.get_attr("RTA_PREF"),
                 expires=expires // 100 if expires > 0 else None, metrics=metrics)


def is_movable_address(addr: Address) -> bool:
    """Everything except IPv6 link-local and kernel-made temporary (privacy) addresses."""
    if addr.family == 6:
        if ipaddress.IPv6Address(addr.address).is_link_local:
            return False
        if addr.flags & IFA_F_TEMPORARY:
            return False
    return True


def is_movable_route(route: Route) -> bool:
    """Main-table unicast routes not made by the kernel for an address."""
    return (route.table == MAIN_TABLE and route.proto != RTPROT_KERNEL
            and route.type == RTN_UNICAST
            and not (route.family == 6 and route.dst is not None
                     and ipaddress.ip_network(f"{route.dst}/{route.dst_len}").is_multicast))


def retarget_label(label: str | None, src: str, dst: str) -> str | None:
    """An IPv4 label for `dst` ("wlan0:1" -> "br-wl:1"); None for the plain name."""
    if not label or label == src or not label.startswith(src + ":"):
        return None
    new = dst + label[len(src):]
    return new if len(new) <= 15 else None


def address_kwargs(addr: Address, index: int, label: str | None = None,
                   nodad: bool = False) -> dict[str, Any]:
    """Arguments for ``IPRoute.addr("add", ...)``."""
    flags = addr.flags & IFA_SETTABLE
    if nodad and addr.family == 6:
        flags |= IFA_F_NODAD
    kw: dict[str, Any] = {"index": index, "family": _FAMILIES[addr.family],
                          "address": addr.address, "prefixlen": addr.prefixlen,
                          "scope": addr.scope}
    if flags:
        kw["flags"] = flags
    if addr.broadcast:
        kw["broadcast"] = addr.broadcast
    if label and addr.family == 4:
        kw["label"] = label
    if addr.valid_lft is not None:
        kw["valid_lft"] = addr.valid_lft
        kw["preferred_lft"] = min(addr.preferred_lft or 0, addr.valid_lft)
    return kw


def route_kwargs(route: Route, index: int, full: bool = True) -> dict[str, Any]:
    """Arguments for ``IPRoute.route("replace", ...)`` through interface `index`.

    With ``full=False``, only what identifies the route (for ``"del"``).
    """
    kw: dict[str, Any] = {"family": _FAMILIES[route.family], "dst_len": route.dst_len,
                          "oif": index, "table": route.table, "tos": route.tos}
    if route.dst is not None:
        kw["dst"] = route.dst
    for name in ("gateway", "priority") + (("prefsrc", "pref") if full else ()):
        value = getattr(route, name)
        if value is not None:
            kw[name] = value
    if not full:
        return kw
    kw.update(proto=route.proto, scope=route.scope, type=route.type)
    if route.flags:
        kw["flags"] = route.flags
    if route.expires:   # pyroute2 declares RTA_EXPIRES as raw bytes: pack the u32 ourselves
        kw["expires"] = struct.pack("=I", route.expires)
    if route.metrics:
        kw["metrics"] = dict(route.metrics)
    return kw


# ---- the host ---------------------------------------------------------------
class HostNet:
    """Netlink access to the host's interfaces (one IPRoute socket)."""

    def __init__(self, ipr: IPRoute | None = None) -> None:
        self.ipr = ipr or IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # links
    def link_index(self, name: str) -> int | None:
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def _index(self, name: str) -> int:
        index = self.link_index(name)
        if index is None:
            raise LookupError(f"interface {name} does not exist")
        return index

    def _link(self, name: str) -> Any:
        return self.ipr.get_links(self._index(name))[0]

    def wait_for_link(self, name: str, timeout: float = 10.0) -> int:
        """Wait until interface `name` exists; its index. TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            index = self.link_index(name)
            if index is not None:
                return index
            if time.monotonic() >= deadline:
                raise TimeoutError(f"interface {name} did not appear within {timeout:g}s")
            time.sleep(0.05)

    def get_mac(self, name: str) -> str:
        return self._link(name).get_attr("IFLA_ADDRESS")

    def set_mac(self, name: str, mac: str) -> None:
        self.ipr.link("set", index=self._index(name), address=mac)

    def flags(self, name: str) -> int:
        return self._link(name)["flags"]

    def set_up(self, name: str) -> None:
        self.ipr.link("set", index=self._index(name), state="up")

    def get_allmulticast(self, name: str) -> bool:
        return bool(self.flags(name) & IFF_ALLMULTI)

    def set_allmulticast(self, name: str, on: bool) -> None:
        self.ipr.link("set", index=self._index(name), flags=IFF_ALLMULTI if on else 0,
                      change=IFF_ALLMULTI)

    def master(self, name: str) -> tuple[str, str] | None:
        """(name, kind) of the device `name` is enslaved to, e.g. ("br0", "bridge")."""
        master = self._link(name).get_attr("IFLA_MASTER")
        if not master:
            return None
        links = self.ipr.get_links(master)
        if not links:
            return None
        info = links[0].get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        return links[0].get_attr("IFLA_IFNAME"), kind or "unknown"

    # addresses and routes
    def addresses(self, name: str) -> list[Address]:
        """Movable addresses of `name`, primary IPv4 addresses first."""
        return [a for a in (address_from_nl(m) for m in self.ipr.get_addr(index=self._index(name)))
                if is_movable_address(a)]

    def routes(self, name: str) -> list[Route]:
        """Movable main-table routes whose next hop is `name` (default route included)."""
        index = self._index(name)
        found = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self.ipr.get_routes(family=family, table=MAIN_TABLE):
                if msg.get_attr("RTA_OIF") == index:
                    route = route_from_nl(msg)
                    if is_movable_route(route):
                        found.append(route)
        return found

    def snapshot(self, name: str) -> SavedState:
        """Everything setup changes on `name`, as it is now."""
        return SavedState(uplink=name, mac=self.get_mac(name),
                          allmulticast=self.get_allmulticast(name),
                          addresses=self.addresses(name), routes=self.routes(name))

    def move(self, state: SavedState, src: str, dst: str, nodad: bool = False) -> list[str]:
        """Move `state`'s addresses and routes from `src` (may be gone) to `dst`.

        Idempotent; returns one line per change. `nodad` skips IPv6 duplicate
        address detection on `dst` (the host already owned the address).
        """
        src_index, dst_index = self.link_index(src), self._index(dst)
        on_src = {a.key(): a for a in self.addresses(src)} if src_index else {}
        on_dst = {a.key() for a in self.addresses(dst)}
        done = []
        for addr in state.addresses:
            if addr.key() in on_dst:
                continue
            current = on_src.get(addr.key())             # fresh lifetimes when still there
            if current is not None:
                current = replace(addr, valid_lft=current.valid_lft,
                                  preferred_lft=current.preferred_lft)
            label = (retarget_label(addr.label, state.uplink, dst) if dst != state.uplink
                     else (addr.label if addr.label != dst else None))
            self._ignore(errno.EEXIST, self.ipr.addr, "add",
                         **address_kwargs(current or addr, dst_index, label, nodad))
            done.append(f"address {addr} added to {dst}")
        for addr in reversed(state.addresses):          # secondaries before primaries
            if src_index and addr.key() in on_src:
                self._ignore(errno.EADDRNOTAVAIL, self.ipr.addr, "del", index=src_index,
                             family=_FAMILIES[addr.family], address=addr.address,
                             prefixlen=addr.prefixlen)
                done.append(f"address {addr} removed from {src}")
        on_dst_routes = {r.key() for r in self.routes(dst)}
        src_routes = {r.key() for r in self.routes(src)} if src_index else set()
        for route in state.routes:
            if route.key() in src_routes:
                self._ignore(errno.ESRCH, self.ipr.route, "del",
                             **route_kwargs(route, src_index, full=False))
            if route.key() not in on_dst_routes:
                self.ipr.route("replace", **route_kwargs(route, dst_index))
                done.append(f"route {route} now via {dst}")
        return done

    @staticmethod
    def _ignore(code: int, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.code != code:
                raise

    # TX checksum offload (ethtool ioctls through pyroute2)
    def get_tx_checksum(self, name: str) -> dict[str, bool] | None:
        """Changeable ``tx-checksum-*`` features and their state; None if unsupported."""
        try:
            from pyroute2.ethtool import Ethtool

            with Ethtool() as eth:
                features = eth.get_features(name).features
        except Exception as exc:  # noqa: BLE001 - any ioctl/driver failure means "cannot"
            log.debug("ethtool features of %s: %s", name, exc)
            return None
        return {n: bool(f.enable) for n, f in features.items()
                if n.startswith(TX_CSUM_PREFIX) and f.available}

    def set_tx_checksum(self, name: str, wanted: dict[str, bool]) -> bool:
        """Set ``tx-checksum-*`` features; False if the driver refused."""
        try:
            from pyroute2.ethtool import Ethtool

            with Ethtool() as eth:
                features = eth.get_features(name)
                for feature, enable in wanted.items():
                    if feature in features.features:
                        features.features[feature].enable = enable
                eth.set_features(name, features)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not change TX checksum offload on %s: %s", name, exc)
            return False
        return True


    # uplink isolation (tc clsact ingress)
    def ingress_qdisc(self, name: str) -> str | None:
        """Kind of the qdisc on `name`'s ingress hook ("clsact", "ingress"), or None."""
        index = self._index(name)
        for msg in self.ipr.get_qdiscs(index):
            if msg["index"] == index and msg["parent"] == TC_H_CLSACT:
                return msg.get_attr("TCA_KIND")
        return None

    def clsact_filters(self, name: str, hook: int = CLSACT_INGRESS) -> set[Filter]:
        """(prio, ethertype, kind) of the filters on a hook of `name`'s clsact qdisc."""
        index = self._index(name)
        return {(msg["info"] >> 16, socket.ntohs(msg["info"] & 0xFFFF), msg.get_attr("TCA_KIND"))
                for msg in self.ipr.get_filters(index, parent=hook) if msg["index"] == index}

    def ingress_status(self, name: str) -> str:
        """`ingress_status` of `name` ("absent", "ingress", "ours", "partial", "foreign")."""
        kind = self.ingress_qdisc(name)
        if kind != "clsact":
            return ingress_status(kind)
        return ingress_status(kind, self.clsact_filters(name),
                              self.clsact_filters(name, CLSACT_EGRESS))

    def _clsact_empty(self, name: str) -> bool:
        return not (self.clsact_filters(name) or self.clsact_filters(name, CLSACT_EGRESS))

    def _del_filters(self, index: int, filters: Iterable[Filter]) -> None:
        for prio, proto, kind in filters:   # (pyroute2's u32 wants a target even here)
            extra = {"target": CLSACT_HANDLE | 1} if kind == "u32" else {}
            self._ignore(errno.ENOENT, self.ipr.tc, "del-filter", kind, index,
                         parent=CLSACT_INGRESS, prio=prio, protocol=proto, **extra)

    def _add_isolation(self, index: int, kind: str) -> None:
        if kind == "bpf":
            fd = load_isolation_program()
            try:
                for req in isolation_requests("bpf"):
                    self.ipr.tc("add-filter", "bpf", index, fd=fd, **req)
            finally:
                os.close(fd)
        else:
            for req in isolation_requests(kind):
                self.ipr.tc("add-filter", kind, index, **req)

    def isolate_uplink(self, name: str) -> list[str]:
        """Idempotently make `name`'s ingress drop all but `HOST_ETHERTYPES` (for the host
        stack only: OVS's AF_PACKET tap sees every frame first).  One line per change;
        IsolationError (with nothing of ours left behind) when that is not possible."""
        index = self._index(name)
        changes = []
        kind = self.ingress_qdisc(name)
        if kind is None:
            self._ignore(errno.EEXIST, self.ipr.tc, "add", "clsact", index)
            changes.append(f"clsact qdisc added to {name}")
        elif kind != "clsact":
            raise IsolationError(f"{name} has an {kind} qdisc (not wlbridge's)")
        present = {f for f in self.clsact_filters(name) if is_isolation_filter(f)}
        if present in (isolation_filters("bpf"), isolation_filters("u32")):
            return changes
        self._del_filters(index, present)             # a partial set, e.g. after a crash
        errors = []
        for method in ("bpf", "u32"):
            try:
                self._add_isolation(index, method)
            except (OSError, NetlinkError) as exc:
                errors.append(f"{method}: {exc}")
                self._del_filters(index, isolation_filters(method))
                continue
            what = "eBPF classifier" if method == "bpf" else "u32 filters with gact"
            changes.append(f"host stack on {name} now gets only EAPOL/pre-auth/TDLS "
                           f"(ingress {what})")
            return changes
        if self._clsact_empty(name):
            self._ignore(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
        raise IsolationError("the kernel refused both filters (" + "; ".join(errors) + ")")

    def release_uplink(self, name: str) -> list[str]:
        """Undo `isolate_uplink`: remove our filters, and the clsact qdisc if nothing else
        is on it.  Idempotent; one line per change."""
        if self.ingress_qdisc(name) != "clsact":
            return []
        index = self._index(name)
        changes = []
        ours = {f for f in self.clsact_filters(name) if is_isolation_filter(f)}
        if ours:
            self._del_filters(index, ours)
            changes.append(f"ingress filter removed from {name}")
        if self._clsact_empty(name):
            self._ignore(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
            changes.append(f"clsact qdisc removed from {name}")
        else:
            changes.append(f"clsact qdisc of {name} kept: it holds filters not wlbridge's")
        return changes

    # guest-port isolation (tc clsact ingress, drop everything)
    def _ingress_filters(self, index: int) -> set[Filter]:
        """`clsact_filters` by index; empty when there is no clsact qdisc."""
        try:
            msgs = self.ipr.get_filters(index, parent=CLSACT_INGRESS)
        except NetlinkError as exc:
            if exc.code in (errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
                return set()
            raise
        return {(m["info"] >> 16, socket.ntohs(m["info"] & 0xFFFF), m.get_attr("TCA_KIND"))
                for m in msgs if m["index"] == index}

    def isolate_guest_port(self, name: str, prog_fd: int | None = None) -> list[str]:
        """Idempotently make the host stack drop everything arriving on `name`, the
        host-side interface of a guest port (OVS's AF_PACKET tap still reads every frame:
        taps run before tc ingress).  `prog_fd`: an already loaded drop-all program to
        share (``load_isolation_program(())``); else one is loaded for this filter.
        One line per change; LookupError if `name` is gone; IsolationError (nothing of
        ours left behind) when the kernel refuses, or the hook holds a classic ingress
        qdisc.  Filters of others on a clsact qdisc there are left alone."""
        index = self._index(name)
        present = {f for f in self._ingress_filters(index) if f[0] == GUEST_ISOLATION_PRIO}
        if present in (guest_isolation_filters("bpf"), guest_isolation_filters("u32")):
            return []                                  # the common, cheap case
        changes = []
        kind = self.ingress_qdisc(name)
        if kind is None:
            self._ignore(errno.EEXIST, self.ipr.tc, "add", "clsact", index)
            changes.append(f"clsact qdisc added to {name}")
        elif kind != "clsact":
            raise IsolationError(f"{name} has an {kind} qdisc (not wlbridge's)")
        self._del_filters(index, present)              # e.g. a u32 and a bpf one
        errors = []
        for method in ("bpf", "u32"):
            try:
                req = guest_isolation_request(method)
                if method == "u32":
                    self.ipr.tc("add-filter", "u32", index, **req)
                elif prog_fd is not None:
                    self.ipr.tc("add-filter", "bpf", index, fd=prog_fd, **req)
                else:
                    fd = load_isolation_program((), b"wlbridge_guest")
                    try:
                        self.ipr.tc("add-filter", "bpf", index, fd=fd, **req)
                    finally:
                        os.close(fd)
            except (OSError, NetlinkError) as exc:
                errors.append(f"{method}: {exc}")
                self._del_filters(index, guest_isolation_filters(method))
                continue
            what = "eBPF classifier" if method == "bpf" else "u32 filter with gact"
            changes.append(f"host stack on guest port {name} now gets nothing ({what})")
            return changes
        if self._clsact_empty(name):
            self._ignore(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
        raise IsolationError("the kernel refused both filters (" + "; ".join(errors) + ")")

    def release_guest_port(self, name: str) -> list[str]:
        """Undo `isolate_guest_port`: remove our filter, and the clsact qdisc if nothing
        else is on it.  Idempotent, and a no-op when `name` is gone; one line per change."""
        index = self.link_index(name)
        if index is None:
            return []
        ours = {f for f in self._ingress_filters(index) if f[0] == GUEST_ISOLATION_PRIO}
        if not ours:
            return []
        self._del_filters(index, ours)
        changes = [f"guest-port filter removed from {name}"]
        if self._clsact_empty(name):
            self._ignore(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
            changes.append(f"clsact qdisc removed from {name}")
        return changes


def describe(addresses: Iterable[Address], routes: Iterable[Route]) -> list[str]:
    """Short human lines for a summary."""
    return [f"  address {a}" for a in addresses] + [f"  route {r}" for r in routes]
