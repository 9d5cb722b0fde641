"""The controller's host integration, imported once, by one thread at a time, after the
switch connects.

The host modules (pyroute2's netlink stack, port isolation, the netlink watcher, the uplink's
events, the lease renewal, the address hand-off's status) are not needed for the first
connection, and importing them takes a third of ``import wlbridge_app``: the app imports them
after the connect.  Several threads want them then (the isolation worker at the first port
description, the netlink watcher after the first resync, the status server, the station MAC
set through netlink), and two threads importing parts of one package at once is not safe: the
import system breaks the deadlock of two module locks by handing one thread the other's
half-initialised module (seen: "cannot import name 'AsyncIPRoute' from partially initialized
module", the netlink watcher died).  So every thread asks `HostLoader.ready` first: the first
caller imports all of them, in one order, and the others wait for it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType

HOST_MODULES = (
    "wlbridge.host.pyroute2_lazy",   # first: pyroute2 without its package __init__
    "wlbridge.host.hostnet",
    "wlbridge.host.port_isolation",
    "wlbridge.host.host_events",
    "wlbridge.host.link_events",
    "wlbridge.host.lease_renewal",
    "wlbridge.host.addr_handoff",
    "wlbridge.host.libvirt_vms",
    "wlbridge.host.wireless",
)


class HostLoader:
    """`names` imported by the first thread that calls `ready` (or `module`); the others wait
    for it.  `import_module` is importlib's (a fake in tests)."""

    def __init__(self, names: tuple[str, ...] = HOST_MODULES,
                 import_module: Callable[[str], ModuleType] = importlib.import_module) -> None:
        self.names = tuple(names)
        self.import_module = import_module
        self.lock = threading.Lock()
        self.modules: dict[str, ModuleType] = {}
        self.asked = False    # someone asked: the load is under way or done
        self.loaded = False

    def ready(self) -> None:
        """Return once every host module is imported: import them here if no other thread
        has (an import's exception is raised to this caller, and the next caller tries
        again)."""
        if self.loaded:
            return
        self.asked = True
        with self.lock:
            if self.loaded:
                return
            for name in self.names:
                if name not in self.modules:
                    self.modules[name] = self.import_module(name)
            self.loaded = True

    def module(self, name: str) -> ModuleType:
        """The host module `name` (one of `names`), once all are imported."""
        self.ready()
        return self.modules[name]
