"""What the core's policies decide, as data: `learning` and `dhcp_service` read the model and
return these; the core applies them in one place (`Core._apply`) with one ordering rule:

1. deliveries (`Deliver`: a frame sent out of a given port, e.g. a DHCP reply the guest waits
   for) first,
2. then the model changes (`LearnMac`, `Bind`, `Unbind`, `Refresh`, `JoinGroup`,
   `LeaveGroup`), in the order given, whose
   touched flow sections are synced once,
3. re-injections (`Reinject`: the frame that taught something goes back to table 0, where
   the new flows now let it through) last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Deliver:
    """Send `data` out of `out_port` (a port number or a reserved port) as from `in_port`."""

    in_port: int
    out_port: int
    data: bytes


@dataclass(frozen=True)
class Reinject:
    """Send `data` through the tables again, as if it had just arrived on `in_port`."""

    in_port: int
    data: bytes


@dataclass(frozen=True)
class LearnMac:
    """The guest on `port_no` is `mac` (learned from its first frame)."""

    port_no: int
    mac: str


@dataclass(frozen=True)
class Bind:
    """`ip` belongs to the guest on `port_no` (replacing another guest's binding of it)."""

    port_no: int
    ip: str
    source: str  # "arp", "ipv4", "dhcp"
    expires: float | None = None
    lease: int | None = None


@dataclass(frozen=True)
class Unbind:
    """`ip` is no longer bound (`why` is counted)."""

    ip: str
    why: str


@dataclass(frozen=True)
class Refresh:
    """`ip` is already bound as claimed: make sure its flows are installed."""

    ip: str


@dataclass(frozen=True)
class JoinGroup:
    """The guest on `port_no` is a member of multicast `group` until `expires` (a new
    membership, or a report refreshing one)."""

    port_no: int
    group: str
    expires: float


@dataclass(frozen=True)
class LeaveGroup:
    """The guest on `port_no` is no longer a member of `group` (`why` is counted)."""

    port_no: int
    group: str
    why: str  # "leave", "timeout"


# Union, not `|`: the Ryu 4.34 path runs on Python 3.9
Effect = Union[Deliver, Reinject, LearnMac, Bind, Unbind, Refresh, JoinGroup, LeaveGroup]
