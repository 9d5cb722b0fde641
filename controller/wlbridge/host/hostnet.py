"""Host addresses, routes and link flags through pyroute2 (no `ip`, no `ethtool`).

`HostNet.snapshot` reads what lives on an interface (IPv4/IPv6 addresses except
IPv6 link-local and temporary ones, main-table routes except kernel-made ones,
MAC, allmulticast, TX checksum offload) into a JSON-serialisable `SavedState`;
`HostNet.move` moves the saved addresses and routes from one interface to
another, idempotently (what is already in place is left alone), keeping
prefix length, broadcast, scope, flags, lifetimes, gateway, metric, protocol,
scope, preferred source, type, preference, expiry and metrics.

Router advertisements: a host whose uplink took RAs (SLAAC address, RA-learned on-link route
and default route) would keep answering them on the uplink after setup, and the kernel keeps an
RA-learned prefix route when its SLAAC address is removed (it has an expiry), so the host's
IPv6 to the LAN would leave through the uplink, outside Open vSwitch.  Setup therefore saves
the uplink's `UPLINK_RA_KEYS` sysctls (`SavedState.uplink_ra`), turns them off on the uplink
(`RA_OFF`) and gives the saved values to the bridge, and `HostNet.move_ra_leftovers` takes
what RAs left on the uplink away (routes to the bridge, RA-made addresses removed: the bridge
forms its own); teardown writes the saved values back.

Uplink and guest-port isolation on the userspace datapath: `ingress_filter` (mixed into
`HostNet`).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wlbridge.host.ingress_filter import (  # noqa: F401 - re-exported: hostnet.X keeps working
    BPF_PROG_LOAD,
    BPF_PROG_TYPE_SCHED_CLS,
    CLSACT_EGRESS,
    CLSACT_HANDLE,
    CLSACT_INGRESS,
    ETH_P_ALL,
    GUEST_ISOLATION_NAME,
    GUEST_ISOLATION_PRIO,
    HOST_ETHERTYPES,
    INGRESS_FOREIGN,
    INGRESS_OURS,
    ISOLATION_NAME,
    ISOLATION_PRIO,
    TC_ACT_OK,
    TC_ACT_SHOT,
    TC_H_CLSACT,
    Filter,
    IngressFilters,
    IsolationError,
    guest_isolation_filters,
    guest_isolation_request,
    ignore_errno,
    ingress_plan,
    ingress_status,
    is_isolation_filter,
    isolation_filters,
    isolation_program,
    isolation_requests,
    load_isolation_program,
)
from wlbridge.host.ingress_filter import link_index as find_link_index
from wlbridge.host.pyroute2_lazy import IPRoute

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

STATE_VERSION = 1
MAIN_TABLE = 254
RTPROT_KERNEL = 2
RTPROT_RA = 9
# The uplink's IPv6 router-advertisement switches setup turns off (saved for teardown).
UPLINK_RA_KEYS = ("accept_ra", "autoconf")
RA_OFF = dict.fromkeys(UPLINK_RA_KEYS, "0")
IPV6_CONF = "/proc/sys/net/ipv6/conf"
IFA_F_PERMANENT = 0x80
RTN_UNICAST = 1
IFF_UP = 0x1
IFF_ALLMULTI = 0x200
IFA_F_TEMPORARY = 0x01      # IPv6 (same bit as IPv4's IFA_F_SECONDARY)
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200     # the kernel makes no prefix route: someone else does
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
    # the uplink's UPLINK_RA_KEYS sysctls before setup (setup turns them off, teardown writes
    # these back); None: IPv6 off on the uplink, or a state saved by an older wlbridge
    uplink_ra: dict[str, str] | None = None
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
                       uplink_ingress=data.get("uplink_ingress"),
                       uplink_ra=data.get("uplink_ra"), version=data["version"])
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"invalid saved state: {exc}") from exc


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


def is_movable_route(route: Route, noprefix: Iterable[tuple[int, str, int]] = ()) -> bool:
    """Main-table unicast routes not made by the kernel for an address.

    `noprefix`: the (family, network, prefix length) of the interface's addresses flagged
    ``noprefixroute``.  The kernel makes no prefix route for those, so a ``proto kernel``
    route to such a prefix was made by someone else -- NetworkManager adds its own, with
    ``proto kernel`` and its metric -- and must move with the address (without it the
    moved address has no route to its subnet, and a route via a gateway there cannot be
    added: "Network is unreachable", seen with NetworkManager 1.42)."""
    made_by_kernel = route.proto == RTPROT_KERNEL and \
        (route.family, route.dst, route.dst_len) not in set(noprefix)
    return (route.table == MAIN_TABLE and not made_by_kernel
            and route.type == RTN_UNICAST
            and not (route.family == 6 and route.dst is not None
                     and ipaddress.ip_network(f"{route.dst}/{route.dst_len}").is_multicast))


def noprefix_networks(addresses: Iterable[Address]) -> set[tuple[int, str, int]]:
    """(family, network, prefix length) of the ``noprefixroute`` addresses (see
    `is_movable_route`)."""
    found = set()
    for addr in addresses:
        if addr.flags & IFA_F_NOPREFIXROUTE:
            net = ipaddress.ip_interface(f"{addr.address}/{addr.prefixlen}").network
            found.add((addr.family, str(net.network_address), addr.prefixlen))
    return found


def is_ra_route(route: Route) -> bool:
    """An IPv6 main-table unicast route learned from a router advertisement: ``proto ra``
    (default and route-information routes), or a kernel prefix route with an expiry (the
    on-link prefix; one made for an address has none).  Link-local and multicast: no."""
    if route.family != 6 or route.table != MAIN_TABLE or route.type != RTN_UNICAST:
        return False
    if route.dst is not None:
        net = ipaddress.ip_network(f"{route.dst}/{route.dst_len}")
        if net.is_link_local or net.is_multicast:
            return False
    return route.proto == RTPROT_RA or (route.proto == RTPROT_KERNEL and bool(route.expires))


def is_ra_address(addr: Address) -> bool:
    """An IPv6 global address the kernel made from a router advertisement: SLAAC (not
    ``permanent``: it has lifetimes from the prefix) or temporary (privacy)."""
    if addr.family != 6 or ipaddress.IPv6Address(addr.address).is_link_local:
        return False
    return bool(addr.flags & IFA_F_TEMPORARY) or not addr.flags & IFA_F_PERMANENT


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
        #: the tc operations (uplink and guest-port isolation), on the same socket
        self.tc = IngressFilters(self.ipr)

    def close(self) -> None:
        self.ipr.close()

    # tc: uplink and guest-port isolation (`ingress_filter.IngressFilters`)
    def ingress_status(self, name: str) -> str:
        return self.tc.ingress_status(name)

    def isolate_uplink(self, name: str) -> list[str]:
        return self.tc.isolate_uplink(name)

    def release_uplink(self, name: str) -> list[str]:
        return self.tc.release_uplink(name)

    def isolate_guest_port(self, name: str, prog_fd: int | None = None) -> list[str]:
        return self.tc.isolate_guest_port(name, prog_fd)

    def release_guest_port(self, name: str) -> list[str]:
        return self.tc.release_guest_port(name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # links
    def link_index(self, name: str) -> int | None:
        return find_link_index(self.ipr, name)

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
        noprefix = noprefix_networks(self.addresses(name))
        found = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self.ipr.get_routes(family=family, table=MAIN_TABLE):
                if msg.get_attr("RTA_OIF") == index:
                    route = route_from_nl(msg)
                    if is_movable_route(route, noprefix):
                        found.append(route)
        return found

    def snapshot(self, name: str) -> SavedState:
        """Everything setup changes on `name`, as it is now."""
        return SavedState(uplink=name, mac=self.get_mac(name),
                          allmulticast=self.get_allmulticast(name),
                          addresses=self.addresses(name), routes=self.routes(name),
                          uplink_ra=self.ipv6_conf(name) or None)

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
            ignore_errno(errno.EEXIST, self.ipr.addr, "add",
                         **address_kwargs(current or addr, dst_index, label, nodad))
            done.append(f"address {addr} added to {dst}")
        for addr in reversed(state.addresses):          # secondaries before primaries
            if src_index and addr.key() in on_src:
                ignore_errno(errno.EADDRNOTAVAIL, self.ipr.addr, "del", index=src_index,
                             family=_FAMILIES[addr.family], address=addr.address,
                             prefixlen=addr.prefixlen)
                done.append(f"address {addr} removed from {src}")
        on_dst_routes = {r.key() for r in self.routes(dst)}
        src_routes = {r.key() for r in self.routes(src)} if src_index else set()
        # routes to the link before routes through a gateway: an address without a prefix
        # route (dhcpcd adds its own) leaves the gateway unreachable until then
        for route in sorted(state.routes, key=lambda r: r.gateway is not None):
            if route.key() in src_routes:
                ignore_errno(errno.ESRCH, self.ipr.route, "del",
                             **route_kwargs(route, src_index, full=False))
            if route.key() not in on_dst_routes:
                self.ipr.route("replace", **route_kwargs(route, dst_index))
                done.append(f"route {route} now via {dst}")
        return done

    # IPv6 router advertisements (sysctls of the interface, in this network namespace)
    @staticmethod
    def ipv6_conf(name: str, keys: Iterable[str] = UPLINK_RA_KEYS) -> dict[str, str]:
        """The interface's IPv6 sysctls `keys` (those that exist: none with IPv6 off)."""
        found = {}
        for key in keys:
            try:
                with open(f"{IPV6_CONF}/{name}/{key}") as f:
                    found[key] = f.read().strip()
            except OSError:
                pass
        return found

    def set_ipv6_conf(self, name: str, values: dict[str, str]) -> list[str]:
        """Write the IPv6 sysctls that differ; one line per change (OSError on failure)."""
        current = self.ipv6_conf(name, values)
        changed = []
        for key, value in values.items():
            if key in current and current[key] != value:
                with open(f"{IPV6_CONF}/{name}/{key}", "w") as f:
                    f.write(value)
                changed.append(f"{key}={value}")
        return [f"IPv6 {' '.join(changed)} on {name}"] if changed else []

    def move_ra_leftovers(self, src: str, dst: str | None) -> list[str]:
        """What router advertisements left on `src`: RA-learned routes move to `dst` (unless
        it has a route to that prefix already; removed when `dst` is None), RA-made
        addresses are removed (`dst` forms its own).  Idempotent; one line per change."""
        src_index = self.link_index(src)
        if src_index is None:
            return []
        dst_index = self.link_index(dst) if dst else None
        done = []
        on_dst = ({(r.dst, r.dst_len) for r in self._all_routes(dst_index, 6)}
                  if dst_index else set())
        for route in self._all_routes(src_index, 6):
            if not is_ra_route(route):
                continue
            ignore_errno(errno.ESRCH, self.ipr.route, "del",
                         **route_kwargs(route, src_index, full=False))
            if dst_index and (route.dst, route.dst_len) not in on_dst:
                self.ipr.route("replace", **route_kwargs(route, dst_index))
                done.append(f"route {route} (from router advertisements) now via {dst}")
            else:
                done.append(f"route {route} (from router advertisements) removed from {src}")
        for msg in self.ipr.get_addr(index=src_index, family=socket.AF_INET6):
            addr = address_from_nl(msg)
            if is_ra_address(addr):
                ignore_errno(errno.EADDRNOTAVAIL, self.ipr.addr, "del", index=src_index,
                             family=socket.AF_INET6, address=addr.address,
                             prefixlen=addr.prefixlen)
                done.append(f"address {addr} (from router advertisements) removed from {src}")
        return done

    def _all_routes(self, index: int, family: int) -> list[Route]:
        return [route_from_nl(m) for m in self.ipr.get_routes(family=_FAMILIES[family],
                                                              table=MAIN_TABLE)
                if m.get_attr("RTA_OIF") == index]

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




def describe(addresses: Iterable[Address], routes: Iterable[Route]) -> list[str]:
    """Short human lines for a summary."""
    return [f"  address {a}" for a in addresses] + [f"  route {r}" for r in routes]
