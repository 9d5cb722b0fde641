"""Uplink and guest-port isolation on the userspace datapath: tc clsact + a tiny eBPF filter.

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
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterable
from typing import Any

from wlbridge.host.pyroute2_lazy import NetlinkError

log = logging.getLogger(__name__)

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




def ignore_errno(code: int, fn: Any, *args: Any, **kwargs: Any) -> None:
    """Call `fn`, ignoring the NetlinkError whose code is `code` (e.g. EEXIST on add)."""
    try:
        fn(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code != code:
            raise


def link_index(ipr: Any, name: str) -> int | None:
    """The index of interface `name` (None: there is none), over a pyroute2 IPRoute."""
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def require_index(ipr: Any, name: str) -> int:
    """The index of interface `name`; LookupError naming it when there is none."""
    index = link_index(ipr, name)
    if index is None:
        raise LookupError(f"interface {name} does not exist")
    return index


class IngressFilters:
    """The tc (clsact qdisc and filter) operations on the host's interfaces, over a
    pyroute2 IPRoute socket that its owner (`hostnet.HostNet`) lends it."""

    def __init__(self, ipr: Any) -> None:
        self.ipr = ipr

    def link_index(self, name: str) -> int | None:
        return link_index(self.ipr, name)

    def _index(self, name: str) -> int:
        return require_index(self.ipr, name)

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
            ignore_errno(errno.ENOENT, self.ipr.tc, "del-filter", kind, index,
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

    def _ensure_clsact(self, name: str, index: int, changes: list[str]) -> None:
        """Add a clsact qdisc to `name` unless it has one (noting it in `changes`);
        IsolationError if its ingress hook holds another qdisc."""
        kind = self.ingress_qdisc(name)
        if kind is None:
            ignore_errno(errno.EEXIST, self.ipr.tc, "add", "clsact", index)
            changes.append(f"clsact qdisc added to {name}")
        elif kind != "clsact":
            raise IsolationError(f"{name} has an {kind} qdisc (not wlbridge's)")

    def isolate_uplink(self, name: str) -> list[str]:
        """Idempotently make `name`'s ingress drop all but `HOST_ETHERTYPES` (for the host
        stack only: OVS's AF_PACKET tap sees every frame first).  One line per change;
        IsolationError (with nothing of ours left behind) when that is not possible."""
        index = self._index(name)
        changes = []
        self._ensure_clsact(name, index, changes)
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
            ignore_errno(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
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
            ignore_errno(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
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
        self._ensure_clsact(name, index, changes)
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
            ignore_errno(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
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
        try:
            empty = self._clsact_empty(name)
        except LookupError:      # the interface went meanwhile (a short-lived port), and
            return changes       # its qdisc with it
        if empty:
            ignore_errno(errno.ENOENT, self.ipr.tc, "del", "clsact", index)
            changes.append(f"clsact qdisc removed from {name}")
        return changes
