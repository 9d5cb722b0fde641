"""Guest records waiting for their port: restored from the state file, or parked when a
port was missing at a reconnect.  Keyed by port *name* (port numbers can change)."""

from __future__ import annotations

import logging
from collections import Counter

from wlbridge.model.state import Binding, GuestPort, Model

LOG = logging.getLogger("wlbridge.core")


class Parked:
    """Guest MACs by port name and binding records, applied when their port exists."""

    def __init__(self, limit: int, guests: dict[str, dict] | None = None,
                 bindings: list[dict] | None = None) -> None:
        self.limit = limit
        self.guests: dict[str, dict] = dict(guests or {})
        self.bindings: list[dict] = list(bindings or [])

    def adopt(self, model: Model, counters: Counter, now: float) -> None:
        """Give ports that now exist their saved MAC and (unexpired) bindings."""
        by_name = {g.name: g for g in model.guests.values()}
        for name, rec in list(self.guests.items()):
            g = by_name.get(name)
            if g is not None:
                if g.mac is None and rec["mac"] not in model.by_mac:
                    g.mac, g.mac_source = rec["mac"], "state"
                    model.by_mac[g.mac] = g
                del self.guests[name]
        keep = []
        for rec in self.bindings:
            g = by_name.get(rec["port"])
            if g is None:
                keep.append(rec)
                continue
            if rec["expires"] is not None and rec["expires"] <= now:
                continue
            if g.mac != rec["mac"] or rec["ip"] in model.bindings or rec["ip"] in model.host_ips:
                continue
            model.bindings[rec["ip"]] = Binding(rec["ip"], g.port_no, rec["mac"], rec["source"],
                                               rec["learned_at"], rec["expires"], rec["lease"])
            g.ips.add(rec["ip"])
            counters["bindings.restored"] += 1
        self.bindings = keep

    def expire(self, now: float) -> bool:
        """Drop waiting bindings whose DHCP lease has ended; True if any was dropped."""
        keep = [rec for rec in self.bindings
                if rec["expires"] is None or rec["expires"] > now]
        dropped = len(keep) != len(self.bindings)
        self.bindings = keep
        return dropped

    def next_due(self) -> float | None:
        """When the first waiting binding's DHCP lease ends (None: none will)."""
        return min((rec["expires"] for rec in self.bindings if rec["expires"] is not None),
                   default=None)

    def unconfirmed(self, live_names: set[str]) -> list[dict]:
        """Waiting records grouped by port name, as `wlbridge status` lists guests: saved or
        parked, not (yet) confirmed by the switch (ports with a live guest are left out)."""
        ports: dict[str, dict] = {}
        for name, rec in self.guests.items():
            if name not in live_names:
                ports[name] = {"port": name, "mac": rec["mac"], "mac_source": rec["mac_source"],
                               "ips": []}
        for rec in self.bindings:
            if rec["port"] in live_names:
                continue
            entry = ports.setdefault(rec["port"], {"port": rec["port"], "mac": rec["mac"],
                                                   "mac_source": "state", "ips": []})
            entry["ips"].append(rec)
        return [ports[name] for name in sorted(ports)]

    def park(self, bindings: dict[str, Binding], counters: Counter, guest: GuestPort) -> None:
        """Keep a vanished guest port's MAC and bindings (removed from `bindings`)."""
        if guest.mac:
            self.guests.pop(guest.name, None)
            self.guests[guest.name] = {"mac": guest.mac, "mac_source": guest.mac_source}
        for ip in sorted(guest.ips):
            b = bindings.get(ip)
            if b is not None and b.port_no == guest.port_no:
                del bindings[ip]
                self.bindings.append({
                    "ip": ip, "port": guest.name, "mac": b.mac, "source": b.source,
                    "learned_at": b.learned_at, "expires": b.expires, "lease": b.lease})
                counters["bindings.parked"] += 1
        del self.bindings[:-self.limit]  # parked records are bounded like live ones
        for name in list(self.guests)[:-self.limit]:
            del self.guests[name]
        LOG.info("port %s is gone: keeping its guest MAC and %d addresses in case it comes "
                 "back", guest.name, len(guest.ips))
