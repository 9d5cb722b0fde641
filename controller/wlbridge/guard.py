"""Port security decisions: who may use which MAC and which IPv4 address.

Each check returns None when allowed, or a short cause string used as the
counter label and in the log ("refused (ip-in-use) 10.0.0.5").
"""

from __future__ import annotations

from collections.abc import Mapping

from .addresses import is_unicast_mac
from .state import Binding, GuestPort, is_guest_ip


def check_guest_mac(mac: str, station_mac: str | None, used: set[str]) -> str | None:
    """May a guest port take `mac` as its own?"""
    if not is_unicast_mac(mac):
        return "bad-mac"
    if station_mac is not None and mac == station_mac:
        return "station-mac"
    if mac in used:
        return "duplicate-mac"
    return None


def check_claim(ip: str, guest: GuestPort, bindings: Mapping[str, Binding],
                host_ips: set[str], max_per_port: int, max_total: int) -> str | None:
    """May `guest` bind `ip`?  (It does not hold it yet.)"""
    if not is_guest_ip(ip):
        return "bad-ip"
    if ip in host_ips:
        return "host-ip"
    owner = bindings.get(ip)
    if owner is not None and owner.port_no != guest.port_no:
        return "ip-in-use"
    if len(guest.ips) >= max_per_port:
        return "port-limit"
    if len(bindings) >= max_total:
        return "global-limit"
    return None
