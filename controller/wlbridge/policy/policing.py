"""Address policing by the AP: every bound guest address re-announced on a bounded schedule,
and the station's IPv6 address budget.

Behind one station MAC the AP (and the LAN) learn the guests' addresses only from what the
station sends.  APs that police IP<->MAC bindings (Cisco's IP theft detection and IP-MAC
binding, which tracks at most 8 IPv6 addresses per client), proxy-ARP APs that answer ARP
for their stations from what they learned, and LAN hosts whose ARP/neighbour cache entries
age all forget a quiet guest.  So each bound guest address is announced again from the
station MAC (IPv4: a gratuitous ARP; IPv6: an unsolicited NA, override), one address at a
time, round-robin: one frame every ``max(reannounce_interval / n, 1 / reannounce_rate)``
seconds for n bound addresses, so every address is announced every
``reannounce_interval`` seconds (longer when n exceeds ``reannounce_interval *
reannounce_rate``): at most ``reannounce_rate`` frames per second on average, one per
tick, never in bursts.  A newly bound address goes first, so that an AP that learns a station's
addresses only from what it sends (a proxy-ARP AP such as hostapd with ``proxy_arp=1``: its
bridge accepts gratuitous ARP) learns it at once.  (Re)association announces every address at
once (`effects.Announce`, decided by `lifecycle`).

The IPv6 budget (``max_ipv6_per_station``) counts the IPv6 addresses bound to all the
guests together (those the AP sees behind the station MAC; the host's own are not
counted).  A new address over it is refused (``refused.ipv6-station-limit``, and named in
`status` with its guest), unless the claiming guest holds an older *temporary* address
(RFC 8981 privacy address) in the same /64: the oldest such is released first
(``bindings.removed.ipv6-budget``) so that privacy-address churn stays within the budget.
A temporary address is told apart by what the wire shows: a global address learned from
ND or traffic (not DHCPv6), not the modified EUI-64 of the guest's MAC, and not the guest's
first-learned such address in that /64 when it has no EUI-64 one there (that one stands in
for its stable address).

Pure: every decision takes ``now``; the core applies the effects (`Reannounce`, `Unbind`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from wlbridge.model.state import GuestPort, Model
from wlbridge.policy.effects import Effect, Reannounce, Unbind
from wlbridge.telemetry import Telemetry

REANNOUNCE_INTERVAL = 60.0  # seconds between two announcements of one address
REANNOUNCE_RATE = 1.0  # announcement frames per second, at most
MAX_IPV6_PER_STATION = 8  # what Cisco's WLC tracks per client
REFUSED_SHOWN = 16  # refused addresses remembered for `status` (most recent)
TEMPORARY_SOURCES = ("nd", "ipv6")  # a DHCPv6 address is never a privacy address


class Policing:
    """The re-announcement round and the IPv6 budget over one model.  `config` supplies
    ``reannounce_interval`` (0: no periodic re-announcement), ``reannounce_rate`` and
    ``max_ipv6_per_station``."""

    def __init__(self, model: Model, config: Any, telemetry: Telemetry) -> None:
        self.model = model
        self.interval = float(getattr(config, "reannounce_interval", REANNOUNCE_INTERVAL))
        self.rate = float(getattr(config, "reannounce_rate", REANNOUNCE_RATE))
        self.budget = int(getattr(config, "max_ipv6_per_station", MAX_IPV6_PER_STATION))
        self.tel = telemetry
        self._next: float | None = None  # when the next address is due
        self._last: str | None = None  # the address announced last (the round's cursor)
        self._sent_at = float("-inf")  # when the last frame went
        self._announced: set[str] = set()  # bound addresses announced since they were bound
        self.host_too = False  # the host's own IPv4 addresses in the round too (`apmode`)
        self.refused: dict[str, dict[str, Any]] = {}  # ip -> who claimed it, when (bounded)

    # ---------------------------------------------------------- re-announcement
    def gap(self, count: int) -> float:
        """Seconds between two announcement frames with `count` addresses bound."""
        return max(self.interval / max(count, 1), 1.0 / self.rate)

    def tick(self, now: float) -> list[Effect]:
        """One address, if one is due: a newly bound one first (``1 / reannounce_rate``
        after the last frame: an AP that learns addresses only from what the station sends
        learns it at once), else the round's next, a gap after the last one was due (a tick
        so late that the next is due already: a gap after `now`; a late tick never catches
        up in a burst)."""
        bound = self._addresses()
        if self.interval <= 0 or not bound:
            self._next = None
            self._announced.clear()
            return []
        self._announced.intersection_update(bound)
        spacing = 1.0 / self.rate
        fresh = [a for a in bound if a not in self._announced]
        if fresh and now >= self._sent_at + spacing:
            # (the round goes on a gap after the newly bound ones)
            self._next = max(self._next or now, now + self.gap(len(bound)))
            return self._send(min(fresh, key=_key), now, False)
        if self._next is None:  # the round (re)starts one gap from now
            self._next = now + self.gap(len(bound))
            return []
        if now < self._next or now < self._sent_at + spacing:
            return []
        ip = min((a for a in bound if self._last is None or _key(a) > _key(self._last)),
                 key=_key, default=None)
        if ip is None:
            ip = min(bound, key=_key)
        gap = self.gap(len(bound))
        self._next += gap  # on the round's own beat (ticks come a little late) ...
        if self._next <= now:
            self._next = now + gap  # ... unless far late: no catching up in a burst
        return self._send(ip, now, True)

    def _send(self, ip: str, now: float, round_: bool) -> list[Effect]:
        self._announced.add(ip)
        self._sent_at = now
        if round_:
            self._last = ip
        self.tel.bump("station.reannounced" if round_ else "station.announced_new")
        return [Reannounce((ip,))]

    def announced_all(self, now: float) -> None:
        """Every bound address was just announced (a (re)association's `Announce`): none is
        new any more."""
        self._announced = self._addresses()
        self._sent_at = now

    def _addresses(self) -> set[str]:
        """What the round announces: the bound guest addresses (and the host's own IPv4 ones,
        `host_too`)."""
        bound = set(self.model.bindings)
        if self.host_too:
            bound |= {ip for ip in self.model.host_ips if ":" not in ip}
        return bound

    def next_due(self) -> float | None:
        """When `tick` next has work (None: nothing bound, or re-announcement off).  With
        addresses bound but the round not started, now: the first tick starts it."""
        bound = self._addresses()
        if self.interval <= 0 or not bound:
            return None
        if len(bound - self._announced):
            return self._sent_at + 1.0 / self.rate
        return self._next if self._next is not None else 0.0

    # ------------------------------------------------------------- IPv6 budget
    def used6(self) -> int:
        """IPv6 addresses bound to the guests (the budget's use)."""
        return sum(1 for ip in self.model.bindings if ":" in ip)

    def claim6(self, ips: Iterable[str], guest: GuestPort, mac: str, now: float
               ) -> tuple[str | None, list[Effect]]:
        """May the guest `mac` behind port `guest` bind the new IPv6 addresses `ips` within
        the station's budget?  (None, the releases that make room) or (the refused address,
        []): the claim is refused whole."""
        new = [ip for ip in dict.fromkeys(ips) if ip not in self.model.bindings]
        room = self.budget - self.used6()
        releases: list[Effect] = []
        released: set[str] = set()
        for ip in new:
            if room > 0:
                room -= 1
                continue
            old = self._oldest_temporary(guest, mac, ip, released)
            if old is None:
                self._refused(ip, guest, mac, now)
                return ip, []
            released.add(old)
            releases.append(Unbind(old, "ipv6-budget"))
        for ip in new:
            self.refused.pop(ip, None)
        return None, releases

    def _oldest_temporary(self, guest: GuestPort, mac: str, ip: str,
                          skip: set[str]) -> str | None:
        """The guest's oldest temporary address in the /64 of `ip` (None: it has none)."""
        prefix = _prefix64(ip)
        if prefix is None:
            return None
        bindings = self.model.bindings
        mine = [bindings[a] for a in guest.ips
                if ":" in a and a in bindings and bindings[a].mac == mac
                and _prefix64(a) == prefix and not ipaddress.ip_address(a).is_link_local]
        stable = [b for b in mine if b.source not in TEMPORARY_SOURCES or _is_eui64(b.ip, mac)]
        others = sorted((b for b in mine if b not in stable),
                        key=lambda b: (b.learned_at, _key(b.ip)))
        if not stable and others:
            others = others[1:]  # its first stands in for the stable address
        return next((b.ip for b in others if b.ip not in skip), None)

    def _refused(self, ip: str, guest: GuestPort, mac: str, now: float) -> None:
        self.tel.bump("refused.ipv6-station-limit")
        self.tel.log_once(f"refused:{guest.port_no}:ipv6-station-limit",
                          "port %s: refused (ipv6-station-limit) %s: the station's %d IPv6 "
                          "addresses are in use (max_ipv6_per_station)", guest.name, ip,
                          self.budget)
        self.refused.pop(ip, None)
        self.refused[ip] = {"ip": ip, "port": guest.name, "mac": mac, "at": now}
        while len(self.refused) > REFUSED_SHOWN:
            self.refused.pop(next(iter(self.refused)))

    # ----------------------------------------------------------------- status
    def status(self, now: float) -> dict[str, Any]:
        """What `wlbridge status` shows under ``policing``."""
        count = len(self._addresses())
        return {
            "reannounce_interval": self.interval,
            "reannounce_rate": self.rate,
            "reannounce_every": (round(max(self.interval, count / self.rate), 1)
                                 if self.interval > 0 and count else None),
            "next_reannounce_in": (None if self._next is None or self.interval <= 0
                                   else round(max(self._next - now, 0.0), 1)),
            "ipv6_budget": self.budget,
            "ipv6_used": self.used6(),
            "ipv6_refused": [dict(r, ago=round(now - r["at"])) for r in
                             sorted(self.refused.values(), key=lambda r: r["at"])],
        }


def _key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


def _prefix64(ip: str) -> int | None:
    try:
        return int(ipaddress.IPv6Address(ip)) >> 64
    except ValueError:
        return None


def _is_eui64(ip: str, mac: str) -> bool:
    """Is `ip`'s interface identifier the modified EUI-64 of `mac`?"""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    return ipaddress.IPv6Address(ip).packed[8:] == iid


__all__ = ["MAX_IPV6_PER_STATION", "REANNOUNCE_INTERVAL", "REANNOUNCE_RATE", "Policing"]
