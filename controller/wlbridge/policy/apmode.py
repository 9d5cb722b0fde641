"""Which kind of AP the station is on, from what the LAN's group traffic does (issue 25 item 2).

An AP that delivers group-addressed frames to its stations (a home AP, or one that turns
them into unicast to each station, ``multicast_to_unicast``) lets a LAN host's broadcast ARP
request reach the station, and a guest answers it.  A Hotspot 2.0 / "proxy ARP" AP (hostapd
``proxy_arp=1`` with ``ap_isolate=1`` and ``disable_dgaf=1``; Aruba's and Cisco's
equivalents) delivers none (but the DHCP replies, RAs and NAs it turns into unicast) and
answers ARP for its stations itself, from what it learned: the addresses its DHCP snooping
saw leased to the station's MAC (``chaddr``: one per station) and those the station
announced (hostapd's bridge accepts gratuitous ARP).

What the station can observe is whether any IPv4 broadcast or multicast frame, or ARP
request, ever arrives from the LAN (as sent, or turned into unicast to the station MAC):
the switch counts them in the uplink's group flows (`flows.wanted.static_flows`, purpose
``GROUP``; IPv6 ones are left out: a proxy-ARP AP turns RAs and NAs into unicast).  The core
asks for those counts every ``PROBE_INTERVAL`` seconds while the uplink is up
(`probe_due`), and `observed` decides:

* ``group-delivery``: such frames arrived;
* ``no-group-delivery``: none in ``group_quiet`` seconds (300) with the uplink up (a proxy-ARP AP,
  or a LAN that has been quiet that long);
* ``unknown``: not observed long enough yet.

What wlbridge does about it (`Core`): every bound guest address is announced at once and on
the round (`policing`) whatever the mode; with no group delivery the host's own IPv4
addresses join the round (a DHCP-snooping AP keeps one address per station, which a guest's
lease by the ``client-id`` strategy replaces) and the round's interval is at
most ``NO_GROUP_INTERVAL`` (an AP's neighbour entries learned from gratuitous ARP may be
collected 60 s after their last update: Linux's ``gc_stale_time``), and `status` says which guests the LAN cannot reach
(``unreachable_from_lan``: a guest port with no IPv4 address bound, e.g. a static guest
that has sent nothing yet: neither wlbridge nor the AP knows its address).  Pure: every
decision takes ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wlbridge.model.state import Model

PROBE_INTERVAL = 30.0  # seconds between two looks at the group counters
QUIET = 300.0  # seconds without a group frame before deciding "no group delivery"
NO_GROUP_INTERVAL = 30.0  # the round's longest interval with no group delivery
UNKNOWN, GROUPS, NO_GROUPS = "unknown", "group-delivery", "no-group-delivery"
WHY = {
    UNKNOWN: "not observed long enough yet",
    GROUPS: "broadcast or multicast frames from the LAN reach the station",
    NO_GROUPS: ("no broadcast or multicast frame from the LAN reached the station in {quiet:.0f} "
                "s with the uplink up: a proxy-ARP (Hotspot 2.0) AP that delivers no group "
                "traffic, or a LAN that quiet; LAN hosts then reach a guest only through the "
                "AP's proxy ARP, which knows the addresses wlbridge announces"),
}
STATIC_GUESTS = {
    UNKNOWN: None,
    GROUPS: "every guest answers the LAN's ARP itself, static or not",
    NO_GROUPS: ("a guest is reachable from the LAN while wlbridge holds its address (it "
                "has sent anything: DHCP, ARP, traffic; a static address then lives "
                "idle_timeout without traffic from it), which it announces; a static guest "
                "that has sent nothing since it started, or nothing for idle_timeout, is "
                "known neither to wlbridge nor to the AP: unreachable from the LAN until it "
                "sends"),
}


class ApMode:
    """The group-delivery observation of one uplink."""

    def __init__(self, quiet: float = QUIET) -> None:
        self.quiet = quiet  # seconds without a group frame before deciding there are none
        self.probe_interval = min(PROBE_INTERVAL, quiet / 3)
        self.mode = UNKNOWN
        self.count: int | None = None  # the group counters' last sum
        self.changed_at: float | None = None  # when it last grew (or the watch began)
        self.next_probe: float | None = None
        self.seen = 0  # group frames counted since the watch began

    def restart(self, now: float) -> None:
        """A (re)connection, the uplink (re)associated or a new one: observe again (the
        counters start over with the new flows)."""
        self.mode, self.count, self.changed_at = UNKNOWN, None, now
        self.next_probe, self.seen = now + self.probe_interval, 0

    def stop(self) -> None:
        """The uplink is down: nothing to observe."""
        self.next_probe = None

    def probe_due(self, now: float) -> bool:
        """Whether to ask the switch for the group counters now (then not again for
        ``PROBE_INTERVAL``, or a third of ``group_quiet`` if shorter)."""
        if self.next_probe is None or now < self.next_probe:
            return False
        self.next_probe = now + self.probe_interval
        return True

    def next_due(self) -> float | None:
        return self.next_probe

    def observed(self, counts: Iterable[int], now: float) -> bool:
        """The group counters' packet counts (a reply to the probe); whether the mode
        changed."""
        total = sum(counts)
        before = self.mode
        if self.changed_at is None:
            self.changed_at = now
        if self.count is None:
            grown = 0  # the first look since the watch began: the baseline
        else:  # (fewer than before: the flows were replaced and count anew)
            grown = total - self.count if total >= self.count else total
        if grown > 0:
            self.seen += grown
            self.changed_at = now
        self.count = total
        if self.seen:
            self.mode = GROUPS
        elif now - self.changed_at >= self.quiet:
            self.mode = NO_GROUPS
        return self.mode != before

    def interval(self, configured: float) -> float:
        """The round's interval in this mode (0: off, as configured)."""
        if self.mode == NO_GROUPS and configured > 0:
            return min(configured, NO_GROUP_INTERVAL)
        return configured

    def status(self, model: Model) -> dict[str, Any]:
        """What `wlbridge status` shows under ``ap``."""
        out: dict[str, Any] = {"mode": self.mode, "why": WHY[self.mode].format(quiet=self.quiet),
                               "group_frames_seen": self.seen,
                               "static_guests": STATIC_GUESTS[self.mode]}
        if self.mode == NO_GROUPS:
            out["unreachable_from_lan"] = sorted(
                g.name for g in model.guests.values()
                if not any(":" not in ip for ip in g.ips))
        return out
