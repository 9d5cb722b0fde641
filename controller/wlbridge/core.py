"""The pure controller core: events in, OpenFlow 1.3 messages (datapath=None) out.

The core never touches a datapath, a socket or the clock: every event carries
``now``.  The app shell (`wlbridge_app`) feeds it events from os-ken and sends
what it returns.  What a packet-in teaches is decided in `learning`; who may
own which address in `guard`; DHCP in `dhcp_service`; every other event, a (re)connection
too, in `lifecycle`: they read the model (`state.Model`) and return `effects`, which
`_apply` carries out in one order (see `effects`), each type by its one handler (`APPLY`),
changing the model only through its methods.  Flow layout is in `flows`, the pipeline in
`pipeline`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from wlbridge.compat import ofp
from wlbridge.flows import cookies, wanted
from wlbridge.flows.pipeline import (
    BY_NAME,
    ETH_IPV6,
    PORT_TABLE,
    FlowSpec,
    build_add,
    build_delete_cookie,
    build_delete_strict,
)
from wlbridge.flows.sections import Sections
from wlbridge.flows.wanted import (
    STATIC,
    BindingSection,
    GroupSection,
    PortSection,
    Section,
)
from wlbridge.model.fleet import Claim, Departed, HostSeen
from wlbridge.model.parked import Parked
from wlbridge.model.state import (
    Binding,
    Counters,
    Gone,
    GuestPort,
    Model,
    Port,
    StateFormatError,
    parse_groups,
    parse_persistent,
    persistent_form,
)
from wlbridge.openflow import ofmsg
from wlbridge.openflow.meters import Meters
from wlbridge.policy import fleet, lifecycle, network
from wlbridge.policy.apmode import NO_GROUPS, QUIET, ApMode
from wlbridge.policy.dhcp6_service import Dhcp6Service
from wlbridge.policy.dhcp_service import DhcpService
from wlbridge.policy.effects import (
    AddGuest,
    Adopt,
    Announce,
    Bind,
    Bounce,
    Deliver,
    DropGuest,
    Effect,
    ForgetDeparted,
    HostAddresses,
    JoinGroup,
    LearnMac,
    LeaveGroup,
    LeaveLan,
    NoteConflict,
    Park,
    Reannounce,
    Refresh,
    Reinject,
    SetRemote,
    SetUplink,
    SyncPort,
    Unbind,
)
from wlbridge.policy.groups import MAX_GROUPS, MAX_GROUPS_PER_PORT, MEMBERSHIP_INTERVAL, GroupPolicy
from wlbridge.policy.learning import MAX_MACS_PER_PORT, PacketInPolicy
from wlbridge.policy.policing import (
    MAX_IPV6_PER_STATION,
    REANNOUNCE_INTERVAL,
    REANNOUNCE_RATE,
    Policing,
)
from wlbridge.proto.groupmsg import WELL_KNOWN
from wlbridge.proto.ndp import unsolicited_na
from wlbridge.proto.packets import gratuitous_arp
from wlbridge.ratelog import RateLimitedLog
from wlbridge.status_view import status_view
from wlbridge.telemetry import LOGGED_MAX, Telemetry

SNOOP_TABLE = BY_NAME["guest_snoop"].table_id  # its packet-ins are copies (group snooping)
LOG = logging.getLogger(__name__)


@dataclass
class CoreConfig:
    """Settings of the core (see `wlbridge run --help` for the user-facing names)."""

    uplink: str = "wlan0"
    dhcp_mode: str = "broadcast"  # or "client-id"
    idle_timeout: int = 300  # seconds a binding not learned from DHCP lives unused
    max_ips_per_port: int = 16
    max_macs_per_port: int = MAX_MACS_PER_PORT  # guest MACs one port may carry (1: one guest)
    max_bindings: int = 4096
    ipv6_bindings_per_guest: int = 8  # IPv6 addresses one guest (MAC) may hold
    static_macs: dict[str, str] = field(default_factory=dict)  # port name -> MAC
    meters: bool = False  # rate-limit controller-bound traffic per guest port (product: on)
    meter_pps: int = 200
    group_membership_interval: int = MEMBERSHIP_INTERVAL  # seconds a group report holds
    max_groups_per_port: int = MAX_GROUPS_PER_PORT
    max_groups: int = MAX_GROUPS
    reannounce_interval: float = REANNOUNCE_INTERVAL  # seconds; 0: no periodic re-announcement
    reannounce_rate: float = REANNOUNCE_RATE  # re-announcement frames per second, at most
    max_ipv6_per_station: int = MAX_IPV6_PER_STATION  # IPv6 addresses of all guests together
    group_quiet: float = QUIET  # seconds without a group frame from the LAN: "no group delivery"
    fleet_host: str = ""  # this host's name in the fleet store ("": no store)
    fleet_gone_after: int = 60  # seconds a host not seen in the store counts as gone


#: the group flows' (cookie, mask): what `group_stats_request` asks for (the shell routes its
#: reply to `Core.group_stats`)
GROUP_STATS_MATCH = cookies.purpose_match(cookies.Purpose.GROUP)
FROM_UPLINK_TABLE = BY_NAME["from_uplink"].table_id


def group_stats_request():
    """Ask for the group flows' counters (`policy.apmode`)."""
    return ofmsg.flow_stats_request(*GROUP_STATS_MATCH)


def flow_stats_request(all_flows: bool = False):
    """Ask the switch for its flows (ours only, unless `all_flows`)."""
    cookie, mask = (0, 0) if all_flows else cookies.ours_match()
    return ofmsg.flow_stats_request(cookie, mask)


class Core:
    """wlbridge's brain for one bridge."""

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self.model = Model(parked=Parked(self.config.max_bindings, self.config.max_groups))
        self.counters = Counters()
        self.dpid: int | None = None
        self.connected = False
        self.generation = 0
        self.ports: dict[int, Port] = {}
        self.dirty = False  # persistent state changed since last `take_dirty`
        self.fleet_changed = False  # what `fleet_record` says changed since it was taken
        self.sync_failed = False  # a section's flows could not be built since the connection
        self._sections = Sections()
        self.binding_log = RateLimitedLog(LOG, "binding changes")  # one line per address
        self.telemetry = Telemetry(self.counters, LOG, self.binding_log)
        self._view: wanted.View | None = None  # cached `view()`; None: recompute
        self.meters = Meters(self.config.meters, self.config.meter_pps)
        self._announce_due: list[float] = []  # when to repeat the last announcement
        self.lan = network.LanState()  # the LAN the station is on (`policy.network`)
        self._bounce_up: dict[int, float] = {}  # guest port -> when its carrier goes up again
        self.dhcp = DhcpService(self.model, self.config, self.telemetry)
        self.groups = GroupPolicy(self.model, self.config, self.telemetry)
        self.policing = Policing(self.model, self.config, self.telemetry)
        self.apmode = ApMode(self.config.group_quiet)
        self.dhcp6 = Dhcp6Service(self.model, self.config, self.telemetry, self.policing)
        self.learning = PacketInPolicy(self.model, self.config, self.telemetry, self.dhcp,
                                       self.groups, self.dhcp6, self.policing)

    # ------------------------------------------------------------------ model
    # (the model's parts under the names the app, the tests and `wlbridge status` use)
    @property
    def guests(self) -> dict[int, GuestPort]:
        return self.model.guests

    @property
    def bindings(self) -> dict[str, Binding]:
        return self.model.bindings

    @property
    def host_ips(self) -> set[str]:
        return self.model.host_ips

    @property
    def uplink(self) -> int | None:
        return self.model.uplink

    @property
    def station_mac(self) -> str | None:
        return self.model.station_mac

    # ------------------------------------------------------------------ events
    def switch_connected(self, dpid: int, ports: Iterable[Port], now: float) -> list:
        """A (re)connection: install everything under a new generation, then clean up."""
        self.dpid = dpid
        self.connected = True
        self.generation = self.generation % cookies.MAX_GENERATION + 1
        self.ports = {p.port_no: p for p in ports if p.port_no < ofp.OFPP_MAX}
        self._sections = Sections()  # every section is sent again (`SetUplink`)
        self._view = None
        self.sync_failed = False
        msgs = self._apply(lifecycle.connected(self.model, self.ports, self.config,
                                               self.telemetry), now)
        msgs += self.meters.stale(self.guests)
        msgs += self._carrier_up(None)  # a bounce the last connection did not finish
        if self.sync_failed:  # keep the older generation's flows: no stale sweep
            LOG.error("some flows could not be built: the previous generation's flows stay "
                      "until they are")
        else:
            msgs.append(flow_stats_request())
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
        if not port.up and (port.name == self.config.uplink or port.port_no == self.uplink):
            network.uplink_lost(self.lan)
        return self._apply(lifecycle.port_changed(self.model, self.ports, port, old,
                                                  self.config, self.telemetry), now)

    def port_modified(self, port: Port, now: float) -> list:
        """Port status change: a new station MAC (reconnect, randomisation) redoes the flows."""
        return self.port_added(port, now)

    def port_deleted(self, port_no: int, now: float) -> list:
        port = self.ports.pop(port_no, None)
        if port is None:
            return []
        was_uplink = port_no == self.uplink
        if was_uplink:
            network.uplink_lost(self.lan)
        msgs = self._apply(lifecycle.port_gone(self.model, self.ports, port, self.config,
                                               self.telemetry), now)
        if was_uplink:
            return msgs
        if self.connected and wanted.subject(port_no):
            msgs.append(build_delete_cookie(*cookies.subject_match(port_no)))
        if self.connected and port_no in self.meters.ids:
            msgs += self.meters.delete([port_no])
        return msgs

    def guest_announced(self, port_name: str, mac: str, source: str, now: float) -> list:
        """The host says guest `mac` is behind port `port_name` before it sent a frame
        (`source`: who said so, e.g. "libvirt", from the VM interface's
        ``external_ids:attached-mac``): the guest exists and its flows (source check,
        delivery, the LAN's ND naming it) are in place from its first frame.  Learned like a
        guest's first frame teaches (not configured): more guests behind the port (nested
        ones) are still learned, up to ``max_macs_per_port``."""
        return self._apply(lifecycle.announced(self.model, port_name, mac.lower(), source,
                                               self.config, self.telemetry), now)

    def host_addresses(self, ips: Iterable[str], now: float) -> list:
        """The host's own IPv4 and IPv6 addresses (on the bridge's internal port), each bare or
        with its prefix length (``10.0.0.2/24``: its subnet's broadcast address is restored too)."""
        return self._apply(lifecycle.host_addresses(self.model, ips, self.telemetry), now)

    def station_associated(self, ssid: str | None, now: float) -> list:
        """The station associated (again) with the network named `ssid` (None: unknown): a
        hint of which LAN it is on (`policy.network`)."""
        return self._apply(network.associated(self.lan, ssid, self.telemetry), now)

    def lan_seen(self, subnet: str, gateway_mac: str, ssid: str | None, now: float) -> list:
        """The host sees the station on the LAN `subnet` whose gateway is `gateway_mac`
        (`ssid`: its network name, if known).  Another LAN than before: its guests start
        over there (`policy.network`)."""
        return self._apply(network.lan_seen(self.lan, self.model,
                                            network.Lan(subnet, gateway_mac, ssid),
                                            self.telemetry, now), now)

    def packet_in(self, in_port: int, data: bytes, now: float, table_id: int = 0,
                  cookie: int = 0) -> list:
        """A packet the switch sent us (from table `table_id`).  Never raises."""
        try:
            effects = self.learning.packet_in(in_port, data, now, table_id == SNOOP_TABLE)
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
        return self._apply(lifecycle.idle_flow_removed(
            self.model, cookie, match, reason == ofp.OFPRR_IDLE_TIMEOUT, self.generation,
            self.telemetry, now), now)

    def fleet_view(self, hosts: Iterable[HostSeen], claims: Iterable[Claim],
                   now: float) -> list:
        """The fleet store's rows changed (or time passed: a host may now be gone): every
        host's last sign of life and every binding the store holds (this host's included,
        ignored)."""
        return self._apply(fleet.view_changed(
            self.model, self.config.fleet_host, hosts, claims, now,
            self.config.fleet_gone_after, self.telemetry), now)

    def fleet_record(self) -> dict[str, Any]:
        """What this host writes to the fleet store: its station MAC, its bindings (and
        those whose port left, until they end: ``departed``) and the addresses it refused
        because another host holds them (`fleet_changed` cleared)."""
        self.fleet_changed = False
        names = {g.port_no: g.name for g in self.guests.values()}
        departed = [d for ip, d in self.model.departed.items() if ip not in self.bindings]
        return {
            "station_mac": self.station_mac or "",
            "bindings": [{"ip": b.ip, "mac": b.mac, "guest": names.get(b.port_no, ""),
                          "source": b.source, "claimed_at": b.learned_at,
                          "lease_end": b.expires} for b in self.bindings.values()] + [
                {"ip": d.ip, "mac": d.mac, "guest": d.guest, "source": "departed",
                 "claimed_at": d.claimed_at, "lease_end": None} for d in departed],
            "conflicts": {c.ip: f"{c.mac} (held by {c.holder_mac} on {c.holder})"
                          for c in self.model.conflicts.values()},
        }

    def tick(self, now: float) -> list:
        """Periodic work: DHCP lease expiry, relay table expiry, the next address of the
        re-announcement round (`policing`)."""
        msgs = self._apply(lifecycle.leases_ended(self.model, now, self.telemetry), now)
        if self.model.expire_parked(now):
            self.dirty = True
        if self.model.drop_departed([ip for ip, d in self.model.departed.items()
                                     if d.until <= now]):
            self.fleet_changed = True
        ended = self.groups.expired(now)
        if ended:
            msgs += self._apply(ended, now)
        self.dhcp.tick(now)
        self.dhcp6.tick(now)
        self.binding_log.tick(now)
        if self._announce_due and self._announce_due[0] <= now:
            while self._announce_due and self._announce_due[0] <= now:
                self._announce_due.pop(0)
            msgs += self._announce()
        if self._bounce_up:
            msgs += self._carrier_up(now)
        msgs += self._apply(self.policing.tick(now), now)
        return msgs + self._watch_groups(now)

    def _watch_groups(self, now: float) -> list:
        """The AP-mode observation (`policy.apmode`): its probe while the uplink is up."""
        ap = self.apmode
        if not self._can_announce():
            ap.stop()
            return []
        if ap.next_due() is None:
            ap.restart(now)
            return []
        return [group_stats_request()] if ap.probe_due(now) else []

    def group_stats(self, entries: Iterable[tuple[int, int, dict]], now: float) -> list:
        """The switch's counters of the group flows, (table, packets, match) each (the reply
        to `group_stats_request`): the uplink's IPv4 and ARP ones tell whether the AP delivers
        group traffic (`policy.apmode`); the re-announcement round follows the mode."""
        counts = [packets for table, packets, match in entries
                  if table == FROM_UPLINK_TABLE and match.get("eth_type") != ETH_IPV6]
        ap = self.apmode
        if ap.observed(counts, now):
            self.policing.interval = ap.interval(self.config.reannounce_interval)
            self.policing.host_too = ap.mode == NO_GROUPS
            LOG.warning("the AP: %s (%s); re-announcement every %.0f s", ap.mode,
                        ap.status(self.model)["why"], self.policing.interval)
        return []

    def next_due(self) -> float | None:
        """When `tick` next has something to do (a lease ending, also one of a saved binding
        still waiting for its port, a relay entry expiring, a held-back log summary, a repeated
        announcement, the re-announcement round); None: nothing is pending, so the
        shell need not tick at all until the next event."""
        due = [b.expires for b in self.bindings.values() if b.expires is not None]
        due += [t for t in (self.dhcp.next_due(), self.dhcp6.next_due(), self.binding_log.due(),
                            self.model.parked.next_due(), self.groups.next_due(),
                            self.policing.next_due(), self.apmode.next_due())
                if t is not None]
        due += [min(d.until for d in self.model.departed.values())] if self.model.departed else []
        due += self._announce_due[:1]
        due += sorted(self._bounce_up.values())[:1]
        return min(due) if due else None

    # ------------------------------------------------------------ persistence
    def export_state(self) -> dict[str, Any]:
        """What is saved: the live guests and bindings, and those restored or parked that
        still wait for their port (a save never forgets what was known)."""
        parked = self.model.parked
        return persistent_form(self.guests, self.bindings, self.generation, parked.guests,
                               parked.bindings, self._group_records())

    def unconfirmed(self) -> list[dict]:
        """Saved or parked guests and bindings the switch has not confirmed yet (their port
        is not on the bridge, or the switch is not connected)."""
        return self.model.parked.unconfirmed({g.name for g in self.guests.values()})

    def restore_state(self, data: Any) -> None:
        """Load saved bindings; they apply as soon as their ports exist.  May raise
        StateFormatError (the caller moves the file aside and starts empty)."""
        generation, guests, bindings = parse_persistent(data)
        self.generation = generation % cookies.MAX_GENERATION
        self.model.load_saved(guests, bindings, parse_groups(data))

    def take_dirty(self) -> bool:
        dirty, self.dirty = self.dirty, False
        return dirty

    # ----------------------------------------------------------------- status
    def status(self, now: float) -> dict[str, Any]:
        """What `wlbridge status` shows (JSON-able)."""
        view = status_view(
            self.model, self.ports, self.unconfirmed(),
            {"dpid": self.dpid, "connected": self.connected, "generation": self.generation},
            {"uplink": self.config.uplink, "dhcp_mode": self.config.dhcp_mode,
             "idle_timeout": self.config.idle_timeout},
            self.counters, now) | {"policing": self.policing.status(now),
                                   "ap": self.apmode.status(self.model)}
        view["lan"] = self.lan.view(now)
        return view

    # ---------------------------------------------------------------- effects
    def _apply(self, effects: list[Effect], now: float) -> list:
        """Carry out what a policy decided, in one order: deliveries first (a DHCP reply
        before its binding's flows), then the model changes in the order given with the
        flow sections they touched synced once, re-injections last (through the new
        flows).  Each effect type has one handler (`APPLY`)."""
        batch = _Batch()
        apply = self.APPLY
        for effect in effects:
            handler = apply.get(type(effect))
            if handler is None:
                raise TypeError(f"no handler for the effect {effect!r}")
            handler(self, effect, batch, now)
        out, touched = batch.out, batch.touched
        meters = [p for p in batch.meters if p in self.model.guests]
        for port_no in meters:  # a guest port's bindings, as they are now
            touched.update(dict.fromkeys(
                BindingSection(ip) for ip in self.model.guests[port_no].ips))
        if meters:
            out += self._meter_msgs(meters)
        if batch.sync_all:
            out += self._sync_all()
        elif touched:
            out += self._sync(touched)
        for item in batch.reinject:
            if type(item) is Announce:
                if item.ips is None:
                    out += self._announce(now)
                else:   # a guest that moved here: its addresses only
                    msgs = self._announce_ips([ip for ip in item.ips if ip in self.bindings])
                    self.counters.bump("station.announced", len(msgs))
                    out += msgs
            elif type(item) is Reannounce:
                out += self._announce_ips(item.ips)
            elif type(item) is Bounce:
                out += self._carrier_down(item.ports, now)
            else:
                out.append(item)
        return out

    # (one handler per effect type: what it changes, what it touched into the batch)
    def _on_deliver(self, effect: Deliver, batch: _Batch, now: float) -> None:
        batch.out.append(ofmsg.packet_out(effect.in_port, effect.out_port, effect.data))

    def _on_reinject(self, effect: Reinject, batch: _Batch, now: float) -> None:
        batch.reinject.append(ofmsg.packet_out(effect.in_port, PORT_TABLE, effect.data))

    def _on_announce(self, effect: Announce | Reannounce, batch: _Batch, now: float) -> None:
        batch.reinject.append(effect)  # after the flows, with the model as it is then

    def _on_bounce(self, effect: Bounce, batch: _Batch, now: float) -> None:
        batch.reinject.append(effect)  # last: after the flows without the old bindings

    def _on_leave_lan(self, effect: LeaveLan, batch: _Batch, now: float) -> None:
        dropped = self.model.leave_lan(effect.ips)
        self._announce_due = []  # no repeat of an announcement made on the old LAN
        self.dirty = True
        self.counters.bump("bindings.removed.lan-changed", dropped)  # saved ones waiting

    def _on_set_remote(self, effect: SetRemote, batch: _Batch, now: float) -> None:
        self.model.set_remote({h.name: h for h in effect.hosts},
                              {c.ip: c for c in effect.claims})

    def _on_forget_departed(self, effect: ForgetDeparted, batch: _Batch, now: float) -> None:
        if self.model.drop_departed(list(effect.ips)):
            self.fleet_changed = True

    def _on_note_conflict(self, effect: NoteConflict, batch: _Batch, now: float) -> None:
        if self.model.note_conflict(effect.conflict):
            self.fleet_changed = True

    def _on_bind(self, effect: Bind, batch: _Batch, now: float) -> None:
        guest = self.model.guests.get(effect.port_no)
        if guest is not None:
            if effect.mac is not None and effect.mac not in guest.macs:
                return  # (the MAC left with its port meanwhile)
            self._bind(guest, effect.ip, effect.source, now, effect.expires, effect.lease,
                       effect.mac)
            batch.touched[BindingSection(effect.ip)] = None

    def _on_unbind(self, effect: Unbind, batch: _Batch, now: float) -> None:
        if self._unbind(effect.ip, effect.why):
            batch.touched[BindingSection(effect.ip)] = None

    def _on_refresh(self, effect: Refresh, batch: _Batch, now: float) -> None:
        batch.touched[BindingSection(effect.ip)] = None

    def _on_learn_mac(self, effect: LearnMac, batch: _Batch, now: float) -> None:
        known = self.model.guests.get(effect.port_no)
        if known is None or effect.mac in known.macs:
            return
        guest = self.model.learn_mac(effect.port_no, effect.mac, effect.source)
        if guest is not None:
            self.dirty = True
            self.counters.bump("guests.mac_learned" if effect.source == "learned"
                               else f"guests.mac_announced.{effect.source}")
            LOG.info("port %s: guest MAC %s%s (%d behind the port)", guest.name, effect.mac,
                     "" if effect.source == "learned" else f" (announced by {effect.source})",
                     len(guest.macs))
            batch.touched[PortSection(effect.port_no)] = None

    def _on_join(self, effect: JoinGroup, batch: _Batch, now: float) -> None:
        if self._join(effect.port_no, effect.group, effect.expires):
            batch.touched[GroupSection(effect.group)] = None

    def _on_leave(self, effect: LeaveGroup, batch: _Batch, now: float) -> None:
        if self._leave(effect.port_no, effect.group, effect.why):
            batch.touched[GroupSection(effect.group)] = None

    def _on_host_addresses(self, effect: HostAddresses, batch: _Batch, now: float) -> None:
        changed = self.model.set_host_addresses(effect.ips, effect.broadcasts)
        batch.touched.update(dict.fromkeys(GroupSection(g) for g in sorted(changed)))

    def _on_set_uplink(self, effect: SetUplink, batch: _Batch, now: float) -> None:
        self._set_uplink(effect)
        batch.sync_all = True  # every section depends on the uplink and station MAC

    # (a member group's flows output to the guest ports the switch has: all follow them)
    def _on_add_guest(self, effect: AddGuest, batch: _Batch, now: float) -> None:
        self.model.add_guest(effect.port_no, effect.name, effect.mac)
        self._view = None
        batch.touched.update(dict.fromkeys(
            [STATIC, PortSection(effect.port_no)] + self._group_sections()))

    def _on_drop_guest(self, effect: DropGuest, batch: _Batch, now: float) -> None:
        guest = self.model.guests.get(effect.port_no)
        if guest is not None and guest.ips:   # still claimed in the fleet store for a while
            until = now + self.config.fleet_gone_after
            self.model.note_departed([
                Departed(b.ip, b.mac, guest.name, b.learned_at, until)
                for b in (self.model.bindings[ip] for ip in sorted(guest.ips))],
                self.config.max_bindings)
            self.fleet_changed = True
        gone = self.model.forget_port(effect.port_no)
        self._port_gone(effect.port_no, gone, "port-gone")
        for section in [s for s in self._sections if s == PortSection(effect.port_no)]:
            self._sections.forget(section)
        for section in [s for s in self._sections
                        if type(s) is BindingSection and s.ip not in self.model.bindings]:
            self._sections.forget(section)
        if gone.guest is not None:
            LOG.info("port %s removed with its bindings", gone.guest.name)
        batch.touched.update(dict.fromkeys([STATIC] + self._group_sections()))

    def _on_park(self, effect: Park, batch: _Batch, now: float) -> None:
        gone = self.model.park(effect.port_no)
        self._port_gone(effect.port_no, gone, "parked")
        self.counters.bump("bindings.parked", len(gone.ips))
        if gone.guest is not None:
            LOG.info("port %s is gone: keeping its guest MAC and %d addresses in case it "
                     "comes back", gone.guest.name, len(gone.ips))
        batch.touched.update(dict.fromkeys(
            [STATIC] + [BindingSection(ip) for ip in gone.ips] + self._group_sections()))

    def _on_adopt(self, effect: Adopt, batch: _Batch, now: float) -> None:
        adopted = self.model.adopt(now, self.config.max_macs_per_port)
        touched = batch.touched
        for port_no in adopted.macs:
            touched[PortSection(port_no)] = None
        for b in adopted.bindings:
            self._bound(self.model.guests[b.port_no], b.ip, None, now, "bindings.restored",
                        "restored")
            touched[BindingSection(b.ip)] = None
        for group in adopted.groups:
            self.counters.bump("groups.joined")
            self.counters.bump("groups.restored")
            touched[GroupSection(group)] = None
        if adopted.macs or adopted.bindings or adopted.groups:
            self.dirty = True

    def _on_sync_port(self, effect: SyncPort, batch: _Batch, now: float) -> None:
        batch.touched.update(dict.fromkeys(
            [STATIC, PortSection(effect.port_no)] + self._group_sections()))
        if effect.port_no in self.model.guests:
            batch.meters.append(effect.port_no)

    def _port_gone(self, port_no: int, gone: Gone, why: str) -> None:
        """A guest port forgotten or parked by the model: what it took, counted."""
        self._view = None
        self.dhcp.forget_port(port_no)
        self.dhcp6.forget_port(port_no)
        if gone.guest is not None:
            self.dirty = True
        if why != "parked":
            self.counters.bump(f"bindings.removed.{why}", len(gone.ips))
        for _ in gone.groups:
            self.counters.bump(f"groups.left.{why}")

    def _join(self, port_no: int, group: str, expires: float) -> bool:
        """Membership of `group` for a guest port until `expires`; True if it is new (the
        group's flows change)."""
        if port_no not in self.model.guests:
            return False
        new = self.model.join(port_no, group, expires)
        self.dirty = True
        if new:
            self.counters.bump("groups.joined")
        return new

    def _leave(self, port_no: int, group: str, why: str) -> bool:
        if not self.model.leave(port_no, group):
            return False
        self.dirty = True
        self.counters.bump(f"groups.left.{why}")
        return True

    def _group_sections(self) -> list[Section]:
        """Every group section wanted: well-known groups, the host's subnet broadcasts and
        the groups guests joined."""
        groups = set(WELL_KNOWN) | self.model.host_broadcasts | set(self.model.groups)
        groups.update(s.group for s in self._sections if type(s) is GroupSection)  # (ending)
        return [GroupSection(g) for g in sorted(groups)]

    def _group_records(self) -> list[dict]:
        """Memberships as saved: by port name; those still waiting for their port too."""
        names = {g.port_no: g.name for g in self.guests.values()}
        records = [{"group": group, "port": names[port], "expires": end}
                   for group, members in sorted(self.model.groups.items())
                   for port, end in sorted(members.items()) if port in names]
        live = {(r["group"], r["port"]) for r in records}
        records += [r for r in self.model.parked.groups if (r["group"], r["port"]) not in live]
        return records[:self.config.max_groups]

    # --------------------------------------------------------------- bindings
    def _bind(self, guest: GuestPort, ip: str, source: str, now: float,
              expires: float | None, lease: int | None, mac: str | None = None) -> None:
        old = self.model.bind(guest.port_no, ip, source, now, expires, lease, mac)
        self.model.drop_departed([ip])
        self._bound(guest, ip, old, now, f"bindings.learned.{source}", source)

    def _bound(self, guest: GuestPort, ip: str, old: Binding | None, now: float,
               counter: str, how: str) -> None:
        """A binding made by the model (learned, or adopted from saved records): counted
        and logged alike."""
        if old is not None and old.port_no != guest.port_no:
            self.counters.bump("bindings.removed.moved")
        self.dirty = self.fleet_changed = True
        self.counters.bump(counter)
        mac = self.model.bindings[ip].mac
        if old is None or (old.port_no, old.mac) != (guest.port_no, mac):
            self.binding_log.info(now, "port %s: %s is at %s (%s)", guest.name, ip, mac, how)

    def _unbind(self, ip: str, why: str) -> bool:
        if self.model.unbind(ip) is None:
            return False
        self.dirty = self.fleet_changed = True
        self.counters.bump(f"bindings.removed.{why}")
        return True

    def guest_by_mac(self, mac: str) -> GuestPort | None:
        return self.model.guest_by_mac(mac)

    # ----------------------------------------------------------- flow syncing
    def view(self) -> wanted.View | None:
        """What flow computation needs; cached until ports, uplink or meters change."""
        model = self.model
        if model.uplink is None or model.station_mac is None:
            return None
        if self._view is None:
            self._view = wanted.View(model.uplink, model.station_mac, tuple(sorted(model.guests)),
                                    self.config.idle_timeout, self.meters.in_use,
                                    self.meters.limit)
        return self._view

    def _args(self, section: Section) -> tuple | None:
        """What a section's flows are computed from (None: it has none)."""
        return section.args(self.model, self.view())

    def _sync_all(self) -> list:
        """Every section; after a failed one (`sync_failed`) is built at last, the stale
        sweep that the connection held back."""
        retry, self.sync_failed = self.sync_failed, False
        sections: list[Section] = [STATIC] + [PortSection(p) for p in sorted(self.guests)]
        sections += [BindingSection(ip) for ip in sorted(self.bindings)]
        sections += self._group_sections()
        listed = set(sections)
        sections += [s for s in self._sections if s not in listed]
        msgs = self._sync(sections)
        if retry and not self.sync_failed and self.connected:
            msgs.append(flow_stats_request())
        return msgs

    def _sync(self, sections: Iterable[Section]) -> list:
        """Recompute sections, return adds (new or changed) then strict deletes.  A section
        whose messages cannot be built is counted (``errors.internal``), logged and left
        unrecorded, so that the next sync tries it again; the others go on."""
        adds, deletes = [], []
        build = self._build if self.connected else None
        for section in sections:
            try:
                new, gone = self._sections.update(section, self._args(section), build)
            except Exception:
                self.counters.bump("errors.internal")
                self.sync_failed = True
                LOG.exception("internal error building the flows of %s", section)
                continue
            if build is not None:
                adds += new
                deletes += gone
        return adds + deletes

    def _build(self, new: list[FlowSpec], gone: list[FlowSpec]) -> tuple[list, list]:
        generation = self.generation
        return ([build_add(s, generation) for s in new], [build_delete_strict(s) for s in gone])

    def flow_specs(self) -> list[FlowSpec]:
        """Every flow the core currently wants (for tests and `wlbridge flows`)."""
        return self._sections.specs()

    def _meter_msgs(self, ports: Iterable[int]) -> list:
        """Meters of these guest ports, before flows use them (only while connected)."""
        if not self.connected:
            return []
        return self.meters.ensure(p for p in ports if p in self.guests)

    # ------------------------------------------------------- station changes
    def _announce(self, now: float | None = None) -> list:
        """Gratuitous ARP for every guest and host address, from the station MAC, so LAN
        hosts update their caches at once (after a station MAC change or the uplink coming
        up).  Repeated by `tick` after ANNOUNCE_AGAIN seconds (RFC 5227 announces twice):
        the first may be lost while the station (re)associates."""
        if not self.lan.may_announce():  # maybe another LAN: not before it is known
            self.lan.hold()
            self._announce_due = []
            return []
        if now is not None:
            self._announce_due = [now + delay for delay in ANNOUNCE_AGAIN]
        if not self._can_announce():
            return []  # the uplink coming up announces
        msgs = self._announce_frames(sorted(self.bindings) +
                                     sorted(self.host_ips - set(self.bindings)))
        self.counters.bump("station.announced", len(msgs))
        if now is not None:
            self.policing.announced_all(now)
            self.apmode.restart(now)  # (re)associated, maybe to another AP
        return msgs

    def _announce_ips(self, ips: Iterable[str]) -> list:
        """The re-announcement of these guest addresses (those still bound) and host
        addresses, if the uplink is up."""
        if not self._can_announce():
            return []
        if not self.lan.may_announce():  # maybe another LAN: all of them once it is known
            self.lan.hold()
            return []
        return self._announce_frames([ip for ip in ips
                                      if ip in self.bindings or ip in self.host_ips])

    def _can_announce(self) -> bool:
        """Connected, with the uplink up and the station MAC known."""
        uplink = self.ports.get(self.uplink) if self.uplink is not None else None
        return (self.connected and uplink is not None and uplink.up
                and self.station_mac is not None)

    def _announce_frames(self, ips: list[str]) -> list:
        """IPv4 by gratuitous ARP; IPv6 by an unsolicited NA (override) per guest address
        (the host's kernel announces its own IPv6 addresses)."""
        station = self.station_mac
        assert station is not None and self.uplink is not None
        msgs = [ofmsg.packet_out(ofp.OFPP_CONTROLLER, self.uplink,
                                 gratuitous_arp(station, ip))
                for ip in ips if ":" not in ip]
        msgs += [ofmsg.packet_out(ofp.OFPP_CONTROLLER, self.uplink,
                                  unsolicited_na(station, ip))
                 for ip in ips if ":" in ip and ip in self.bindings]
        return msgs

    def _carrier_down(self, ports: Iterable[int], now: float) -> list:
        """Guest ports' carrier down (a port-mod each), up again `network.BOUNCE_DOWN` s
        later (`tick`): their guests' DHCP clients start over."""
        msgs = []
        for port_no in ports:
            port = self.ports.get(port_no)
            if port is None or port_no not in self.guests:
                continue
            self._bounce_up[port_no] = now + network.BOUNCE_DOWN
            if self.connected:
                msgs.append(ofmsg.port_mod(port_no, port.hw_addr, down=True))
        self.counters.bump("lan.ports_bounced", len(msgs))
        return msgs

    def _carrier_up(self, now: float | None) -> list:
        """The bounced ports whose time is up (`now` None: all of them) up again."""
        due = [p for p, at in self._bounce_up.items() if now is None or at <= now]
        msgs = []
        for port_no in sorted(due):
            del self._bounce_up[port_no]
            port = self.ports.get(port_no)
            if port is not None and self.connected:
                msgs.append(ofmsg.port_mod(port_no, port.hw_addr, down=False))
        return msgs

    # ---------------------------------------------------------------- helpers
    def _set_uplink(self, uplink: SetUplink) -> None:
        self.fleet_changed |= uplink.station_mac != self.station_mac
        self.model.set_uplink(uplink.port_no, uplink.station_mac)
        self._view = None
        if self.uplink is None:
            self._log_once("no-uplink", "uplink %s is not on the bridge", self.config.uplink)
        else:
            self.telemetry.forget("no-uplink")

    def _log_once(self, key: str, msg: str, *args: Any) -> None:
        self.telemetry.log_once(key, msg, *args)

    # every effect type's one application (test_core_effects: no effect type lacks one)
    APPLY: ClassVar[dict[type, Callable[[Core, Any, _Batch, float], None]]] = {
        Deliver: _on_deliver,
        Reinject: _on_reinject,
        Announce: _on_announce,
        Reannounce: _on_announce,
        LearnMac: _on_learn_mac,
        Bind: _on_bind,
        Unbind: _on_unbind,
        Refresh: _on_refresh,
        JoinGroup: _on_join,
        LeaveGroup: _on_leave,
        HostAddresses: _on_host_addresses,
        SetUplink: _on_set_uplink,
        AddGuest: _on_add_guest,
        DropGuest: _on_drop_guest,
        Park: _on_park,
        Adopt: _on_adopt,
        SyncPort: _on_sync_port,
        LeaveLan: _on_leave_lan,
        Bounce: _on_bounce,
        SetRemote: _on_set_remote,
        NoteConflict: _on_note_conflict,
        ForgetDeparted: _on_forget_departed,
    }


ANNOUNCE_AGAIN = (1.0, 3.0)  # seconds after a station change: gratuitous ARPs again


class _Batch:
    """What `Core._apply`'s handlers gather from one list of effects."""

    __slots__ = ("meters", "out", "reinject", "sync_all", "touched")

    def __init__(self) -> None:
        self.out: list = []  # deliveries
        self.reinject: list = []  # re-injections and `Announce`, last
        self.touched: dict[Section, None] = {}  # sections to sync once
        self.meters: list[int] = []  # guest ports whose meter goes before the flows
        self.sync_all = False


__all__ = ["LOGGED_MAX", "Core", "CoreConfig", "Port", "StateFormatError"]
