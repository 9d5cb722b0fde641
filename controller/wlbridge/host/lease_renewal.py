"""The host's DHCP client renews after a reassociation, as it would on wlan0 (issue 13, 4).

On ``wlan0`` a reassociation (carrier back: the station roamed, or the AP came back) makes
NetworkManager, ifupdown's dhclient under a carrier hook, and friends confirm the lease at
once.  After `wlbridge setup` the host's address lives on the bridge, whose carrier never
changes: nobody would notice.  `LeaseRenewal.reassociated` is attached to
`link_events.UplinkEvents.on_reassociated` and does what NetworkManager does then:

* a dhclient the address hand-off started on the bridge (``--address-manager dhclient``, and
  ``networkmanager``, where NetworkManager leaves the bridge to wlbridge's dhclient): ended
  without release (SIGTERM, as the hand-off stops one) and started again with the same
  command line, so it asks for its current address at once (INIT-REBOOT: a DHCPREQUEST).
  The address stays on the bridge meanwhile; if the new one does not start, the stop is
  undone (`addr_handoff.execute`: the client is started again);
* the dhcpcd instance the hand-off started on the bridge: told to rebind (SIGHUP, as
  ``dhcpcd -n`` would; it confirms its lease at once, as dhcpcd does on wlan0 when the
  carrier returns);
* anyone else (static addresses, ``keep``, systemd-networkd, no hand-off): nothing.

One log line says what was done.  Nothing here raises into the controller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from wlbridge.host.addr_handoff import HANDOFF_KEY, HandoffError, HostOps, Plan, Step, execute

LOG = logging.getLogger("wlbridge.app")
REASSOCIATED, RECREATED = "uplink reassociated", "uplink re-created"


def renewal(plan: Plan | None) -> tuple[list[Step], str]:
    """What a reassociation does for `plan` (the bridge's hand-off record, None: none):
    the steps (stop, start again) of each dhclient the hand-off started, and one line
    saying what is done (or why nothing)."""
    if plan is None:
        return [], "no address hand-off recorded for the bridge: no DHCP client to renew"
    if plan.manager.startswith("dhcpcd on "):
        return ([Step("rebind", f"dhcpcd on {plan.bridge} told to rebind (SIGHUP)",
                      {"iface": plan.bridge})],
                f"{plan.manager}: told to rebind (SIGHUP) to confirm its lease at once")
    starts = [s for s in plan.setup if s.kind == "start"]
    if not starts:
        return [], f"the host's address is managed by {plan.manager}: nothing to renew"
    steps: list[Step] = []
    for start in starts:
        argv, pidfile = start.data["argv"], start.data["pidfile"]
        steps += [Step("stop", f"{argv[0]} on {plan.bridge} stopped (SIGTERM: no release)",
                       {"argv": argv, "pidfile": pidfile, "pid": 0}),
                  start]
    clients = len(starts)
    return steps, (f"{plan.manager}: restarted{f' ({clients} clients)' if clients > 1 else ''}"
                   f" to confirm its lease at once (INIT-REBOOT)")


def read_plan(bridge: str, remote: str | None) -> Plan | None:
    """The bridge's hand-off record from OVSDB (None: none); ValueError if unreadable."""
    from wlbridge.host import ovsdb

    with ovsdb.connect(remote, 5.0) as db:
        info = db.bridge_info(bridge)
    text = info.external_ids.get(HANDOFF_KEY) if info else None
    return Plan.from_json(text) if text else None


class LeaseRenewal:
    """Renews the bridge's DHCP client on reassociation, in a worker (`spawn`: the
    framework's hub): a stop waits for the client to end.  Reassociations while one renewal
    runs make one more after it.  `read` and `ops` are seams for tests."""

    def __init__(self, bridge: str, remote: str | None,
                 spawn: Callable[[Callable[[], None]], object],
                 read: Callable[[str, str | None], Plan | None] = read_plan,
                 ops: Callable[[], HostOps] = HostOps) -> None:
        self.bridge, self.remote = bridge, remote
        self._spawn, self._read, self._ops = spawn, read, ops
        self._lock = threading.Lock()
        self._busy = self._again = False
        self._why = REASSOCIATED
        self.renewals = 0

    def reassociated(self) -> None:
        """The uplink has carrier again.  Never blocks, never raises."""
        self._request(REASSOCIATED)

    def recreated(self) -> None:
        """The uplink was re-created (driver reload) and is plugged in again.  Never
        blocks, never raises."""
        self._request(RECREATED)

    def _request(self, why: str) -> None:
        with self._lock:
            self._why = why
            if self._busy:
                self._again = True
                return
            self._busy = True
        try:
            self._spawn(self._loop)
        except Exception:
            LOG.exception("cannot start the DHCP client renewal")
            with self._lock:
                self._busy = False

    def renew(self) -> str:
        """One renewal; the line to log.  Raises what reading the record or the steps
        raise (see `_loop`)."""
        steps, line = renewal(self._read(self.bridge, self.remote))
        if steps:
            execute(steps, self._ops(), lambda _line: None)
            self.renewals += 1
        return line

    def _loop(self) -> None:
        while True:
            why = self._why
            try:
                LOG.info("%s: %s", why, self.renew())
            except HandoffError as exc:
                LOG.error("%s: could not renew the bridge's DHCP client "
                          "(%s)%s; it keeps its lease and renews when it is due", why, exc,
                          f"; undo: {'; '.join(exc.undo_errors)}" if exc.undo_errors else "")
            except Exception as exc:  # noqa: BLE001 - OVSDB away, bad record: say so, go on
                LOG.error("%s: the bridge's DHCP client not renewed (%s)", why, exc)
            with self._lock:
                if not self._again:
                    self._busy = False
                    return
                self._again = False
