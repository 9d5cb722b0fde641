"""The fleet as the core sees it: the bindings other hosts hold (from the fleet store,
`wlbridge.host.fleet_store`) and the addresses refused because another host holds them.

Plain data: the host layer reads the store, the core decides from these (`policy.fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CONFLICTS = 64  # refusals kept for status and the store (the oldest go first)


@dataclass(frozen=True)
class Claim:
    """An address another host's guest holds, as the store shows it."""

    host: str
    ip: str
    mac: str
    claimed_at: float
    guest: str = ""
    expires: float | None = None  # its DHCP lease's end (None: idle-timed)


@dataclass(frozen=True)
class HostSeen:
    """A host's row in the store: its name and when it last said it was alive."""

    name: str
    last_seen: float
    station_mac: str = ""
    # the addresses it refused because another host holds them: ip -> what it says
    conflicts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Departed:
    """A binding whose port left this host (a VM migrated away, a namespace moved): still
    claimed in the store until `until`, so that the host the guest arrives on can take its
    addresses over from the guest's first frame (a RARP carries none)."""

    ip: str
    mac: str
    guest: str
    claimed_at: float
    until: float


@dataclass(frozen=True)
class Conflict:
    """`mac` here claimed `ip`, which `holder` holds for `holder_mac`: refused here."""

    ip: str
    mac: str
    holder: str
    holder_mac: str
    at: float
