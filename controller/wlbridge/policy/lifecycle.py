"""The core's events other than packet-ins, as policies: the switch (re)connecting, the
host's addresses, an idle binding flow removed by the switch, leases ending, switch ports
added, changed or deleted.

Like `learning`, these read the model (`state.Model`) and return `effects` for the core to
apply (`Core._apply`); they change nothing themselves and hold no reference to the core.
Counting and log lines go through the `telemetry.Telemetry` passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from wlbridge.flows import cookies
from wlbridge.flows.pipeline import PORT_LOCAL
from wlbridge.flows.wanted import LEASED
from wlbridge.model.addresses import canonical_ip6
from wlbridge.model.state import Model, Port
from wlbridge.policy import fleet, guard
from wlbridge.policy.effects import (
    AddGuest,
    Adopt,
    Announce,
    DropGuest,
    Effect,
    HostAddresses,
    LearnMac,
    Park,
    SetUplink,
    SyncPort,
    Unbind,
)
from wlbridge.telemetry import Telemetry


def host_addresses(model: Model, ips: Iterable[str], tel: Telemetry) -> list[Effect]:
    """The host's own addresses changed (IPv4 and IPv6, each bare or ``address/prefixlen``):
    guest bindings of them are dropped; the directed broadcast address of each of its IPv4
    subnets is restored toward the guests (`flows.group_flows`)."""
    ips = list(ips)
    bare = (ip.partition("/")[0] for ip in ips)
    host_ips = frozenset(canonical_ip6(ip) or ip if ":" in ip else ip for ip in bare)
    effects: list[Effect] = [HostAddresses(host_ips, frozenset(subnet_broadcasts(ips)))]
    for ip in sorted(host_ips & set(model.bindings)):
        tel.log_once(f"host-ip:{ip}", "host took %s, dropping guest binding", ip)
        effects.append(Unbind(ip, "host-ip"))
    return effects


def subnet_broadcasts(addresses: Iterable[str]) -> set[str]:
    """The directed broadcast addresses of the IPv4 subnets of ``address/prefixlen``
    entries (bare addresses, /31 and /32 have none)."""
    out = set()
    for text in addresses:
        if "/" not in text:
            continue
        try:
            net = ipaddress.IPv4Interface(text).network
        except ValueError:
            continue
        if net.prefixlen <= 30:
            out.add(str(net.broadcast_address))
    return out


def idle_flow_removed(model: Model, cookie: int, match: Mapping[str, Any], idle: bool,
                      generation: int, tel: Telemetry, now: float) -> list[Effect]:
    """A flow timed out in the switch (`idle`: for being unused).  An idle binding flow of
    the current generation means its ARP/IPv4/ND-learned binding is unused: drop it.  Flows
    removed for another reason (a switch shutting down deletes its flows), DHCP bindings
    (their lease decides) and older generations say nothing about the guest."""
    if not idle:
        return []
    c = cookies.decode(cookie)
    if c is None or c.purpose != cookies.Purpose.GUEST_IP:
        return []
    ip = match.get("ipv4_src")
    if ip is None and isinstance(match.get("ipv6_src"), str):
        ip = canonical_ip6(match["ipv6_src"])
    b = model.bindings.get(ip) if isinstance(ip, str) else None
    if b is None or b.source in LEASED or c.generation != generation:
        return []
    tel.bump("bindings.expired.idle")
    tel.binding_log.info(now, "binding %s on port %s expired (idle)", ip, b.port_no)
    return [Unbind(ip, "idle")]


def leases_ended(model: Model, now: float, tel: Telemetry) -> list[Effect]:
    """Bindings whose DHCP lease has ended by `now`."""
    effects: list[Effect] = []
    for ip, b in model.bindings.items():
        if b.expires is not None and b.expires <= now:
            tel.bump("bindings.expired.lease")
            tel.binding_log.info(now, "lease of %s on port %s ended", ip, b.port_no)
            effects.append(Unbind(ip, "lease"))
    return effects


def find_uplink(ports: Mapping[int, Port], uplink_name: str) -> SetUplink:
    """The uplink among the switch's ports, by name, with its MAC as the station MAC."""
    found = SetUplink(None, None)
    for port in ports.values():
        if port.name == uplink_name:
            found = SetUplink(port.port_no, port.hw_addr.lower())
    return found


def station_changed(before: str | None, after: str | None, tel: Telemetry) -> list[Effect]:
    """A new station MAC (reconnect, randomisation): LAN hosts must learn the guests'
    addresses at the new MAC at once."""
    if before is None or after is None or before == after:
        return []
    tel.bump("station.mac_changes")
    tel.log.warning("station MAC changed from %s to %s: flows rewritten, announcing the guests",
                    before, after)
    return [Announce()]


def connected(model: Model, ports: Mapping[int, Port], config: Any,
              tel: Telemetry) -> list[Effect]:
    """The switch (re)connected with `ports`: the uplink found again (every section is
    recomputed); guests whose port is missing, renamed or now the uplink parked; the other
    ports guests (new ones added); saved and parked records adopted; every guest port's
    meter and flows brought up to date; the guests announced if the station MAC changed."""
    uplink = find_uplink(ports, config.uplink)
    effects: list[Effect] = [uplink]
    kept = set()
    for port_no, guest in model.guests.items():
        port = ports.get(port_no)
        if port is None or port.name != guest.name or port_no == uplink.port_no:
            effects.append(Park(port_no))
        else:
            kept.add(port_no)
    for port in ports.values():
        if port.port_no not in kept and port.port_no not in (uplink.port_no, PORT_LOCAL):
            effects.append(_guest(port, config.static_macs))
            kept.add(port.port_no)
    effects.append(Adopt())
    effects += [SyncPort(p) for p in sorted(kept)]
    return effects + station_changed(model.station_mac, uplink.station_mac, tel)


def _guest(port: Port, static_macs: Mapping[str, str]) -> AddGuest:
    mac = static_macs.get(port.name)
    return AddGuest(port.port_no, port.name, mac.lower() if mac else None)


def port_changed(model: Model, ports: Mapping[int, Port], port: Port, old: Port | None,
                 config: Any, tel: Telemetry) -> list[Effect]:
    """A port was added or changed (`old`: how it was, None if new); `ports` includes it.
    The uplink's port redoes every flow (a new station MAC: the guests are announced from
    it, as they are when the uplink comes up); a guest port's meter and flows are brought
    up to date, saved records of it adopted."""
    effects: list[Effect] = []
    if old is not None and old.name != port.name:
        effects.append(DropGuest(port.port_no))
    if port.name == config.uplink or port.port_no == model.uplink:
        before = model.station_mac
        came_up = (old is None or not old.up) and port.up  # None: re-plugged
        uplink = find_uplink(ports, config.uplink)
        effects.append(uplink)
        changed = station_changed(before, uplink.station_mac, tel)
        if not changed and came_up:
            tel.log.info("uplink %s is up again: announcing the guests", port.name)
            changed = [Announce()]
        return effects + changed
    if effects or port.port_no not in model.guests:  # a renamed port is a new guest
        guest = _guest(port, config.static_macs)
        effects.append(guest)
        if guest.mac is not None:   # known from the start: a guest that moved here?
            effects += fleet.arrived_on(model, port.port_no, guest.mac, first=True)
    return effects + [Adopt(), SyncPort(port.port_no)]


def announced(model: Model, port_name: str, mac: str, source: str, config: Any,
              tel: Telemetry) -> list[Effect]:
    """The host announced guest `mac` behind port `port_name` (libvirt's record of a VM's
    interface): learned as its first frame would teach it, with the same guard (a multicast
    MAC, the station's, another port's guest's: refused and counted) and the port's bound;
    nothing for a port that is not a guest's (yet), or a MAC it carries already."""
    guest = next((g for g in model.guests.values() if g.name == port_name), None)
    if guest is None:
        tel.bump("announced.unknown_port")
        return []
    if mac in guest.macs:
        return []
    if guest.mac is not None:
        limit = getattr(config, "max_macs_per_port", 1)
        if guest.mac_source == "configured" or len(guest.macs) >= max(1, limit):
            return _refuse(guest.name, "mac-limit", mac, tel)
    cause = guard.check_guest_mac(mac, model.station_mac, model.by_mac)
    if cause:
        return _refuse(guest.name, cause, mac, tel)
    # A VM that moved here (live migration): what the fleet store shows it holding elsewhere
    # is bound and announced at once, before its RARP.
    return [LearnMac(guest.port_no, mac, source), *fleet.arrived(model, guest, mac)]


def _refuse(port: str, cause: str, mac: str, tel: Telemetry) -> list[Effect]:
    tel.bump(f"refused.{cause}")
    tel.log_once(f"announced:{port}:{cause}", "port %s: announced MAC %s refused (%s)", port,
                 mac, cause)
    return []


def port_gone(model: Model, ports: Mapping[int, Port], port: Port, config: Any,
              tel: Telemetry) -> list[Effect]:
    """A port left the switch (`ports` no longer has it): the uplink's leaves the guests cut
    off; a guest port takes its bindings with it."""
    if port.port_no == model.uplink:
        tel.log.warning("uplink %s left the bridge: guests are cut off", port.name)
        return [find_uplink(ports, config.uplink)]
    return [DropGuest(port.port_no)]
