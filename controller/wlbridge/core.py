"""The pure controller core: events in, OpenFlow 1.3 messages (datapath=None) out.

The core never touches a datapath, a socket or the clock: every event carries
``now``.  The app shell (`wlbridge_app`) feeds it events from os-ken and sends
what it returns.  What a packet-in teaches is decided in `learning`; who may
own which address in `guard`; DHCP in `dhcp_service`: they read the model (`state.Model`)
and return `effects`, which `_apply` carries out in one order (see `effects`).  Flow
layout is in `flows`, the pipeline in `pipeline`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import cookies, flows
from .addresses import canonical_ip6
from .compat import ofp, parser
from .dhcp6_service import Dhcp6Service
from .dhcp_service import DhcpService
from .effects import (
    Bind,
    Deliver,
    Effect,
    JoinGroup,
    LearnMac,
    LeaveGroup,
    Refresh,
    Reinject,
    Unbind,
)
from .groupmsg import WELL_KNOWN
from .groups import MAX_GROUPS, MAX_GROUPS_PER_PORT, MEMBERSHIP_INTERVAL, GroupPolicy
from .learning import PacketInPolicy
from .meters import Meters
from .ndp import unsolicited_na
from .pipeline import (
    PORT_LOCAL,
    PORT_TABLE,
    FlowSpec,
    build_add,
    build_delete_cookie,
    build_delete_strict,
)
from .ratelog import RateLimitedLog
from .restore import Parked
from .sections import Section, Sections
from .state import (
    Binding,
    Counters,
    GuestPort,
    Model,
    Port,
    StateFormatError,
    parse_groups,
    parse_persistent,
    persistent_form,
)
from .status_view import gratuitous_arp, status_view
from .telemetry import LOGGED_MAX, Telemetry

LOG = logging.getLogger(__name__)


@dataclass
class CoreConfig:
    """Settings of the core (see `wlbridge run --help` for the user-facing names)."""

    uplink: str = "wlan0"
    dhcp_mode: str = "broadcast"  # or "client-id"
    idle_timeout: int = 300  # seconds a binding not learned from DHCP lives unused
    max_ips_per_port: int = 16
    max_bindings: int = 4096
    ipv6_bindings_per_guest: int = 8  # IPv6 addresses one guest port may hold
    static_macs: dict[str, str] = field(default_factory=dict)  # port name -> MAC
    meters: bool = False  # rate-limit controller-bound traffic per guest port (product: on)
    meter_pps: int = 200
    group_membership_interval: int = MEMBERSHIP_INTERVAL  # seconds a group report holds
    max_groups_per_port: int = MAX_GROUPS_PER_PORT
    max_groups: int = MAX_GROUPS


def flow_stats_request(all_flows: bool = False):
    """Ask the switch for its flows (ours only, unless `all_flows`)."""
    cookie, mask = (0, 0) if all_flows else cookies.ours_match()
    return parser.OFPFlowStatsRequest(
        datapath=None, flags=0, table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, cookie=cookie, cookie_mask=mask, match=parser.OFPMatch())


class Core:
    """wlbridge's brain for one bridge."""

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self.model = Model()
        self.counters = Counters()
        self.dpid: int | None = None
        self.connected = False
        self.generation = 0
        self.ports: dict[int, Port] = {}
        self.dirty = False  # persistent state changed since last `take_dirty`
        self._restored = Parked(self.config.max_bindings)  # saved/parked, awaiting ports
        self._sections = Sections()
        self.binding_log = RateLimitedLog(LOG, "binding changes")  # one line per address
        self.telemetry = Telemetry(self.counters, LOG, self.binding_log)
        self._view: flows.View | None = None  # cached `view()`; None: recompute
        self.meters = Meters(self.config.meters, self.config.meter_pps)
        self._announce_due: list[float] = []  # when to repeat the last announcement
        self.dhcp = DhcpService(self.model, self.config, self.telemetry)
        self.groups = GroupPolicy(self.model, self.config, self.telemetry)
        self.dhcp6 = Dhcp6Service(self.model, self.config, self.telemetry)
        self.learning = PacketInPolicy(self.model, self.config, self.telemetry, self.dhcp,
                                       self.groups, self.dhcp6)
        self._restored_groups: list[dict] = []  # saved memberships awaiting their port

    # ------------------------------------------------------------------ model
    # (the model's parts under the names the app, the tests and `wlbridge status` use)
    @property
    def guests(self) -> dict[int, GuestPort]:
        return self.model.guests

    @guests.setter
    def guests(self, value: dict[int, GuestPort]) -> None:
        self.model.guests = value

    @property
    def bindings(self) -> dict[str, Binding]:
        return self.model.bindings

    @bindings.setter
    def bindings(self, value: dict[str, Binding]) -> None:
        self.model.bindings = value

    @property
    def host_ips(self) -> set[str]:
        return self.model.host_ips

    @host_ips.setter
    def host_ips(self, value: set[str]) -> None:
        self.model.host_ips = value

    @property
    def uplink(self) -> int | None:
        return self.model.uplink

    @uplink.setter
    def uplink(self, value: int | None) -> None:
        self.model.uplink = value

    @property
    def station_mac(self) -> str | None:
        return self.model.station_mac

    @station_mac.setter
    def station_mac(self, value: str | None) -> None:
        self.model.station_mac = value

    @property
    def _by_mac(self) -> dict[str, GuestPort]:
        return self.model.by_mac

    @_by_mac.setter
    def _by_mac(self, value: dict[str, GuestPort]) -> None:
        self.model.by_mac = value

    @property
    def _logged(self) -> set[str]:
        return self.telemetry.logged

    # ------------------------------------------------------------------ events
    def switch_connected(self, dpid: int, ports: Iterable[Port], now: float) -> list:
        """A (re)connection: install everything under a new generation, then clean up."""
        self.dpid = dpid
        self.connected = True
        self.generation = self.generation % cookies.MAX_GENERATION + 1
        self.ports = {p.port_no: p for p in ports if p.port_no < ofp.OFPP_MAX}
        before = self.station_mac
        self._find_uplink()
        for port_no, guest in list(self.guests.items()):
            port = self.ports.get(port_no)
            if port is None or port.name != guest.name or port_no == self.uplink:
                self._park_guest(port_no)  # back in place if its port (re)appears
        self._by_mac = {g.mac: g for g in self.guests.values() if g.mac}
        for port in self.ports.values():
            if port.port_no != self.uplink:
                self._ensure_guest(port)
        self._adopt_restored(now)
        self._drop_bindings_without_port()
        self._sections = Sections()
        self._view = None
        msgs = self._meter_msgs(sorted(self.guests))
        msgs += self._sync_all()
        msgs += self.meters.stale(self.guests)
        msgs.append(flow_stats_request())
        if before is not None and self.station_mac is not None and before != self.station_mac:
            msgs += self._station_changed(before, now)
        LOG.info("switch %016x connected: %d ports, uplink %s, station MAC %s, generation %d, "
                 "meters %s", dpid, len(self.ports), self.uplink, self.station_mac,
                 self.generation, "on" if self.meters.in_use else "off")
        return msgs

    def meter_info(self, max_meter: int, existing: Iterable[int] | None, now: float) -> list:
        """What the switch reported about meters, just before `switch_connected`: its largest
        meter id (0: no meter support) and the meters it has (None: unknown)."""
        self.meters.reported(max_meter, existing)
        self._view = None
        if self.meters.enabled and not self.meters.in_use:
            self._log_once("no-meters", "the switch has no OpenFlow meters: packet-ins are "
                           "limited only by the bridge's controller_rate_limit")
        return []

    def switch_disconnected(self, now: float) -> list:
        """The switch went away; keep state, the next connection resyncs."""
        self.connected = False
        return []

    def flow_stats(self, flow_cookies: Iterable[int], now: float) -> list:
        """After a resync: delete our flows of any older generation (make before break)."""
        stale = set()
        for value in flow_cookies:
            c = cookies.decode(value)
            if c is not None and c.generation != self.generation:
                stale.add(c.generation)
        return [build_delete_cookie(*cookies.generation_match(g)) for g in sorted(stale)]

    def port_added(self, port: Port, now: float) -> list:
        if port.port_no >= ofp.OFPP_MAX:
            return []
        old = self.ports.get(port.port_no)
        self.ports[port.port_no] = port
        if old is not None and old.name != port.name:
            self._forget_port(port.port_no)
        if port.name == self.config.uplink or port.port_no == self.uplink:
            before = self.station_mac
            came_up = (old is None or not old.up) and port.up   # None: re-plugged
            self._find_uplink()
            msgs = self._sync_all()
            if before is not None and self.station_mac is not None and before != self.station_mac:
                msgs += self._station_changed(before, now)
            elif came_up:
                LOG.info("uplink %s is up again: announcing the guests", port.name)
                msgs += self._announce(now)
            return msgs
        self._ensure_guest(port)
        self._adopt_restored(now)
        msgs = self._meter_msgs([port.port_no])
        return msgs + self._sync([("static",), ("port", port.port_no)]
                                 + [("ip", ip) for ip in self.guests[port.port_no].ips]
                                 + self._group_sections())

    def port_modified(self, port: Port, now: float) -> list:
        """Port status change: a new station MAC (reconnect, randomisation) redoes the flows."""
        return self.port_added(port, now)

    def port_deleted(self, port_no: int, now: float) -> list:
        port = self.ports.pop(port_no, None)
        if port is None:
            return []
        if port_no == self.uplink:
            LOG.warning("uplink %s left the bridge: guests are cut off", port.name)
            self._find_uplink()
            return self._sync_all()
        self._forget_port(port_no)
        msgs = self._sync([("static",)] + self._group_sections())
        if self.connected and flows.subject(port_no):
            msgs.append(build_delete_cookie(*cookies.subject_match(port_no)))
        if self.connected and port_no in self.meters.ids:
            msgs += self.meters.delete([port_no])
        return msgs

    def host_addresses(self, ips: Iterable[str], now: float) -> list:
        """The host's own IPv4 and IPv6 addresses (on the bridge's internal port), each bare or
        with its prefix length (``10.0.0.2/24``: its subnet's broadcast address is restored too)."""
        ips = list(ips)
        bare = [ip.partition("/")[0] for ip in ips]
        self.host_ips = {canonical_ip6(ip) or ip if ":" in ip else ip for ip in bare}
        before = self.model.host_broadcasts
        self.model.host_broadcasts = subnet_broadcasts(ips)
        msgs: list = self._sync([("group", g) for g in sorted(
            before ^ self.model.host_broadcasts)])
        for ip in sorted(self.host_ips & set(self.bindings)):
            self._log_once(f"host-ip:{ip}", "host took %s, dropping guest binding", ip)
            msgs += self._unbind(ip, "host-ip")
        return msgs

    def packet_in(self, in_port: int, data: bytes, now: float, table_id: int = 0,
                  cookie: int = 0) -> list:
        """A packet the switch sent us.  Never raises."""
        try:
            effects = self.learning.packet_in(in_port, data, now)
            return self._apply(effects, now) if effects else []
        except Exception:
            self.counters.bump("errors.internal")
            LOG.exception("internal error on packet-in from port %s", in_port)
            return []

    def flow_removed(self, cookie: int, match: dict[str, Any], now: float,
                     reason: int = ofp.OFPRR_IDLE_TIMEOUT) -> list:
        """An idle binding flow timed out in the switch: the binding is unused, drop it.
        Flows removed for any other reason (a switch shutting down deletes its flows)
        say nothing about the guest."""
        c = cookies.decode(cookie)
        if reason != ofp.OFPRR_IDLE_TIMEOUT:
            return []
        if c is None or c.purpose != cookies.Purpose.GUEST_IP:
            return []
        ip = match.get("ipv4_src")
        if ip is None and isinstance(match.get("ipv6_src"), str):
            ip = canonical_ip6(match["ipv6_src"])
        b = self.bindings.get(ip) if isinstance(ip, str) else None
        if b is None or b.source in flows.LEASED or c.generation != self.generation:
            return []
        self.counters.bump("bindings.expired.idle")
        self.binding_log.info(now, "binding %s on port %s expired (idle)", ip, b.port_no)
        return self._unbind(ip, "idle")

    def tick(self, now: float) -> list:
        """Periodic work: DHCP lease expiry, relay table expiry."""
        msgs: list = []
        for ip, b in list(self.bindings.items()):
            if b.expires is not None and b.expires <= now:
                self.counters.bump("bindings.expired.lease")
                self.binding_log.info(now, "lease of %s on port %s ended", ip, b.port_no)
                msgs += self._unbind(ip, "lease")
        if self._restored.expire(now):
            self.dirty = True
        ended = self.groups.expired(now)
        if ended:
            msgs += self._apply(ended, now)
        waiting = [r for r in self._restored_groups if r["expires"] > now]
        if len(waiting) != len(self._restored_groups):
            self._restored_groups, self.dirty = waiting, True
        self.dhcp.tick(now)
        self.dhcp6.tick(now)
        self.binding_log.tick(now)
        if self._announce_due and self._announce_due[0] <= now:
            while self._announce_due and self._announce_due[0] <= now:
                self._announce_due.pop(0)
            msgs += self._announce()
        return msgs

    def next_due(self) -> float | None:
        """When `tick` next has something to do (a lease ending, also one of a saved binding
        still waiting for its port, a relay entry expiring, a held-back log summary, a repeated
        announcement); None: nothing is pending, so the
        shell need not tick at all until the next event."""
        due = [b.expires for b in self.bindings.values() if b.expires is not None]
        due += [t for t in (self.dhcp.next_due(), self.dhcp6.next_due(), self.binding_log.due(),
                            self._restored.next_due(), self.groups.next_due())
                if t is not None]
        due += self._announce_due[:1]
        return min(due) if due else None

    # ------------------------------------------------------------ persistence
    def export_state(self) -> dict[str, Any]:
        """What is saved: the live guests and bindings, and those restored or parked that
        still wait for their port (a save never forgets what was known)."""
        return persistent_form(self.guests, self.bindings, self.generation,
                               self._restored.guests, self._restored.bindings,
                               self._group_records())

    def unconfirmed(self) -> list[dict]:
        """Saved or parked guests and bindings the switch has not confirmed yet (their port
        is not on the bridge, or the switch is not connected)."""
        return self._restored.unconfirmed({g.name for g in self.guests.values()})

    def restore_state(self, data: Any) -> None:
        """Load saved bindings; they apply as soon as their ports exist.  May raise
        StateFormatError (the caller moves the file aside and starts empty)."""
        generation, guests, bindings = parse_persistent(data)
        self.generation = generation % cookies.MAX_GENERATION
        self._restored = Parked(self.config.max_bindings, guests, bindings)
        self._restored_groups = parse_groups(data)[:self.config.max_groups]

    def take_dirty(self) -> bool:
        dirty, self.dirty = self.dirty, False
        return dirty

    # ----------------------------------------------------------------- status
    def status(self, now: float) -> dict[str, Any]:
        """What `wlbridge status` shows (JSON-able)."""
        return status_view(
            self.model, self.ports, self.unconfirmed(),
            {"dpid": self.dpid, "connected": self.connected, "generation": self.generation},
            {"uplink": self.config.uplink, "dhcp_mode": self.config.dhcp_mode,
             "idle_timeout": self.config.idle_timeout},
            self.counters, now)

    # ---------------------------------------------------------------- effects
    def _apply(self, effects: list[Effect], now: float) -> list:
        """Carry out what a policy decided, in one order: deliveries first (a DHCP reply
        before its binding's flows), then the model changes in the order given with the
        flow sections they touched synced once, re-injections last (through the new
        flows)."""
        out: list = []
        reinject: list = []
        touched: dict[Section, None] = {}
        for effect in effects:
            kind = type(effect)
            if kind is Bind:
                guest = self.model.guests.get(effect.port_no)
                if guest is not None:
                    self._bind(guest, effect.ip, effect.source, now, effect.expires,
                               effect.lease)
                    touched[("ip", effect.ip)] = None
            elif kind is Reinject:
                reinject.append(self.packet_out_table(effect.in_port, effect.data))
            elif kind is Deliver:
                out.append(self.packet_out(effect.in_port,
                                           [parser.OFPActionOutput(effect.out_port)],
                                           effect.data))
            elif kind is Unbind:
                if self._unbind_model(effect.ip, effect.why):
                    touched[("ip", effect.ip)] = None
            elif kind is LearnMac:
                self._learn_mac(effect.port_no, effect.mac)
                touched[("port", effect.port_no)] = None
            elif kind is Refresh:
                touched[("ip", effect.ip)] = None
            elif kind is JoinGroup:
                if self._join(effect.port_no, effect.group, effect.expires):
                    touched[("group", effect.group)] = None
            elif kind is LeaveGroup:
                if self._leave(effect.port_no, effect.group, effect.why):
                    touched[("group", effect.group)] = None
            else:  # pragma: no cover - a new effect without its application
                raise TypeError(f"unknown effect {effect!r}")
        if touched:
            out += self._sync(touched)
        return out + reinject if reinject else out

    def _join(self, port_no: int, group: str, expires: float) -> bool:
        """Membership of `group` for a guest port until `expires`; True if it is new (the
        group's flows change)."""
        if port_no not in self.model.guests:
            return False
        members = self.model.groups.setdefault(group, {})
        new = port_no not in members
        members[port_no] = expires
        self.dirty = True
        if new:
            self.counters.bump("groups.joined")
        return new

    def _leave(self, port_no: int, group: str, why: str) -> bool:
        members = self.model.groups.get(group)
        if members is None or members.pop(port_no, None) is None:
            return False
        if not members:
            del self.model.groups[group]
        self.dirty = True
        self.counters.bump(f"groups.left.{why}")
        return True

    def _group_sections(self) -> list[Section]:
        """Every group section wanted: well-known groups, the host's subnet broadcasts and
        the groups guests joined."""
        groups = set(WELL_KNOWN) | self.model.host_broadcasts | set(self.model.groups)
        groups.update(s[1] for s in self._sections if s[0] == "group")  # (those that end)
        return [("group", g) for g in sorted(groups)]

    def _group_records(self) -> list[dict]:
        """Memberships as saved: by port name; those still waiting for their port too."""
        names = {g.port_no: g.name for g in self.guests.values()}
        records = [{"group": group, "port": names[port], "expires": end}
                   for group, members in sorted(self.model.groups.items())
                   for port, end in sorted(members.items()) if port in names]
        live = {(r["group"], r["port"]) for r in records}
        records += [r for r in self._restored_groups if (r["group"], r["port"]) not in live]
        return records[:self.config.max_groups]

    def _learn_mac(self, port_no: int, mac: str) -> None:
        guest = self.model.guests[port_no]
        guest.mac, guest.mac_source = mac, "learned"
        self.model.by_mac[mac] = guest
        self.dirty = True
        self.counters.bump("guests.mac_learned")
        LOG.info("port %s: guest MAC %s", guest.name, mac)

    # --------------------------------------------------------------- bindings
    def bind(self, guest: GuestPort, ip: str, source: str, now: float,
             expires: float | None = None, lease: int | None = None) -> list:
        """Bind `ip` to a guest (replacing any other binding of that IP)."""
        self._bind(guest, ip, source, now, expires, lease)
        return self._sync([("ip", ip)])

    def _bind(self, guest: GuestPort, ip: str, source: str, now: float,
              expires: float | None, lease: int | None) -> None:
        bindings = self.model.bindings
        old = bindings.get(ip)
        if old is not None and old.port_no != guest.port_no:
            self._unbind_model(ip, "moved")
        bindings[ip] = Binding(ip, guest.port_no, guest.mac or "", source, now, expires, lease)
        guest.ips.add(ip)
        self.dirty = True
        self.counters.bump(f"bindings.learned.{source}")
        if old is None or old.port_no != guest.port_no:
            self.binding_log.info(now, "port %s: %s is at %s (%s)", guest.name, ip, guest.mac,
                                  source)

    def unbind(self, ip: str, why: str) -> list:
        return self._unbind(ip, why)

    def _unbind(self, ip: str, why: str) -> list:
        if not self._unbind_model(ip, why):
            return []
        return self._sync([("ip", ip)])

    def _unbind_model(self, ip: str, why: str) -> bool:
        b = self.model.bindings.pop(ip, None)
        if b is None:
            return False
        guest = self.model.guests.get(b.port_no)
        if guest is not None:
            guest.ips.discard(ip)
        self.dirty = True
        self.counters.bump(f"bindings.removed.{why}")
        return True

    def guest_by_mac(self, mac: str) -> GuestPort | None:
        return self.model.guest_by_mac(mac)

    # ----------------------------------------------------------- flow syncing
    def view(self) -> flows.View | None:
        """What flow computation needs; cached until ports, uplink or meters change."""
        model = self.model
        if model.uplink is None or model.station_mac is None:
            return None
        if self._view is None:
            self._view = flows.View(model.uplink, model.station_mac, tuple(sorted(model.guests)),
                                    self.config.idle_timeout, self.meters.in_use,
                                    self.meters.limit)
        return self._view

    def _args(self, section: Section) -> tuple | None:
        """What a section's flows are computed from (None: it has none)."""
        view = self.view()
        if section[0] == "static":
            return flows.static_args(view)
        if section[0] == "port":
            guest = self.model.guests.get(section[1])
            return flows.port_args(guest, view) if guest else None
        if section[0] == "group":
            group = section[1]
            if group in WELL_KNOWN or group in self.model.host_broadcasts:
                return flows.group_args(group, None, view)
            members = self.model.groups.get(group)
            return flows.group_args(group, members, view) if members else None
        b = self.model.bindings.get(section[1])
        return flows.binding_args(b, view) if b else None

    def _sync_all(self) -> list:
        sections = [("static",)] + [("port", p) for p in sorted(self.guests)]
        sections += [("ip", ip) for ip in sorted(self.bindings)]
        sections += self._group_sections()
        listed = set(sections)
        sections += [s for s in self._sections if s not in listed]
        return self._sync(sections)

    def _sync(self, sections: Iterable[Section]) -> list:
        """Recompute sections, return adds (new or changed) then strict deletes."""
        adds, deletes = [], []
        for section in sections:
            new, gone = self._sections.update(section, self._args(section))
            if self.connected:
                adds += [build_add(s, self.generation) for s in new]
                deletes += [build_delete_strict(s) for s in gone]
        return adds + deletes

    def flow_specs(self) -> list[FlowSpec]:
        """Every flow the core currently wants (for tests and `wlbridge flows`)."""
        return self._sections.specs()

    def _meter_msgs(self, ports: Iterable[int]) -> list:
        """Meters of these guest ports, before flows use them (only while connected)."""
        if not self.connected:
            return []
        return self.meters.ensure(p for p in ports if p in self.guests)

    # ------------------------------------------------------- station changes
    def _station_changed(self, before: str, now: float) -> list:
        self.counters.bump("station.mac_changes")
        LOG.warning("station MAC changed from %s to %s: flows rewritten, announcing the guests",
                    before, self.station_mac)
        return self._announce(now)

    def _announce(self, now: float | None = None) -> list:
        """Gratuitous ARP for every guest and host address, from the station MAC, so LAN
        hosts update their caches at once (after a station MAC change or the uplink coming
        up).  Repeated by `tick` after ANNOUNCE_AGAIN seconds (RFC 5227 announces twice):
        the first may be lost while the station (re)associates."""
        if now is not None:
            self._announce_due = [now + delay for delay in ANNOUNCE_AGAIN]
        uplink = self.ports.get(self.uplink) if self.uplink is not None else None
        if (not self.connected or uplink is None or not uplink.up
                or self.station_mac is None):
            return []  # the uplink coming up announces
        ips = sorted(self.bindings) + sorted(self.host_ips - set(self.bindings))
        ips = [ip for ip in ips if ":" not in ip]  # ARP is IPv4's (IPv6 would announce by NA)
        out = [parser.OFPActionOutput(self.uplink)]
        msgs = [self.packet_out(ofp.OFPP_CONTROLLER, out, gratuitous_arp(self.station_mac, ip))
                for ip in ips if ":" not in ip]
        # IPv6: an unsolicited NA (override) per guest address (the host's kernel has its own)
        msgs += [self.packet_out(ofp.OFPP_CONTROLLER, out, unsolicited_na(self.station_mac, ip))
                 for ip in sorted(self.bindings) if ":" in ip]
        self.counters.bump("station.announced", len(msgs))
        return msgs

    # ---------------------------------------------------------------- helpers
    def packet_out_table(self, in_port: int, data: bytes):
        """Re-inject a frame at table 0 as if it had just arrived on `in_port`."""
        return self.packet_out(in_port, [parser.OFPActionOutput(PORT_TABLE)], data)

    @staticmethod
    def packet_out(in_port: int, actions: list, data: bytes):
        return parser.OFPPacketOut(datapath=None, buffer_id=ofp.OFP_NO_BUFFER,
                                   in_port=in_port, actions=actions, data=data)

    def _find_uplink(self) -> None:
        self.uplink, self.station_mac = None, None
        self._view = None
        for port in self.ports.values():
            if port.name == self.config.uplink:
                self.uplink, self.station_mac = port.port_no, port.hw_addr.lower()
        if self.uplink is None:
            self._log_once("no-uplink", "uplink %s is not on the bridge", self.config.uplink)
        else:
            self.telemetry.forget("no-uplink")

    def _ensure_guest(self, port: Port) -> None:
        if port.port_no in self.guests or port.port_no == PORT_LOCAL:
            return
        guest = GuestPort(port.port_no, port.name)
        mac = self.config.static_macs.get(port.name)
        if mac:
            guest.mac, guest.mac_source = mac.lower(), "configured"
            self._by_mac[guest.mac] = guest
        self.guests[port.port_no] = guest
        self._view = None

    def _adopt_restored(self, now: float) -> None:
        """Apply saved (or parked) guest MACs and bindings to ports that now exist."""
        self._restored.adopt(self.model, self.counters, now)
        if self._restored_groups:
            by_name = {g.name: g.port_no for g in self.guests.values()}
            waiting = []
            for rec in self._restored_groups:
                port_no = by_name.get(rec["port"])
                if port_no is None:
                    waiting.append(rec)
                elif rec["expires"] > now and self._join(port_no, rec["group"], rec["expires"]):
                    self.counters.bump("groups.restored")
            self._restored_groups = waiting

    def _drop_bindings_without_port(self) -> None:
        for ip, b in list(self.bindings.items()):
            if b.port_no not in self.guests:
                del self.bindings[ip]

    def _park_guest(self, port_no: int) -> None:
        """A guest port missing (or renamed) at a reconnect: keep what we know about it by
        port name, as if restored from the state file, in case the port comes back."""
        guest = self.guests.pop(port_no)
        self._view = None
        self.dhcp.forget_port(port_no)
        self.dhcp6.forget_port(port_no)
        if self._by_mac.get(guest.mac or "") is guest:
            del self._by_mac[guest.mac]
        self._restored.park(self.model.bindings, self.counters, guest)
        for group, members in list(self.model.groups.items()):  # kept like its bindings
            if port_no in members:
                self._restored_groups.append({"group": group, "port": guest.name,
                                              "expires": members[port_no]})
                self._leave(port_no, group, "parked")
        del self._restored_groups[:-self.config.max_groups]

    def _forget_port(self, port_no: int) -> None:
        guest = self.guests.pop(port_no, None)
        self._view = None
        if guest is not None and self._by_mac.get(guest.mac or "") is guest:
            del self._by_mac[guest.mac]
        self.dhcp.forget_port(port_no)
        self.dhcp6.forget_port(port_no)
        for ip in [ip for ip, b in self.bindings.items() if b.port_no == port_no]:
            del self.bindings[ip]
            self.counters.bump("bindings.removed.port-gone")
        self._drop_memberships(port_no, "port-gone")
        for section in [s for s in self._sections if s[0] == "port" and s[1] == port_no]:
            self._sections.forget(section)
        for section in [s for s in self._sections if s[0] == "ip" and s[1] not in self.bindings]:
            self._sections.forget(section)
        if guest is not None:
            self.dirty = True
            LOG.info("port %s removed with its bindings", guest.name)

    def _drop_memberships(self, port_no: int, why: str) -> None:
        """A guest port is gone: its group memberships end (the caller syncs the groups)."""
        for group in [g for g, members in self.model.groups.items() if port_no in members]:
            self._leave(port_no, group, why)

    def _log_once(self, key: str, msg: str, *args: Any) -> None:
        self.telemetry.log_once(key, msg, *args)


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


ANNOUNCE_AGAIN = (1.0, 3.0)  # seconds after a station change: gratuitous ARPs again


__all__ = ["LOGGED_MAX", "Core", "CoreConfig", "Port", "StateFormatError"]
