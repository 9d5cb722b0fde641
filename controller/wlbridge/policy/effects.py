"""What the core's policies decide, as data: `learning` and `dhcp_service` read the model and
return these; the core applies them in one place (`Core._apply`) with one ordering rule:

1. deliveries (`Deliver`: a frame sent out of a given port, e.g. a DHCP reply the guest waits
   for) first,
2. then the model changes (`LearnMac`, `Bind`, `Unbind`, `Refresh`, `JoinGroup`, `LeaveGroup`,
   and from the core's other events `HostAddresses`, `SetUplink`, `AddGuest`, `DropGuest`,
   `Park`, `Adopt`, `SyncPort`, `LeaveLan`, and from the fleet store `SetRemote`,
   `NoteConflict`, `ForgetDeparted`), in the order given, whose touched flow sections are synced
   once (the meters of `SyncPort`'s port before them; every section after a `SetUplink`),
3. re-injections (`Reinject`: the frame that taught something goes back to table 0, where
   the new flows now let it through), announcements (`Announce`, `Reannounce`) and carrier
   bounces (`Bounce`) last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from wlbridge.model.fleet import Claim, Conflict, HostSeen


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
    """The guest on `port_no` is `mac`: learned from its first frame, or announced by the
    host before it (`source` "libvirt": the MAC libvirt wrote on the VM's interface)."""

    port_no: int
    mac: str
    source: str = "learned"


@dataclass(frozen=True)
class Bind:
    """`ip` belongs to the guest on `port_no` (replacing another guest's binding of it)."""

    port_no: int
    ip: str
    source: str  # "arp", "ipv4", "dhcp"
    expires: float | None = None
    lease: int | None = None
    mac: str | None = None  # the guest behind the port (None: the port's first MAC)


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



@dataclass(frozen=True)
class HostAddresses:
    """The host's own IPv4 and IPv6 addresses are now `ips` (guests may not bind them), the
    directed broadcast addresses of its IPv4 subnets `broadcasts` (restored to guests)."""

    ips: frozenset
    broadcasts: frozenset = frozenset()


@dataclass(frozen=True)
class SetUplink:
    """The uplink is port `port_no` with the station MAC `station_mac` (None: no uplink);
    every flow section depends on it."""

    port_no: int | None
    station_mac: str | None


@dataclass(frozen=True)
class AddGuest:
    """A new guest port (with its configured MAC, if any)."""

    port_no: int
    name: str
    mac: str | None = None


@dataclass(frozen=True)
class DropGuest:
    """The guest port `port_no` is gone (or renamed): forget it with its bindings."""

    port_no: int


@dataclass(frozen=True)
class Park:
    """The guest port `port_no` is missing (or renamed) at a reconnect: keep its MAC,
    bindings and memberships by port name until its port comes back."""

    port_no: int


@dataclass(frozen=True)
class Adopt:
    """Saved or parked records whose port now exists are applied to it."""


@dataclass(frozen=True)
class SyncPort:
    """A guest port was (re)reported: bring its meter and its flows (its own, its bindings',
    the static section's) up to date."""

    port_no: int


@dataclass(frozen=True)
class Announce:
    """Announce guest and host addresses from the station MAC (gratuitous ARP, unsolicited
    NA): `ips` (a guest that moved here), or every one (None: a new station MAC)."""

    ips: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SetRemote:
    """The other live hosts and the addresses they hold, from the fleet store (replacing
    the last)."""

    hosts: tuple[HostSeen, ...]
    claims: tuple[Claim, ...]


@dataclass(frozen=True)
class ForgetDeparted:
    """Bindings whose port left, taken over by another host: no longer claimed here."""

    ips: tuple[str, ...]


@dataclass(frozen=True)
class NoteConflict:
    """An address refused here because another host holds it: recorded for status and the
    store."""

    conflict: Conflict


@dataclass(frozen=True)
class LeaveLan:
    """The station left the LAN these guest addresses were bound on (`policy.network`):
    guests may not take them again by ARP, IPv4 or ND (a DHCP server of the new LAN may hand
    them out), and saved records of the old LAN are dropped."""

    ips: frozenset


@dataclass(frozen=True)
class Bounce:
    """Take the carrier of these guest ports down and, a moment later, up again (an
    OpenFlow port-mod each way), so the guests' DHCP clients start over."""

    ports: tuple


@dataclass(frozen=True)
class Reannounce:
    """Announce these bound guest addresses again from the station MAC (gratuitous ARP,
    unsolicited NA): the periodic round of `policing`."""

    ips: tuple[str, ...]


# Union, not `|`: the Ryu 4.34 path runs on Python 3.9
Effect = Union[Deliver, Reinject, LearnMac, Bind, Unbind, Refresh, JoinGroup, LeaveGroup,
               HostAddresses, SetUplink, AddGuest, DropGuest, Park, Adopt, SyncPort, Announce,
               Reannounce, LeaveLan, Bounce, SetRemote, NoteConflict, ForgetDeparted]
