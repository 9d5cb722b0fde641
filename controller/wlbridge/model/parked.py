"""Guest records waiting for their port: restored from the state file, or parked when a
port was missing at a reconnect.  Keyed by port *name* (port numbers can change).

Part of the model: only `state.Model` changes it (`park` and `adopt` move records between
the live guests and these, `load_saved` and `expire_parked` load and expire them).
"""

from __future__ import annotations


class Parked:
    """Guest MACs by port name, binding records and group memberships, waiting for their
    port.  Bounded like the live ones (`limit` bindings and guests, `max_groups`
    memberships)."""

    def __init__(self, limit: int = 4096, max_groups: int = 1024) -> None:
        self.limit = limit
        self.max_groups = max_groups
        self.guests: dict[str, dict] = {}
        self.bindings: list[dict] = []
        self.groups: list[dict] = []  # {"group", "port" (name), "expires"}

    def load(self, guests: dict[str, dict], bindings: list[dict], groups: list[dict]) -> None:
        """Replace the waiting records with those of a saved state."""
        self.guests = dict(guests)
        self.bindings = list(bindings)
        self.groups = list(groups)[:self.max_groups]

    def expire(self, now: float) -> bool:
        """Drop waiting bindings whose DHCP lease has ended and memberships that have ended;
        True if any was dropped."""
        keep = [rec for rec in self.bindings
                if rec["expires"] is None or rec["expires"] > now]
        groups = [rec for rec in self.groups if rec["expires"] > now]
        dropped = len(keep) != len(self.bindings) or len(groups) != len(self.groups)
        self.bindings, self.groups = keep, groups
        return dropped

    def forget_bindings(self) -> int:
        """Drop every waiting binding (they belong to a LAN the station left); how many."""
        dropped, self.bindings = len(self.bindings), []
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
                               "macs": [rec["mac"], *rec.get("macs", [])], "ips": []}
        for rec in self.bindings:
            if rec["port"] in live_names:
                continue
            entry = ports.setdefault(rec["port"], {"port": rec["port"], "mac": rec["mac"],
                                                   "mac_source": "state", "macs": [rec["mac"]],
                                                   "ips": []})
            entry["ips"].append(rec)
        return [ports[name] for name in sorted(ports)]

    def keep(self, name: str, mac: str | None, mac_source: str, bindings: list[dict],
             groups: list[dict], others: list[str] | None = None) -> None:
        """Keep a vanished guest port's MAC (and its `others` behind it), binding records
        and memberships (the oldest records beyond the bounds are dropped)."""
        if mac:
            self.guests.pop(name, None)
            self.guests[name] = {"mac": mac, "mac_source": mac_source,
                                 "macs": list(others or [])}
        self.bindings += bindings
        self.groups += groups
        del self.bindings[:-self.limit]
        del self.groups[:-self.max_groups]
        for old in list(self.guests)[:-self.limit]:
            del self.guests[old]

    def take(self, names: set[str], now: float) -> tuple[dict[str, dict], list[dict],
                                                        list[dict]]:
        """Remove and return the records of the ports named `names` (guest records by name,
        unexpired bindings, unexpired memberships); expired ones of them are dropped."""
        guests = {name: self.guests.pop(name) for name in list(self.guests) if name in names}
        bindings, waiting = [], []
        for rec in self.bindings:
            if rec["port"] not in names:
                waiting.append(rec)
            elif rec["expires"] is None or rec["expires"] > now:
                bindings.append(rec)
        self.bindings = waiting
        groups, waiting = [], []
        for rec in self.groups:
            if rec["port"] not in names:
                waiting.append(rec)
            elif rec["expires"] > now:
                groups.append(rec)
        self.groups = waiting
        return guests, bindings, groups
