"""The hand-off's data: a `Plan` of `Step`s, its stored form, and the refusals and failures.

A plan is saved as JSON in the bridge's ``external_ids:wlbridge-handoff`` (`HANDOFF_KEY`)
in the transaction that creates the bridge, so teardown gives address management back from
the bridge alone, also after a crash -- and also with a newer wlbridge than the one that
set the bridge up.  A step is stored as its kind, its version (omitted when 1, as
records written before versions existed), one human line and its arguments; what a kind
and version mean, and which arguments they take, is `wlbridge.host.addr_handoff.steps`'s
registry.  Changing a step's arguments means registering a new version of its kind and
keeping the old one (tests/unit/data/handoff_plan_v1.json: records of version 1 must
still tear down).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from wlbridge.host import addr_manager as am

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

HANDOFF_KEY = "wlbridge-handoff"
PLAN_VERSION = 1
PHASES = ("setup", "before_move", "teardown_before", "teardown_after")


class HandoffRefused(Exception):
    """A hand-off that is not safe: `reason` (one line) and `manual` (commands)."""

    def __init__(self, reason: str, manual: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.manual = list(manual)

    def one_line(self) -> str:
        hint = "; ".join(self.manual)
        return (f"{self.reason}; to do it by hand: {hint}" if hint else self.reason)


class HandoffError(Exception):
    """A step failed; the steps done before it were undone (see `undo_errors`)."""

    def __init__(self, message: str, undo_errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.undo_errors = list(undo_errors)


@dataclass(frozen=True)
class Step:
    kind: str                  # a kind of `steps.REGISTRY`
    text: str                  # one human line
    data: dict[str, Any] = field(default_factory=dict, hash=False)   # its arguments
    version: int = 1           # of the kind (records without it: 1)

    def stored(self) -> dict[str, Any]:
        out = asdict(self)
        if self.version == 1:
            del out["version"]          # as written before step versions existed
        return out


@dataclass
class Plan:
    mode: str                  # the mode that produced it (after "auto" resolved)
    original: str              # who managed the uplink (addr_manager.MANAGERS / unknown)
    detail: str                # addr_manager.Detection.detail
    manager: str               # who manages the host's address afterwards (for status)
    uplink: str
    bridge: str
    setup: list[Step] = field(default_factory=list)
    before_move: list[Step] = field(default_factory=list)   # setup, before addresses move
    teardown_before: list[Step] = field(default_factory=list)   # addresses still on bridge
    teardown_after: list[Step] = field(default_factory=list)    # bridge gone
    notes: list[str] = field(default_factory=list)
    lease_file: str | None = None      # the bridge client's lease file (status)
    default_metric: int | None = None  # the uplink's IPv4 default route's metric (moved)
    version: int = PLAN_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        for phase in PHASES:
            data[phase] = [s.stored() for s in getattr(self, phase)]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """The plan of a stored record; ValueError when it is not one.  Its steps are not
        checked here (`steps.bind` does, before any runs)."""
        try:
            data = json.loads(text)
            if data.get("version") != PLAN_VERSION:
                raise ValueError(f"unsupported hand-off record version {data.get('version')!r}")
            steps = {k: [Step(**s) for s in data.pop(k, [])] for k in PHASES}
            return cls(**data, **steps)
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"invalid hand-off record: {exc}") from exc


# ---- steps every manager's plan shares ------------------------------------------------
def sysctl_steps(uplink_sysctls: dict[str, str], bridge: str) -> list[Step]:
    """One step copying the uplink's IPv6 RA settings to the bridge (none if unreadable)."""
    values = {n: uplink_sysctls[n] for n in am.IPV6_SYSCTLS if n in uplink_sysctls}
    if not values:
        return []
    text = " ".join(f"{n}={v}" for n, v in values.items())
    return [Step("sysctl", f"IPv6 RA settings copied to {bridge}: {text}",
                 {"paths": {f"/proc/sys/net/ipv6/conf/{bridge}/{n}": v
                            for n, v in values.items()}})]


def forever(iface: str, addrs: Sequence[Address], why: str) -> list[Step]:
    """Leased `addrs` on `iface` made unlimited until `why` renews them there."""
    if not addrs:
        return []
    return [Step("forever", f"{', '.join(map(str, addrs))} on {iface}: no expiry until "
                 f"{why} renews it", {"iface": iface, "addresses": [asdict(a) for a in addrs]})]


def manual(uplink: str, bridge: str) -> list[str]:
    """What to do by hand when a hand-off is refused."""
    return [(f"stop the DHCP client on {uplink} (e.g. `kill $(cat PIDFILE)` for dhclient, "
             f"`nmcli device modify {uplink} ipv4.method disabled`)"),
            f"start one on {bridge} (`dhclient {bridge}`)",
            "see docs/troubleshooting.md"]
