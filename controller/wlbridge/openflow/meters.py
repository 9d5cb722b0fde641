"""Per-guest-port OpenFlow meters: which exist on the switch, and the meter-mods to keep them.

Each guest port's controller-bound traffic goes through the meter whose id is the port
number.  The switch reports its largest meter id (0: no meter support) before the core
installs flows; without meters, the bridge's `controller_rate_limit` is the only limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from wlbridge.compat import ofp
from wlbridge.openflow import ofmsg


class Meters:
    """The meters wlbridge believes exist on the switch."""

    def __init__(self, enabled: bool, pps: int) -> None:
        self.enabled = enabled
        self.pps = pps
        self.max: int | None = None  # None: not reported, assume OpenFlow's range
        self.ids: set[int] = set()

    def reported(self, max_meter: int, existing: Iterable[int] | None) -> None:
        self.max = max(0, int(max_meter))
        if existing is not None:
            self.ids = {int(m) for m in existing}

    @property
    def in_use(self) -> bool:
        return self.enabled and self.max != 0

    @property
    def limit(self) -> int:
        """The largest usable meter id."""
        return self.max or ofp.OFPM_MAX

    def meter_id(self, port_no: int) -> int | None:
        """The meter of a guest port, if meters are in use for it."""
        return port_no if self.in_use and 0 < port_no <= self.limit else None

    def ensure(self, ports: Iterable[int]) -> list:
        """Create (or reconfigure) the meters of these guest ports, before flows use them."""
        msgs = []
        for port_no in ports:
            meter_id = self.meter_id(port_no)
            if meter_id is None:
                continue
            msgs.append(ofmsg.meter_set(meter_id, self.pps, meter_id in self.ids))
            self.ids.add(meter_id)
        return msgs

    def delete(self, meter_ids: Iterable[int]) -> list:
        msgs = []
        for meter_id in meter_ids:
            msgs.append(ofmsg.meter_delete(meter_id))
            self.ids.discard(meter_id)
        return msgs

    def stale(self, guest_ports: Iterable[int]) -> list:
        """Delete meters no guest port uses (after the flows stopped referring to them)."""
        wanted = {self.meter_id(p) for p in guest_ports}
        return self.delete(sorted(self.ids - wanted))
