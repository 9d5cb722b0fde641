"""Port security decisions: who may use which MAC and which IPv4 or IPv6 address.

Each check returns None when allowed, or a short cause string used as the
counter label and in the log ("refused (ip-in-use) 10.0.0.5").
"""

from __future__ import annotations

from collections.abc import Mapping

from wlbridge.model.addresses import is_guest_ip6, is_unicast_mac
from wlbridge.model.fleet import Claim
from wlbridge.model.state import Binding, GuestPort, is_guest_ip


def check_guest_mac(mac: str, station_mac: str | None, used: set[str]) -> str | None:
    """May a guest port take `mac` as its own?"""
    if not is_unicast_mac(mac):
        return "bad-mac"
    if station_mac is not None and mac == station_mac:
        return "station-mac"
    if mac in used:
        return "duplicate-mac"
    return None


def _taken(ip: str, usable: bool, guest: GuestPort, bindings: Mapping[str, Binding],
           host_ips: set[str], mac: str | None,
           remote: Mapping[str, Claim] | None = None) -> str | None:
    """Why `ip` (`usable`: an address a guest may have at all) is not the guest's (`mac`
    behind the port; None: any of its guests) to take.  Another guest behind the same port
    holding it counts as much as one on another port; another host's guest of another MAC
    holding it (`remote`, the fleet store's view) as much as one here."""
    if not usable:
        return "bad-ip"
    if ip in host_ips:
        return "host-ip"
    owner = bindings.get(ip)
    if owner is not None and (owner.port_no != guest.port_no
                              or (mac is not None and owner.mac != mac)):
        return "ip-in-use"
    held = remote.get(ip) if remote else None
    if held is not None and held.mac != (mac or guest.mac):
        return "fleet-ip-in-use"
    return None


def check_claim(ip: str, guest: GuestPort, bindings: Mapping[str, Binding],
                host_ips: set[str], max_per_port: int, max_total: int,
                mac: str | None = None,
                remote: Mapping[str, Claim] | None = None) -> str | None:
    """May the guest `mac` behind port `guest` bind `ip`?  (It does not hold it yet.)
    `max_per_port` bounds the port's IPv4 addresses, all its guests together."""
    taken = _taken(ip, is_guest_ip(ip), guest, bindings, host_ips, mac, remote)
    if taken:
        return taken
    if len(guest.ips) >= max_per_port and \
            sum(1 for a in guest.ips if ":" not in a) >= max_per_port:  # IPv4 ones only
        return "port-limit"
    if len(bindings) >= max_total:
        return "global-limit"
    return None


def check_claim6(ip: str, guest: GuestPort, bindings: Mapping[str, Binding],
                 host_ips: set[str], max_per_guest: int, max_total: int,
                 mac: str | None = None,
                 remote: Mapping[str, Claim] | None = None) -> str | None:
    """May the guest `mac` behind port `guest` (None: the port's first) bind IPv6 address
    `ip` (canonical text)?  (It does not hold it yet.)  Each guest's IPv6 bindings are
    counted apart from its IPv4 ones and from its siblings' (`max_per_guest`)."""
    taken = _taken(ip, is_guest_ip6(ip), guest, bindings, host_ips, mac, remote)
    if taken:
        return taken
    mine = mac or guest.mac
    held = [bindings.get(a) for a in guest.ips if ":" in a]
    if sum(1 for b in held if b is None or b.mac == mine) >= max_per_guest:
        return "ipv6-limit"
    if len(bindings) >= max_total:
        return "global-limit"
    return None
