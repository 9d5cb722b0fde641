"""The fleet policy: what the fleet store's view means here (several Wi-Fi hosts sharing
one store, `wlbridge.host.fleet_store`).

* `view_changed`: the claims of the other live hosts (a host not seen for `gone_after` s is
  gone: its claims no longer count, its guests are free to move).  A binding here whose
  address another host claimed *later* for the same MAC has moved there: dropped
  (``bindings.removed.fleet-moved``).  One whose address another host claimed *earlier*
  for another MAC lost the race: dropped, refused and recorded as a conflict.  Earlier is
  (claimed at, host name): every host orders two claims alike.
* `arrived`: a guest MAC that appeared here (learned from any frame: the RARP or gratuitous
  ARP a migrated VM sends, its first packet; or known with its port: `arrived_on`) and that
  the store shows on another host: its addresses are bound here at once and announced from
  this host's station MAC.
* `held_elsewhere`: for `guard`: another host's claim of an address, for a refusal.

A binding whose port left this host stays claimed in the store (``departed``) for
`gone_after` s, or until another host takes it over (`ForgetDeparted`): the host a migrated
VM arrives on knows its addresses from its RARP alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from wlbridge.model.fleet import Claim, Conflict, HostSeen
from wlbridge.model.state import GuestPort, Model
from wlbridge.policy.effects import (
    Announce,
    Bind,
    Effect,
    ForgetDeparted,
    NoteConflict,
    SetRemote,
    Unbind,
)
from wlbridge.telemetry import Telemetry


def live_hosts(me: str, hosts: Iterable[HostSeen], now: float,
               gone_after: float) -> dict[str, HostSeen]:
    """The other hosts seen within `gone_after` s, by name."""
    return {h.name: h for h in hosts if h.name != me and now - h.last_seen <= gone_after}


def live_claims(me: str, hosts: Iterable[HostSeen], claims: Iterable[Claim], now: float,
                gone_after: float) -> dict[str, Claim]:
    """Address -> the earliest claim of it by another host seen within `gone_after` s."""
    live = live_hosts(me, hosts, now, gone_after)
    out: dict[str, Claim] = {}
    for c in claims:
        if c.host not in live:
            continue
        held = out.get(c.ip)
        if held is None or (c.claimed_at, c.host) < (held.claimed_at, held.host):
            out[c.ip] = c
    return out


def view_changed(model: Model, me: str, hosts: Iterable[HostSeen], claims: Iterable[Claim],
                 now: float, gone_after: float, tel: Telemetry) -> list[Effect]:
    """The store's rows changed: the new view, and what it takes from the bindings here."""
    hosts = list(hosts)
    remote = live_claims(me, hosts, claims, now, gone_after)
    effects: list[Effect] = [SetRemote(tuple(live_hosts(me, hosts, now, gone_after).values()),
                                       tuple(remote.values()))]
    for ip, b in model.bindings.items():
        c = remote.get(ip)
        if c is None:
            continue
        if c.mac == b.mac:
            if c.claimed_at > b.learned_at:
                tel.log_once(f"fleet-moved:{ip}", "%s (%s) moved to host %s: dropped here",
                             ip, b.mac, c.host)
                effects.append(Unbind(ip, "fleet-moved"))
        elif (c.claimed_at, c.host) < (b.learned_at, me):
            tel.bump("refused.fleet-ip-in-use")
            tel.log_once(f"fleet-conflict:{ip}", "%s: %s here claimed it after %s on host "
                         "%s: dropped here", ip, b.mac, c.mac, c.host)
            effects.append(Unbind(ip, "fleet-conflict"))
            effects.append(NoteConflict(Conflict(ip, b.mac, c.host, c.mac, now)))
    taken = [ip for ip, d in model.departed.items()
             if ip in remote and (remote[ip].mac != d.mac or remote[ip].claimed_at > d.claimed_at)]
    if taken:
        effects.append(ForgetDeparted(tuple(taken)))
    return effects


def held_elsewhere(model: Model, ip: str, mac: str | None) -> Claim | None:
    """Another host's claim of `ip` for another MAC than `mac` (None: no such claim)."""
    c = model.remote.get(ip)
    return c if c is not None and c.mac != mac else None


def refused(ip: str, mac: str, claim: Claim, now: float) -> Effect:
    """The record of a claim refused here because `claim` holds the address."""
    return NoteConflict(Conflict(ip, mac, claim.host, claim.mac, now))


def arrived(model: Model, guest: GuestPort, mac: str) -> list[Effect]:
    """`mac`, new behind `guest`'s port (learned in the same batch, before these effects):
    the addresses the store shows it holding on another host, bound here and announced."""
    return arrived_on(model, guest.port_no, mac, guest.mac is None or guest.mac == mac)


def arrived_on(model: Model, port_no: int, mac: str, first: bool) -> list[Effect]:
    """As `arrived`, for port `port_no` (added in the same batch with `mac` known from the
    start: configured, or libvirt's ``attached-mac``); `first`: the port's first MAC."""
    ips = sorted(ip for ip, c in model.remote.items()
                 if c.mac == mac and ip not in model.bindings and ip not in model.host_ips)
    if not ips:
        return []
    effects: list[Effect] = [Bind(port_no, ip, "fleet", model.remote[ip].expires,
                                  mac=None if first else mac) for ip in ips]
    effects.append(Announce(tuple(ips)))
    return effects
