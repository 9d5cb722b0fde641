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

SOURCES = ("arp", "dhcp", "dhcp6", "ipv4", "state", "static", "nd", "ipv6")


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
    """A guest-facing port: its MAC (first seen or configured) and its IPs."""

    port_no: int
    name: str
    mac: str | None = None
    mac_source: str = "learned"  # "learned" | "configured" | "state"
    ips: set[str] = field(default_factory=set)


@dataclass(eq=False)
class Model:
    """The binding table the core owns and its policies read: guest ports, bindings, the
    guest MAC index, the host's own addresses, the uplink and the station MAC."""

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

    def guest_by_mac(self, mac: str) -> GuestPort | None:
        g = self.by_mac.get(mac)
        if g is not None and g.mac == mac and self.guests.get(g.port_no) is g:
            return g
        return None


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
        {"name": g.name, "mac": g.mac, "mac_source": g.mac_source}
        for g in guests.values() if g.mac
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
                                 "mac_source": rec["mac_source"]})
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
            guests[g["name"]] = {"mac": g["mac"].lower(), "mac_source": str(g.get("mac_source"))}
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
