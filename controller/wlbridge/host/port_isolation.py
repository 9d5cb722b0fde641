"""Userspace datapath: keep the host stack off guest ports' host-side interfaces.

With ``datapath_type=netdev`` OVS reads each port through an AF_PACKET socket on the
port's host-side interface (a container's veth end, a VM's tap), and the kernel also
processes every frame arriving there.  A guest's ARP request for the host's address
(which lives on the bridge's internal port) is then answered twice: by the host through
OVS with the station MAC, and by the kernel directly with the veth/tap's own MAC (weak
host model).  A guest that keeps the latter sends host-bound frames to a MAC the
pipeline does not know, so they go out of the uplink instead of to the host.

`GuestPortIsolation` puts on each guest port's host-side interface (the interface named
like the OVS port, in the root namespace) a clsact qdisc whose ingress filter drops
everything, for the host stack only: OVS's packet socket is fed before tc ingress
(`hostnet.HostNet.isolate_guest_port`).  It is driven by the app shell from a thread
of its own, outside the core's lock:

* the bridge's datapath type is read from OVSDB once (the first time it is needed) and
  cached; with the kernel datapath nothing is done;
* only interfaces OVSDB types as system interfaces ("" or "system": veths, taps made by
  libvirt/QEMU) are isolated; the uplink (which keeps EAPOL, see `wlbridge setup`), the
  bridge's internal port and other internal ports (the host's own interfaces) never are.
  Types of ports added later are looked up in OVSDB then, one query per batch;
* a port leaving the bridge while its interface lives on gets its filter removed (the
  interface may be put on another bridge, whose rx handler runs after tc ingress);
* the filters stay when the controller stops: with ``fail_mode=secure`` the flows keep
  forwarding, so the host must keep ignoring guest ports.  `wlbridge teardown` removes
  them from the bridge's former ports that still exist.

Ports attached by `wlbridge attach` (Interface ``external_ids:wlbridge-guest``) whose
interface vanished (the guest's namespace or container is gone, and its veth pair with it) are
removed from OVSDB here, with their DHCP client (`wlbridge.host.attach.remove_guest`): on the
port-status event the disappearance brings (a MODIFY, link down, on the userspace datapath), and
at each read of the bridge (so also those that
vanished while no controller ran).  Their bindings go with the port's DELETE, in the core.

Each read of the bridge also hands the guest-type interfaces' ``external_ids`` (name ->
ids) to `on_interfaces`, if given: the records libvirt writes on a VM's interface
(`wlbridge.host.libvirt_vms`) are read there, on the port's first event.

Nothing here raises: failures are logged once per interface (and retried on the next
event for that port).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

LOG = logging.getLogger("wlbridge.host.port_isolation")

#: OVSDB interface types whose host-side netdev is a guest's (veth end, tap).
GUEST_TYPES = ("", "system")
#: How often an unreachable OVSDB is asked again for what is still pending.
RETRY_SECONDS = 5.0

Change = tuple[str, bool]   # (interface name, True: on the bridge / False: left it)


class GuestPortIsolation:
    """Isolates guest ports of one bridge (see the module docstring).  Not thread-safe:
    call `apply` from one thread only (the shell's isolation worker)."""

    def __init__(self, bridge: str, uplink: str, ovsdb_remote: str | None = None, *,
                 bridge_info: Callable[[str, str | None], Any] | None = None,
                 hostnet_factory: Callable[[], Any] | None = None,
                 load_program: Callable[[], int] | None = None,
                 reap: Callable[[str, str | None, list[tuple[str, dict]]], list[str]]
                 | None = None,
                 on_interfaces: Callable[[dict[str, dict]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bridge = bridge
        self.uplink = uplink
        self.remote = ovsdb_remote
        self._bridge_info = bridge_info or _ovsdb_bridge_info
        self._hostnet_factory = hostnet_factory or _hostnet
        self._load_program = load_program or _load_drop_all
        self._reap = reap or _reap_attached
        self._on_interfaces = on_interfaces
        self._clock = clock
        self.netdev: bool | None = None      # the bridge's datapath is netdev (None: unknown)
        self.types: dict[str, str] = {}      # OVSDB interface type by name
        self.isolated: set[str] = set()      # isolated (or found isolated) by us
        self.attached: dict[str, dict] = {}  # `wlbridge attach`'s ports: their external_ids
        self._pending: dict[str, bool] = {}
        self._retry_at = 0.0
        self._net: Any = None
        self._fd: int | None = None
        self._fd_failed = False
        self._logged: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ api
    def apply(self, changes: Iterable[Change] = ()) -> None:
        """Bring the given ports' host-side interfaces in line (the last change per name
        wins); also retries what an unreachable OVSDB left pending.  Never raises."""
        try:
            touched = []
            for name, present in changes:
                if name not in (self.bridge, self.uplink):
                    self._pending.pop(name, None)
                    self._pending[name] = present
                    touched.append(name)
                    if not present:   # re-added, it is read again (type, records)
                        self.types.pop(name, None)
            # a vanished interface comes as a port-status MODIFY (link down) on the userspace
            # datapath, as a DELETE elsewhere: look at every event of an attached port
            self._reap_vanished([n for n in dict.fromkeys(touched) if n in self.attached])
            if self._pending:
                self._apply_pending()
        except Exception:  # noqa: BLE001 - never raise into the shell
            self._log_once("error", "", logging.ERROR,
                           "guest-port isolation failed unexpectedly", exc_info=True)

    def retry_in(self) -> float | None:
        """Seconds until `apply` should be called again to retry what is pending (None:
        nothing is pending; wait for the next port event)."""
        if not self._pending:
            return None
        return max(0.0, self._retry_at - self._clock())

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._net is not None:
            try:
                self._net.close()
            except Exception:
                LOG.debug("closing the netlink socket", exc_info=True)
            self._net = None

    # ------------------------------------------------------------ internals
    def _apply_pending(self) -> None:
        unknown = [n for n, present in self._pending.items() if present and n not in self.types]
        if self.netdev is None or unknown:
            if self._clock() < self._retry_at:
                return
            if not self._refresh():
                self._retry_at = self._clock() + RETRY_SECONDS
                return
        if not self.netdev:
            self._pending.clear()   # kernel datapath: the host stack never sees port frames
            return
        pending, self._pending = self._pending, {}
        for name, present in pending.items():
            if present:
                self._isolate(name)
            else:
                self._release(name)

    def _refresh(self) -> bool:
        """Read the bridge from OVSDB: datapath type (kept from the first read) and
        interface types.  False when that failed (logged once)."""
        try:
            info = self._bridge_info(self.bridge, self.remote)
        except Exception as exc:  # noqa: BLE001 - OVSDB unreachable, slow, ...
            self._log_once("ovsdb", "", logging.WARNING,
                           "guest-port isolation: cannot read bridge %s from OVSDB (%s); "
                           "retrying", self.bridge, exc)
            return False
        if info is None:
            self._log_once("ovsdb", "", logging.WARNING,
                           "guest-port isolation: bridge %s is not in OVSDB", self.bridge)
            return False
        self._logged.discard(("ovsdb", ""))
        if self.netdev is None:
            from wlbridge.host.datapath import traits

            self.netdev = traits(info.datapath_type).isolate_host_stack
            LOG.info("bridge %s: datapath %s%s", self.bridge, info.datapath_type or "system",
                     ": the host stack will ignore guest ports" if self.netdev else "")
        self.types = {i.name: i.type for p in info.ports for i in p.interfaces}
        from wlbridge.host.attach import GUEST_KEY

        self.attached = {i.name: dict(i.external_ids) for p in info.ports for i in p.interfaces
                         if GUEST_KEY in i.external_ids}
        self._reap_vanished(list(self.attached))
        if self._on_interfaces is not None:
            guests = {i.name: dict(i.external_ids) for p in info.ports for i in p.interfaces
                      if i.type in GUEST_TYPES and i.name not in (self.bridge, self.uplink)}
            try:
                self._on_interfaces(guests)
            except Exception:  # noqa: BLE001 - never raise into the worker
                self._log_once("interfaces", "", logging.ERROR,
                               "handling the bridge's interface records failed", exc_info=True)
        return True

    def _isolate(self, name: str) -> None:
        kind = self.types.get(name)
        if kind is None:
            LOG.debug("%s is no longer in OVSDB: not isolating it", name)
            return
        if kind not in GUEST_TYPES:
            self._log_once("type", name, logging.INFO,
                           "port %s (type %s) is not a guest's interface: left alone", name, kind)
            return
        from pyroute2.netlink.exceptions import NetlinkError

        from wlbridge.host.hostnet import IsolationError

        try:
            net = self._hostnet()
            changes = net.isolate_guest_port(name, self._program())
        except LookupError:
            LOG.debug("port %s has no interface in this namespace: nothing to isolate", name)
            return
        except (IsolationError, OSError, NetlinkError) as exc:
            self._log_once("isolate", name, logging.WARNING,
                           "cannot keep the host stack off guest port %s: %s (it will also "
                           "answer that guest's ARP for the host with %s's own MAC)",
                           name, exc, name)
            return
        self._logged.discard(("isolate", name))
        self.isolated.add(name)
        for line in changes:
            LOG.info("%s", line)

    def _release(self, name: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        self.isolated.discard(name)
        self.types.pop(name, None)    # re-added, it may be another kind of interface
        try:
            for line in self._hostnet().release_guest_port(name):
                LOG.info("port %s left the bridge: %s", name, line)
        except (OSError, NetlinkError) as exc:
            self._log_once("release", name, logging.WARNING,
                           "cannot remove the guest-port filter from %s: %s", name, exc)

    def _reap_vanished(self, names: list[str]) -> None:
        """Remove the attached ports among `names` whose interface is gone."""
        if not names:
            return
        try:
            net = self._hostnet()
            gone = [(n, self.attached[n]) for n in names if net.link_index(n) is None]
            if not gone:
                return
            lines = self._reap(self.bridge, self.remote, gone)
        except Exception as exc:  # noqa: BLE001 - OVSDB unreachable...: the next read retries
            self._log_once("reap", "", logging.WARNING,
                           "cannot remove vanished guest ports %s: %s", ", ".join(names), exc)
            return
        self._logged.discard(("reap", ""))
        for name, _ in gone:
            self.attached.pop(name, None)
        for line in lines:
            LOG.info("%s", line)

    def _hostnet(self) -> Any:
        if self._net is None:
            self._net = self._hostnet_factory()
        return self._net

    def _program(self) -> int | None:
        """One drop-all eBPF program shared by every guest port's filter (None if the
        kernel refused it: `isolate_guest_port` then falls back on its own)."""
        if self._fd is None and not self._fd_failed:
            try:
                self._fd = self._load_program()
            except OSError as exc:
                self._fd_failed = True
                LOG.info("cannot load the guest-port eBPF program (%s); trying per port", exc)
        return self._fd

    def _log_once(self, what: str, name: str, level: int, msg: str, *args: Any,
                  exc_info: bool = False) -> None:
        if (what, name) in self._logged:
            return
        self._logged.add((what, name))
        LOG.log(level, msg, *args, exc_info=exc_info)


def _ovsdb_bridge_info(bridge: str, remote: str | None) -> Any:
    from wlbridge.host import ovsdb

    return ovsdb.bridge_info(bridge, remote=remote, timeout=5.0)


def _hostnet() -> Any:
    from wlbridge.host.hostnet import HostNet

    return HostNet()


def _reap_attached(bridge: str, remote: str | None, gone: list[tuple[str, dict]]) -> list[str]:
    from wlbridge.host import ovsdb
    from wlbridge.host.attach import remove_guest

    with ovsdb.connect(remote, 5.0) as db:
        return [f"{line} (its interface vanished)" for name, ids in gone
                for line in remove_guest(bridge, name, ids, db, None)]


def _load_drop_all() -> int:
    from wlbridge.host.hostnet import load_isolation_program

    return load_isolation_program((), b"wlbridge_guest")
