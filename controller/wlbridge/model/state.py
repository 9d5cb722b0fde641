"""What the controller knows: ports, guests, IP bindings and counters.

Plain data with no OpenFlow in it.  `to_dict`/`from_dict` give the persistent
form written to the state directory (ports are identified by *name* there,
because OpenFlow port numbers can change when Open vSwitch restarts).
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from wlbridge.model.addresses import canonical_group, is_guest_ip6, is_unicast_mac
from wlbridge.model.fleet import MAX_CONFLICTS, Claim, Conflict, Departed, HostSeen
from wlbridge.model.parked import Parked

SOURCES = ("arp", "dhcp", "dhcp6", "ipv4", "state", "static", "nd", "ipv6", "fleet")


@dataclass
class Port:
    """A switch port as the datapath reported it."""

    port_no: int
    name: str
    hw_addr: str
    up: bool = True


@dataclass
class Binding:
    """Guest IP -> (port, MAC): where inbound traffic for `ip` is steered."""

    ip: str
    port_no: int
    mac: str
    source: str  # how it was learned: one of SOURCES
    learned_at: float
    expires: float | None = None  # absolute time (DHCP lease end); None: idle-timed by the switch
    lease: int | None = None  # DHCP lease seconds

    def public(self, port_name: str) -> dict[str, Any]:
        data = asdict(self)
        data["port"] = port_name
        return data


@dataclass
class GuestPort:
    """A guest-facing port: the guest MACs behind it (a port may carry several guests: a
    Linux bridge, a VM with nested guests, a container host), the first of them (seen first,
    or configured) as `mac`, and the IPs bound to any of them (each `Binding` names its
    MAC)."""

    port_no: int
    name: str
    mac: str | None = None  # the first of `macs` (None: none known yet)
    mac_source: str = "learned"  # "learned" | "configured" | "state"
    ips: set[str] = field(default_factory=set)
    # every guest MAC behind the port, in the order learned -> how it was learned
    macs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mac is not None and not self.macs:  # made with its one MAC
            self.macs[self.mac] = self.mac_source

    def sibling(self, mac: str) -> str | None:
        """`mac` as a `Bind` effect names it: None for the port's first MAC, else itself."""
        return None if mac == self.mac else mac


@dataclass
class Gone:
    """What forgetting or parking a guest port took with it (the caller counts and syncs)."""

    guest: GuestPort | None
    ips: list[str] = field(default_factory=list)  # its bindings, removed
    groups: list[str] = field(default_factory=list)  # the groups it left


@dataclass
class Adopted:
    """What `Model.adopt` gave the ports that now exist."""

    macs: list[int] = field(default_factory=list)  # guest ports given their saved MAC
    bindings: list[Binding] = field(default_factory=list)  # saved bindings bound again
    groups: list[str] = field(default_factory=list)  # groups rejoined


@dataclass(eq=False)
class Model:
    """The binding table the core owns and its policies read: guest ports, bindings, the
    guest MAC index, group memberships, the host's own addresses, the uplink, the station
    MAC and the records waiting for their port (`parked`).

    Its dicts are read by everyone and written only by its methods, which keep the
    invariants (`invariant_errors`): every binding is on a guest port and in that guest's
    `ips`, every `ips` entry is bound to that guest; the MAC index holds exactly the guests'
    MACs, each to a live guest of that MAC; memberships are of live guest ports.  Each
    method says what it touched, for the caller to count, log and sync."""

    guests: dict[int, GuestPort] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)
    by_mac: dict[str, GuestPort] = field(default_factory=dict)  # guest MAC -> guest port
    host_ips: set[str] = field(default_factory=set)
    uplink: int | None = None
    station_mac: str | None = None
    # multicast group -> {guest port: when its membership ends} (IGMP/MLD snooping)
    groups: dict[str, dict[int, float]] = field(default_factory=dict)
    # the subnet-directed broadcast addresses of the host's networks (from host_addresses)
    host_broadcasts: set[str] = field(default_factory=set)
    parked: Parked = field(default_factory=Parked)  # saved or parked, awaiting their port
    # addresses of the LAN the station left (`leave_lan`): not learned again from guests
    left_behind: set[str] = field(default_factory=set)
    # the fleet store's view (empty without a store): address -> another live host's claim
    remote: dict[str, Claim] = field(default_factory=dict)
    fleet_hosts: dict[str, HostSeen] = field(default_factory=dict)  # the other live hosts
    # addresses refused here because another host holds them (newest last, bounded)
    conflicts: dict[str, Conflict] = field(default_factory=dict)
    # bindings whose port left, still claimed in the fleet store for a while
    departed: dict[str, Departed] = field(default_factory=dict)

    def guest_by_mac(self, mac: str) -> GuestPort | None:
        """The guest port `mac` is behind (None: no guest has it)."""
        g = self.by_mac.get(mac)
        if g is not None and mac in g.macs and self.guests.get(g.port_no) is g:
            return g
        return None

    # ------------------------------------------------------------ guest ports
    def add_guest(self, port_no: int, name: str, mac: str | None = None) -> GuestPort:
        """A new guest port, with its configured MAC if any (replacing a guest of the same
        port number: forget that one first)."""
        if port_no in self.guests:
            self.forget_port(port_no)
        guest = GuestPort(port_no, name)
        self.guests[port_no] = guest
        if mac:
            guest.mac, guest.mac_source = mac, "configured"
            guest.macs[mac] = "configured"
            self.by_mac[mac] = guest
        return guest

    def learn_mac(self, port_no: int, mac: str, source: str = "learned") -> GuestPort | None:
        """`mac` is a guest behind `port_no` (the port's first MAC if it had none); the
        guest port (None: no such port)."""
        guest = self.guests.get(port_no)
        if guest is None:
            return None
        if mac in guest.macs:
            return guest
        if guest.mac is None:
            guest.mac, guest.mac_source = mac, source
        guest.macs[mac] = source
        self.by_mac[mac] = guest
        return guest

    def forget_port(self, port_no: int) -> Gone:
        """The guest port is gone: it, its bindings and its memberships are forgotten."""
        guest = self.guests.pop(port_no, None)
        if guest is None:
            return Gone(None)
        self._unindex(guest)
        ips = sorted(guest.ips)
        for ip in ips:
            del self.bindings[ip]
        guest.ips = set()
        return Gone(guest, ips, self._leave_all(port_no))

    def park(self, port_no: int) -> Gone:
        """The guest port is missing (or renamed) at a reconnect: its MAC, bindings and
        memberships wait in `parked` by port name, in case the port comes back."""
        guest = self.guests[port_no]
        records = [{"ip": ip, "port": guest.name, "mac": b.mac, "source": b.source,
                    "learned_at": b.learned_at, "expires": b.expires, "lease": b.lease}
                   for ip in sorted(guest.ips) for b in [self.bindings[ip]]]
        groups = [{"group": group, "port": guest.name, "expires": members[port_no]}
                  for group, members in self.groups.items() if port_no in members]
        self.parked.keep(guest.name, guest.mac, guest.mac_source, records, groups,
                         [m for m in guest.macs if m != guest.mac])
        return self.forget_port(port_no)

    def adopt(self, now: float, max_macs: int = 1) -> Adopted:
        """Give the guest ports that now exist (without a configured MAC) their waiting
        MACs (those no other guest has, at most `max_macs`), bindings (unexpired, of one of
        those MACs, of no one else, not the host's) and memberships (through `learn_mac`,
        `bind` and `join`)."""
        out = Adopted()
        by_name = {g.name: g for g in self.guests.values()}
        if not by_name or not (self.parked.guests or self.parked.bindings
                               or self.parked.groups):
            return out
        macs, bindings, groups = self.parked.take(set(by_name), now)
        for name, rec in macs.items():
            g = by_name[name]
            if g.mac is not None:  # configured: the port's one MAC
                continue
            saved = [m for m in [rec["mac"], *rec.get("macs", ())] if m not in self.by_mac]
            for mac in saved[:max(1, max_macs)]:
                self.learn_mac(g.port_no, mac, "state")
            if saved:
                out.macs.append(g.port_no)
        for rec in bindings:
            g = by_name[rec["port"]]
            ip = rec["ip"]
            if rec["mac"] not in g.macs or ip in self.bindings or ip in self.host_ips:
                continue
            self.bind(g.port_no, ip, rec["source"], rec["learned_at"], rec["expires"],
                      rec["lease"], rec["mac"])
            out.bindings.append(self.bindings[ip])
        for rec in groups:
            if self.join(by_name[rec["port"]].port_no, rec["group"], rec["expires"]):
                out.groups.append(rec["group"])
        return out

    def load_saved(self, guests: dict[str, dict], bindings: list[dict],
                   groups: list[dict]) -> None:
        """A saved state's records (`parse_persistent`, `parse_groups`) wait for their
        ports (`adopt`), in place of any waiting before."""
        self.parked.load(guests, bindings, groups)

    def expire_parked(self, now: float) -> bool:
        """Waiting bindings whose lease has ended and memberships that have ended are
        dropped; True if any was."""
        return self.parked.expire(now)

    # --------------------------------------------------------------- bindings
    def bind(self, port_no: int, ip: str, source: str, learned_at: float,
             expires: float | None = None, lease: int | None = None,
             mac: str | None = None) -> Binding | None:
        """`ip` belongs to the guest `mac` behind `port_no` (None: the port's first MAC);
        the binding it replaced, if any (of another guest: that guest loses it).
        KeyError: no such guest port, or `mac` is not behind it."""
        guest = self.guests[port_no]
        if mac is not None and mac not in guest.macs:
            raise KeyError(mac)
        old = self.bindings.get(ip)
        if old is not None and old.port_no != port_no:
            self.unbind(ip)
        self.bindings[ip] = Binding(ip, port_no, mac or guest.mac or "", source, learned_at,
                                    expires, lease)
        guest.ips.add(ip)
        self.left_behind.discard(ip)  # (only a DHCP server of this LAN binds such an address)
        return old

    def unbind(self, ip: str) -> Binding | None:
        """`ip` is no longer bound; the binding removed (None: it was not bound)."""
        b = self.bindings.pop(ip, None)
        if b is not None:
            self.guests[b.port_no].ips.discard(ip)
        return b

    # ----------------------------------------------------------------- groups
    def join(self, port_no: int, group: str, expires: float) -> bool:
        """Membership of `group` for a guest port until `expires`; True if it is new (False
        also when there is no such guest)."""
        if port_no not in self.guests:
            return False
        members = self.groups.setdefault(group, {})
        new = port_no not in members
        members[port_no] = expires
        return new

    def leave(self, port_no: int, group: str) -> bool:
        """The guest port leaves `group`; True if it was a member."""
        members = self.groups.get(group)
        if members is None or members.pop(port_no, None) is None:
            return False
        if not members:
            del self.groups[group]
        return True

    def _leave_all(self, port_no: int) -> list[str]:
        left = [g for g, members in self.groups.items() if port_no in members]
        for group in left:
            self.leave(port_no, group)
        return left

    # ------------------------------------------------------------------- host
    def set_remote(self, hosts: dict[str, HostSeen], claims: dict[str, Claim]) -> None:
        """The other live hosts and the addresses they hold (the fleet store's view),
        replacing the last."""
        self.fleet_hosts = dict(hosts)
        self.remote = dict(claims)

    def note_departed(self, records: list[Departed], bound: int) -> None:
        """Bindings whose port left (kept in the store until each one's `until`), at most
        `bound` (the oldest dropped)."""
        for d in records:
            self.departed.pop(d.ip, None)
            self.departed[d.ip] = d
        while len(self.departed) > bound:
            del self.departed[next(iter(self.departed))]

    def drop_departed(self, ips: list[str]) -> bool:
        """These departed records out (taken over elsewhere, bound here again, or ended);
        whether any was there."""
        return sum(self.departed.pop(ip, None) is not None for ip in ips) > 0

    def note_conflict(self, conflict: Conflict) -> bool:
        """An address refused here because another host holds it (kept for status and the
        store, at most MAX_CONFLICTS, the oldest dropped); whether it is new."""
        old = self.conflicts.pop(conflict.ip, None)
        self.conflicts[conflict.ip] = conflict
        while len(self.conflicts) > MAX_CONFLICTS:
            del self.conflicts[next(iter(self.conflicts))]
        return old is None or (old.mac, old.holder) != (conflict.mac, conflict.holder)

    def set_host_addresses(self, ips: frozenset, broadcasts: frozenset) -> set[str]:
        """The host's own addresses and subnet broadcasts; the broadcasts that changed."""
        self.host_ips = set(ips)
        changed = self.host_broadcasts ^ broadcasts
        self.host_broadcasts = set(broadcasts)
        return changed

    def leave_lan(self, ips: frozenset) -> int:
        """The station left the LAN of `ips` (its guests' addresses there, unbound already):
        they are the addresses left behind (those of an earlier change no longer are), and
        saved or parked bindings, of the old LAN too, are dropped; how many were."""
        self.left_behind = set(ips)
        return self.parked.forget_bindings()

    def set_uplink(self, port_no: int | None, station_mac: str | None) -> None:
        self.uplink, self.station_mac = port_no, station_mac

    # ------------------------------------------------------------- invariants
    def _unindex(self, guest: GuestPort) -> None:
        """Take `guest`'s MACs out of the MAC index (another guest of a MAC takes its
        place)."""
        for mac in guest.macs:
            if self.by_mac.get(mac) is not guest:
                continue
            del self.by_mac[mac]
            for other in self.guests.values():
                if mac in other.macs and other is not guest:
                    self.by_mac[mac] = other
                    break

    def invariant_errors(self) -> list[str]:
        """The model's invariants that do not hold (none, unless a bug wrote its dicts)."""
        errors = []
        for ip, b in self.bindings.items():
            g = self.guests.get(b.port_no)
            if b.ip != ip or g is None or ip not in g.ips:
                errors.append(f"binding {ip} on port {b.port_no} not in its guest's ips")
            elif g.macs and b.mac not in g.macs:
                errors.append(f"binding {ip} of {b.mac}, not behind port {b.port_no}")
        for port_no, g in self.guests.items():
            if g.port_no != port_no:
                errors.append(f"guest {g.name} filed under port {port_no}")
            if g.mac != next(iter(g.macs), None):
                errors.append(f"guest {g.name}: first MAC {g.mac}, MACs {list(g.macs)}")
            for ip in g.ips:
                b = self.bindings.get(ip)
                if b is None or b.port_no != port_no:
                    errors.append(f"guest {g.name} lists {ip}, not bound to it")
        macs = {m for g in self.guests.values() for m in g.macs}
        if set(self.by_mac) != macs:
            errors.append(f"MAC index {sorted(self.by_mac)} != guest MACs {sorted(macs)}")
        for mac, g in self.by_mac.items():
            if mac not in g.macs or self.guests.get(g.port_no) is not g:
                errors.append(f"MAC index {mac} -> a stale guest {g.name}")
        for group, members in self.groups.items():
            if not members or not set(members) <= set(self.guests):
                errors.append(f"group {group} has members {sorted(members)} not all guests")
        return errors


class Counters(Counter):
    """Named event counters (packet-ins by kind, refusals by cause, ...)."""

    def bump(self, name: str, n: int = 1) -> None:
        self[name] += n


def is_guest_ip(ip: str) -> bool:
    """True for an IPv4 address a guest may own (unicast, not 0/loopback/link-broadcast),
    or an IPv6 one (unicast, not unspecified/loopback/IPv4-mapped, in canonical text)."""
    if isinstance(ip, str) and ":" in ip:
        return _is_guest_ipv6(ip)
    parts = ip.split(".") if isinstance(ip, str) else ()
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3
                               and (p == "0" or p[0] != "0") for p in parts):
        # dotted decimal as packets give it: decide from the octets (the packet-in path)
        octets = [int(p) for p in parts]
        if max(octets) > 255:
            return False
        first = octets[0]
        return not (first == 0 and octets == [0, 0, 0, 0]) and first != 127 and first < 224
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return not (addr.is_unspecified or addr.is_loopback or addr.is_multicast
                or addr.is_reserved or int(addr) == 0xFFFFFFFF)


def _is_guest_ipv6(ip: str) -> bool:
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return False
    return addr.compressed == ip and not (
        addr.is_unspecified or addr.is_loopback or addr.is_multicast
        or addr.ipv4_mapped is not None)


def persistent_form(guests: dict[int, GuestPort], bindings: dict[str, Binding],
                    generation: int, pending_guests: dict[str, dict] | None = None,
                    pending_bindings: list[dict] | None = None,
                    groups: list[dict] | None = None) -> dict[str, Any]:
    """The JSON-able state saved across controller restarts.

    `pending_guests` / `pending_bindings` are records known but not (yet) confirmed by the
    switch (restored from the state file, or parked when their port went missing): they are
    saved too, so that a save never holds less than what was known (a live guest or binding
    takes precedence over a pending one of the same port name or address)."""
    names = {g.port_no: g.name for g in guests.values()}
    saved_guests = [
        {"name": g.name, "mac": g.mac, "mac_source": g.mac_source,
         **({"macs": others} if others else {})}
        for g in guests.values() if g.mac
        for others in [[m for m in g.macs if m != g.mac]]
    ]
    saved_bindings = [
        {"ip": b.ip, "port": names.get(b.port_no, ""), "mac": b.mac, "source": b.source,
         "learned_at": b.learned_at, "expires": b.expires, "lease": b.lease}
        for b in bindings.values() if b.port_no in names
    ]
    live_names = {g["name"] for g in saved_guests}
    for name, rec in (pending_guests or {}).items():
        if name not in live_names:
            saved_guests.append({"name": name, "mac": rec["mac"],
                                 "mac_source": rec["mac_source"],
                                 **({"macs": rec["macs"]} if rec.get("macs") else {})})
    pending = {rec["ip"]: rec for rec in pending_bindings or []}  # a later record wins
    saved_bindings += [dict(rec) for ip, rec in pending.items() if ip not in bindings]
    # IPv6 bindings under their own key: a controller that knows only IPv4 reads the file
    saved = {"version": 1, "generation": generation, "guests": saved_guests,
             "bindings": [b for b in saved_bindings if ":" not in b["ip"]],
             "bindings6": [b for b in saved_bindings if ":" in b["ip"]]}
    if groups:
        saved["groups"] = groups
    return saved


class StateFormatError(ValueError):
    """A saved state that cannot be understood."""


def parse_persistent(data: Any) -> tuple[int, dict[str, dict], list[dict]]:
    """Validate saved state: (generation, guest MAC by port name, binding records)."""
    try:
        if not isinstance(data, dict) or data.get("version") != 1:
            raise StateFormatError("unknown state format version")
        generation = int(data.get("generation", 0))
        guests = {}
        for g in data.get("guests", []):
            if not isinstance(g.get("name"), str) or not is_unicast_mac(str(g.get("mac"))):
                raise StateFormatError(f"bad guest record {g!r}")
            others = g.get("macs", [])  # the port's other guest MACs (absent: only one)
            if not isinstance(others, list) or not all(is_unicast_mac(str(m)) for m in others):
                raise StateFormatError(f"bad guest record {g!r}")
            guests[g["name"]] = {"mac": g["mac"].lower(), "mac_source": str(g.get("mac_source")),
                                 "macs": [m.lower() for m in others]}
        bindings = []
        for b in [*data.get("bindings", []), *data.get("bindings6", [])]:
            if not (is_guest_ip(str(b.get("ip"))) or is_guest_ip6(str(b.get("ip")))) \
                    or not is_unicast_mac(str(b.get("mac"))):
                raise StateFormatError(f"bad binding record {b!r}")
            if not isinstance(b.get("port"), str) or b.get("source") not in SOURCES:
                raise StateFormatError(f"bad binding record {b!r}")
            expires = b.get("expires")
            bindings.append({
                "ip": b["ip"], "port": b["port"], "mac": b["mac"].lower(),
                "source": b["source"], "learned_at": float(b.get("learned_at", 0.0)),
                "expires": None if expires is None else float(expires),
                "lease": None if b.get("lease") is None else int(b["lease"]),
            })
        return generation, guests, bindings
    except StateFormatError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise StateFormatError(str(exc)) from exc


def parse_groups(data: Any) -> list[dict]:
    """Saved group memberships ({"group", "port" name, "expires"}); none in a file written
    before groups were kept.  Bad records are left out (a membership is soft state: the
    guest's next report brings it back)."""
    records = data.get("groups", []) if isinstance(data, dict) else []
    out = []
    for rec in records if isinstance(records, list) else []:
        try:
            group = canonical_group(str(rec["group"]))
            port, expires = rec["port"], float(rec["expires"])
        except (KeyError, TypeError, ValueError):
            continue
        if group is not None and isinstance(port, str) and math.isfinite(expires):
            out.append({"group": group, "port": port, "expires": expires})
    return out
