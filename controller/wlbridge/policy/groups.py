"""Group snooping: which multicast groups each guest is a member of, from its IGMP and MLD
reports, so that group traffic the AP turned into unicast is restored to exactly those
guests with the group's own MAC (`flows.group_flows`).

Memberships live in the model (`Model.groups`: group -> {port: end}) and end like IGMP/MLD
membership does: `group_membership_interval` seconds after the last report (260 s, RFC 3376
8.4 / RFC 3810 9.4, refreshed by the guest's answers to the LAN router's queries), or at once
on a leave (IGMPv2 leave, MLD done, a v3/v2 record changing to include no source) from a
port that carries one guest, so no last-member query is needed.  A port that carries several
guests (`GuestPort.macs`) is one member for all of them: a leave from one of them does not end
it (another may still be a member; the port's next report refreshes it), the interval does.  A guest holds at most `max_groups_per_port`
groups, the bridge `max_groups`; beyond, reports are refused and counted, never raising.
Well-known groups (`groupmsg.WELL_KNOWN`) are always restored to every guest and are not
tracked.  Decisions are `effects` (`JoinGroup`, `LeaveGroup`); `Core._apply` carries them out.
"""

from __future__ import annotations

from typing import Any

from wlbridge.model.state import GuestPort, Model
from wlbridge.policy.effects import Effect, JoinGroup, LeaveGroup
from wlbridge.proto.groupmsg import WELL_KNOWN, ReportError, parse_report
from wlbridge.telemetry import Telemetry

MEMBERSHIP_INTERVAL = 260  # seconds (2 x 125 s query interval + 10 s response)
MAX_GROUPS_PER_PORT = 64
MAX_GROUPS = 2048


class GroupPolicy:
    """Membership decisions over one model; `config` supplies ``group_membership_interval``,
    ``max_groups_per_port`` and ``max_groups`` (defaults above when it lacks them)."""

    def __init__(self, model: Model, config: Any, telemetry: Telemetry) -> None:
        self.model = model
        self.interval = float(getattr(config, "group_membership_interval",
                                      MEMBERSHIP_INTERVAL))
        self.per_port = int(getattr(config, "max_groups_per_port", MAX_GROUPS_PER_PORT))
        self.total = int(getattr(config, "max_groups", MAX_GROUPS))
        self.tel = telemetry

    def from_guest(self, guest: GuestPort, data: bytes, now: float) -> list[Effect] | None:
        """A guest's IGMP or MLD message (the switch forwarded it already): the memberships
        it starts, refreshes or ends.  None: not a membership report at all (another ICMPv6
        message: the caller decides)."""
        try:
            report = parse_report(data)
        except ReportError as exc:
            if exc.reason == "not-a-report":
                return None
            if exc.reason == "query":  # a guest acting as querier: forwarded, not learned
                self.tel.bump("groups.ignored.query")
                return []
            self.tel.bump(f"malformed.group-report.{exc.reason}")
            return []
        self.tel.bump("packet_in.igmp" if report.family == 4 else "packet_in.mld")
        groups = self.model.groups
        port = guest.port_no
        effects: list[Effect] = []
        held = sum(1 for members in groups.values() if port in members)
        total = len(groups)
        expires = now + self.interval
        for group in report.joins:
            if group in WELL_KNOWN:
                continue
            members = groups.get(group)
            if members is None or port not in members:
                if held >= self.per_port or (members is None and total >= self.total):
                    self._refuse(guest, group, "port" if held >= self.per_port else "total")
                    continue
                held += 1
                total += members is None
            effects.append(JoinGroup(port, group, expires))
        for group in report.leaves:
            if port in groups.get(group, ()):
                if len(guest.macs) > 1:  # its siblings may still be members
                    self.tel.bump("groups.leave_shared")
                    continue
                effects.append(LeaveGroup(port, group, "leave"))
        return effects

    def expired(self, now: float) -> list[Effect]:
        """Memberships whose interval ran out without a report."""
        return [LeaveGroup(port, group, "timeout")
                for group, members in sorted(self.model.groups.items())
                for port, end in sorted(members.items()) if end <= now]

    def next_due(self) -> float | None:
        """When the first membership ends (None: there is none)."""
        return min((end for members in self.model.groups.values() for end in members.values()),
                   default=None)

    def _refuse(self, guest: GuestPort, group: str, limit: str) -> None:
        self.tel.bump(f"refused.group-limit-{limit}")
        self.tel.log_once(f"refused:{guest.port_no}:group-limit-{limit}",
                          "port %s: refused group %s (%s limit reached)", guest.name, group,
                          "per-port" if limit == "port" else "total")
