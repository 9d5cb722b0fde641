"""What the controller does when the uplink interface changes under it (netlink events from
`wlbridge.host.host_events`).

* **Carrier lost / back** (the station reassociates, roams to another AP of the network):
  nothing to repair — the interface, its OVS port and the flows stay.  OVS reports the
  carrier in an OpenFlow port-status; when it comes back the core announces every guest and
  host address with gratuitous ARPs (`Core.port_added`).  The host's own DHCP client is
  told through `on_reassociated` (the app attaches `wlbridge.host.lease_renewal` there: a
  client that managed ``wlan0`` renews after a reassociation, and so must the one that
  manages the bridge now).
* **Removed, then back under a new interface index** (driver reload, ``iw`` re-creating the
  interface): the interface lost what setup gave it, and the userspace datapath reads the
  old one; `wlbridge.host.uplink_care.repair_uplink` re-plugs the port (same OpenFlow number) and
  prepares the interface again, in a worker (OVSDB can be slow).  The port-status ADD that
  follows makes the core resend the uplink's flows and announce the guests.  Once the new
  interface is plugged in, `on_recreated` is told (the host's DHCP client renews as after
  a reassociation: a reload is one, and a renewal before the re-plug would go nowhere).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from wlbridge.host.host_events import (
    APPEARED,
    CARRIER_DOWN,
    CARRIER_UP,
    RECREATED,
    REMOVED,
    LinkState,
)

LOG = logging.getLogger("wlbridge.app")

Repair = Callable[[str, str, "str | None"], "tuple[list[str], list[str]]"]


class UplinkEvents:
    """Reacts to uplink changes (see the module docstring).  `spawn` runs a function in a
    worker (the framework's hub); `repair` is `uplink_care.repair_uplink` (a seam)."""

    def __init__(self, bridge: str, uplink: str, ovsdb_remote: str | None,
                 spawn: Callable[[Callable[[], None]], object],
                 repair: Repair | None = None) -> None:
        self.bridge, self.uplink, self.remote = bridge, uplink, ovsdb_remote
        self._spawn = spawn
        self._repair = repair or _repair_uplink
        self._lock = threading.Lock()
        self._repairing = False
        self._again = False
        #: called (no arguments) when the uplink's carrier comes back: a reassociation
        self.on_reassociated: list[Callable[[], None]] = []
        #: called (no arguments) once a re-created uplink has been re-plugged and prepared
        self.on_recreated: list[Callable[[], None]] = []
        self.repairs = 0

    def uplink_changed(self, change: str, state: LinkState | None) -> None:
        if change == REMOVED:
            LOG.warning("uplink %s was removed: guests and host are cut off until it comes "
                        "back", self.uplink)
        elif change in (APPEARED, RECREATED):
            LOG.warning("uplink %s is back (interface index %s): re-plugging it into %s and "
                        "preparing it again", self.uplink, state.index if state else "?",
                        self.bridge)
            self._start_repair()
        elif change == CARRIER_DOWN:
            LOG.info("uplink %s lost its carrier (disassociated?): flows stay", self.uplink)
        elif change == CARRIER_UP:
            LOG.info("uplink %s has carrier again (reassociated): guests are announced",
                     self.uplink)
            _run_hooks(self.on_reassociated, "reassociation")

    def _start_repair(self) -> None:
        with self._lock:
            if self._repairing:
                self._again = True   # re-created again meanwhile: repair once more after
                return
            self._repairing = True
        self._spawn(self._repair_loop)

    def _repair_loop(self) -> None:
        while True:
            repaired = False
            try:
                changes, warnings = self._repair(self.bridge, self.uplink, self.remote)
                self.repairs += 1
                for line in changes:
                    LOG.info("uplink %s: %s", self.uplink, line)
                for line in warnings:
                    LOG.warning("uplink %s: %s", self.uplink, line)
                repaired = True
            except Exception as exc:  # noqa: BLE001 - OVSDB or netlink failed: say so
                LOG.error("could not re-plug the re-created uplink %s (%s); run `wlbridge "
                          "setup --uplink %s --bridge %s` again", self.uplink, exc,
                          self.uplink, self.bridge)
            with self._lock:
                again, self._again = self._again, False
                if not again:
                    self._repairing = False
            if repaired and not again:     # re-created again meanwhile: after that repair
                _run_hooks(self.on_recreated, "re-created uplink")
            if not again:
                return


def _run_hooks(hooks: list[Callable[[], None]], what: str) -> None:
    for hook in list(hooks):
        try:
            hook()
        except Exception:
            LOG.exception("%s hook failed", what)


def _repair_uplink(bridge: str, uplink: str, remote: str | None) -> tuple[list[str], list[str]]:
    from wlbridge.host.uplink_care import repair_uplink

    return repair_uplink(bridge, uplink, remote)
