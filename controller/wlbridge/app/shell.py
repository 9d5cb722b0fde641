"""The controller's shell around `wlbridge.core.Core`, free of the framework.

`wlbridge.app.framework` (loaded as `wlbridge_app`) only adapts os-ken/Ryu events to the
methods below (plain data: a datapath, ports, bytes) and starts the two loops in the
framework's threads.  Everything it used to do
itself is here, with its collaborators passed in, so that tests drive it with fakes through
its public methods:

* an event through the core, its messages to the switch (`run`, `send`): one write per event,
  a packet-out at once;
* the handshake (features -> set-config, meter features and configuration, port
  descriptions -> `Core.switch_connected`), built by `wlbridge.openflow.ofmsg`;
* flow-statistics replies routed by xid (`wlbridge.app.stats_requests`): the core's sweep or
  a `switch_flows` waiter;
* state saves, coalesced and paced, by the tick loop (`run_ticker`/`tick`, `persist`);
* the bridge's internal port following the station MAC (`wlbridge.app.bridge_mac`);
* the port-isolation worker queue (`isolate`, `run_isolation`);
* the host watcher started after the first resync, or `watch_after` s after `start`;
* the fleet store (`wlbridge.host.fleet_store`, if configured): its view into the core
  (`fleet_view`), this host's record out (`publish`) whenever it changed.

A datapath is whatever has ``id``, ``set_xid(msg)`` and ``send(bytes)`` (os-ken's Datapath).
The core's ``now`` comes from `clock`; the save pacing from `monotonic`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from wlbridge.app.bridge_mac import BridgeMac
from wlbridge.app.stats_requests import FlowStatsRequests
from wlbridge.compat import ofp, parser
from wlbridge.core import GROUP_STATS_MATCH, flow_stats_request
from wlbridge.flows.flowtext import flow_entries
from wlbridge.model.state import Port
from wlbridge.openflow import ofmsg

LOG = logging.getLogger("wlbridge.app")

IDLE_WAKE = 60.0  # the tick loop wakes at least this often, even with nothing due
SAVE_INTERVAL = 0.5  # state saves are coalesced: at most one per interval (the tick flushes)
SAVE_SHARE = 0.1  # ... and the interval grows so that saving takes at most this share of time
SEND_CHUNK = 256 * 1024  # bytes per write: each has the socket's timeout to get through
WATCH_AFTER = 5.0  # netlink events are followed from the first resync, or after this long
SWEEP = "stale-generation sweep"  # the owner of the core's own flow-statistics requests
GROUPS = "group counters"  # ... and of its group-flow counters (`Core.group_stats`)
ADD, MODIFY, DELETE = "add", "modify", "delete"  # port-status reasons
PACKET_OUT = parser.OFPPacketOut
FLOW_STATS_REQUEST = parser.OFPFlowStatsRequest


def port_of(desc: Any) -> Port:
    """A `Port` from the framework's port description (``OFPPort``)."""
    name = desc.name.decode() if isinstance(desc.name, bytes) else str(desc.name)
    up = not (desc.state & ofp.OFPPS_LINK_DOWN) and not (desc.config & ofp.OFPPC_PORT_DOWN)
    return Port(desc.port_no, name, desc.hw_addr.lower(), up)


class Shell:
    """One bridge's controller, minus the framework.

    `store`: the state file (`persist.StateStore`); `spawn(fn, *args)`: start a thread (the
    framework's); `sleep(s)`; `isolation`: ``apply(changes)``, ``retry_in()``, ``close()``
    (`host.port_isolation.GuestPortIsolation`); `queue`, `queue_empty`: the framework's
    queue for it and its Empty exception; `set_mac`: ``(mac, dpid)``, raises on failure
    (`bridge_mac.set_by_ovsdb`); `set_mac_netlink`: ``(mac)``; `start_watching()`: follow
    netlink events from now on; `describe(now)`: more fields for `status`."""

    def __init__(self, core: Any, store: Any, *, bridge: str,
                 spawn: Callable[..., Any], sleep: Callable[[float], None],
                 isolation: Any, queue: Any, queue_empty: type[BaseException],
                 set_mac: Callable[[str, int], None], set_mac_netlink: Callable[[str], None],
                 start_watching: Callable[[], None],
                 describe: Callable[[float], dict] = lambda now: {},
                 publish: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 watch_after: float = WATCH_AFTER) -> None:
        self.core = core
        self.store = store
        self.bridge = bridge
        self.spawn, self.sleep = spawn, sleep
        self.isolation, self.queue, self.queue_empty = isolation, queue, queue_empty
        self.set_mac, self.set_mac_netlink = set_mac, set_mac_netlink
        self.start_watching, self.describe = start_watching, describe
        self.publish = publish   # this host's record to the fleet store (None: no store)
        self.clock, self.monotonic = clock, monotonic
        self.watch_after = watch_after
        self.lock = threading.RLock()
        self.datapath: Any = None   # the connected switch, after the handshake
        self.flow_requests = FlowStatsRequests()  # xid -> SWEEP or a waiter's (done, result)
        self.bridge_mac = BridgeMac()
        self.stopped = threading.Event()
        self.wakeup = threading.Event()   # wakes the tick loop
        self.save_wanted = False
        self.saved_at = 0.0
        self.save_interval = SAVE_INTERVAL
        self.watching = False
        self.closed = False
        self._meters: dict = {}   # datapath -> [max_meter or None, meter ids or None]
        self._ports: list[Port] = []   # port descriptions so far (multipart)
        self.vms: dict[str, dict] = {}   # port name -> the VM libvirt plugged there

    # ------------------------------------------------------------- sending
    def send(self, msgs: list, dp: Any = None) -> None:
        """Serialise messages (as ``send_msg`` would) and write them together to `dp` (the
        connected switch by default): one write per event, not one per message — except
        that a packet-out goes at once (a host waits for it; the core puts it first when
        flows can follow)."""
        dp = dp if dp is not None else self.datapath
        if dp is None or not msgs:
            return
        chunk: list[bytes] = []
        size = 0
        for msg in msgs:
            msg.datapath = dp
            if msg.xid is None:
                dp.set_xid(msg)
            msg.serialize()
            chunk.append(msg.buf)
            size += len(msg.buf)
            if size >= SEND_CHUNK or isinstance(msg, PACKET_OUT):
                dp.send(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            dp.send(b"".join(chunk))

    def run(self, fn: Callable[..., list], *args: Any) -> None:
        """Feed one event to the core (``fn(*args, now)``) and send what it returns.  Never
        raises: an exception escaping a handler would end the switch connection's receive
        loop.  A changed state is saved by the tick loop (woken here), off the receive path."""
        try:
            with self.lock:
                msgs = fn(*args, self.clock())
                self.send(msgs)
                for msg in msgs:   # the core's flow-statistics requests: for its sweep
                    if isinstance(msg, FLOW_STATS_REQUEST):
                        group = (msg.cookie, msg.cookie_mask) == GROUP_STATS_MATCH
                        self.flow_requests.sent(msg.xid, GROUPS if group else SWEEP)
                if self.core.dirty and not self.save_wanted:
                    self.save_wanted = True
                    self.wakeup.set()
                if self.publish is not None and self.core.fleet_changed:
                    self.publish(self.core.fleet_record())
                self._follow_station_mac()
        except Exception:
            self.core.counters.bump("errors.handler")
            LOG.exception("error handling %s", getattr(fn, "__name__", fn))

    def wake(self) -> None:
        """Something may now be due earlier (see `run_ticker`)."""
        self.wakeup.set()

    # ---------------------------------------------------------- the switch
    def switch_features(self, dp: Any) -> None:
        """The switch's features reply: configure it, ask for its meters and its ports."""
        self._ports = []
        self._meters[dp] = [None, None]
        self.send(ofmsg.handshake(), dp)

    def meter_features(self, dp: Any, max_meter: int | None) -> None:
        seen = self._meters.get(dp)
        if seen is not None and max_meter is not None:
            seen[0] = max_meter

    def meter_config(self, dp: Any, meter_ids: Iterable[int]) -> None:
        seen = self._meters.get(dp)
        if seen is not None:
            seen[1] = (seen[1] or []) + list(meter_ids)

    def port_desc(self, dp: Any, ports: Iterable[Port], more: bool) -> None:
        """A part of the port descriptions; the last one ends the handshake: the switch is
        connected if it is our bridge (its LOCAL port is named after it)."""
        self._ports += list(ports)
        if more:
            return
        ports, self._ports = self._ports, []
        local = [p for p in ports if p.port_no == ofp.OFPP_LOCAL]
        if [p.name for p in local] != [self.bridge]:
            LOG.error("switch %016x is bridge %s, not %s: ignoring it", dp.id,
                      local[0].name if local else "?", self.bridge)
            return
        with self.lock:
            self.flow_requests.clear()   # an earlier connection's replies never come
            self.datapath = dp
            self.bridge_mac.reported(local[0].hw_addr)
        max_meter, meter_ids = self._meters.pop(dp, None) or (None, None)
        self._meters = {}
        # no meter features reply (an error): no meters; no config reply: assume none exist
        self.run(self.core.meter_info, max_meter or 0, meter_ids or [])
        self.run(self.core.switch_connected, dp.id, ports)
        self._watch()
        self.isolate([(p.name, True) for p in ports if p.port_no != ofp.OFPP_LOCAL])

    def switch_gone(self, dp: Any, detect_after: float = 0.0) -> None:
        """A switch connection ended (closed, or no echo reply for `detect_after` s)."""
        if dp is not self.datapath:
            return
        LOG.warning("switch %016x disconnected (connection closed, or no echo reply for "
                    "%.1fs); flows stay in place (fail_mode=secure)", dp.id or 0, detect_after)
        with self.lock:
            self.datapath = None
            self.flow_requests.clear()
        self.run(self.core.switch_disconnected)

    def port_status(self, dp: Any, reason: str, port: Port) -> None:
        """A port was added, modified or deleted (`ADD`, `MODIFY`, `DELETE`)."""
        if dp is not self.datapath:
            return
        if port.port_no == ofp.OFPP_LOCAL:
            with self.lock:
                self.bridge_mac.reported(port.hw_addr)
        if reason == ADD:
            self.run(self.core.port_added, port)
        elif reason == DELETE:
            with self.lock:
                self.vms.pop(port.name, None)
            self.run(self.core.port_deleted, port.port_no)
        else:
            self.run(self.core.port_modified, port)
        if port.port_no != ofp.OFPP_LOCAL:   # modified too: its interface may be new
            self.isolate([(port.name, reason != DELETE)])
        self.wake()   # announcements may now be due

    def packet_in(self, dp: Any, in_port: int, data: bytes, table_id: int = 0,
                  cookie: int = 0) -> None:
        if dp is not self.datapath:
            return
        self.run(lambda now: self.core.packet_in(in_port, data, now, table_id, cookie))

    def flow_removed(self, dp: Any, cookie: int, match: dict, reason: int) -> None:
        if dp is not self.datapath:
            return
        self.run(lambda now: self.core.flow_removed(cookie, match, now, reason))

    def flow_stats(self, dp: Any, xid: int, stats: list, more: bool) -> None:
        """A flow-statistics reply part, matched to its request by xid: the core's request
        feeds its stale-generation sweep only; a `switch_flows` request gets its own reply,
        whole."""
        if dp is not self.datapath:
            return
        with self.lock:
            complete = self.flow_requests.received(xid, stats, more)
        if complete is None:
            return
        owner, found = complete
        if owner == SWEEP:
            self.run(self.core.flow_stats, [s.cookie for s in found])
            return
        if owner == GROUPS:
            self.run(self.core.group_stats,
                     [(s.table_id, s.packet_count, dict(s.match.items())) for s in found])
            return
        done, result = owner
        try:
            result.extend(flow_entries(found))
        except Exception:
            LOG.exception("bad flow statistics")
        done.set()

    def switch_error(self, kind: int, code: int, data: bytes) -> None:
        with self.lock:
            self.core.counters.bump(f"switch_errors.type{kind}")
        LOG.error("switch error type=%s code=%s data=%s", kind, code, bytes(data[:64]).hex())

    def handler_failed(self, what: str) -> None:
        """An adapter's handler raised (logged by the caller): count it."""
        self.core.counters.bump("errors.handler")

    def vm_ports(self, vms: Iterable[Any]) -> None:
        """Ports the host found a VM's record on (`host.libvirt_vms.VmPort`, with ``name``:
        its domain name or UUID): the VM's MAC announced to the core (a guest before its
        first frame), the VM named in `status`."""
        for vm in vms:
            with self.lock:
                self.vms[vm.port] = {"vm": vm.name, "vm_id": vm.vm_id}
            self.run(self.core.guest_announced, vm.port, vm.mac, vm.source)

    # ------------------------------------------------------ status, flows
    def status(self) -> dict:
        now = self.clock()
        with self.lock:
            snap = self.core.status(now)
            for guest in snap["guests"]:
                guest.update(self.vms.get(guest["port"], {}))
        snap["state_file"] = self.store.report()
        snap.update(self.describe(now))
        return snap

    def switch_flows(self, timeout: float = 3.0) -> list[dict]:
        """The bridge's flows as the switch reports them (for `wlbridge flows`)."""
        done, result = threading.Event(), []
        with self.lock:
            dp = self.datapath
            if dp is None:
                raise RuntimeError("switch not connected")
            msg = flow_stats_request(all_flows=True)
            dp.set_xid(msg)
            self.flow_requests.sent(msg.xid, (done, result))   # this reply, only this one
            self.send([msg])
        if not done.wait(timeout):
            with self.lock:
                self.flow_requests.forget(msg.xid)
            raise RuntimeError("switch did not answer the flow statistics request")
        return result

    # ---------------------------------------------------------- the host
    def host_addresses(self, ips: list[str]) -> None:
        """The host's IPv4 and IPv6 addresses on the bridge changed (netlink event)."""
        self.run(self.core.host_addresses, ips)
        self.wake()   # the tick loop recomputes when it is next due

    def lan_seen(self, subnet: str, gateway_mac: str, ssid: str | None) -> None:
        """The host sees the station on this LAN (`host.lan_watch`)."""
        self.run(self.core.lan_seen, subnet, gateway_mac, ssid)
        self.wake()   # a change bounces guest ports: up again on a tick

    def station_associated(self, ssid: str | None) -> None:
        """The station (re)associated with the network `ssid` (`host.lan_watch`)."""
        self.run(self.core.station_associated, ssid)
        self.wake()
    def fleet_view(self, hosts: list, claims: list) -> None:
        """The fleet store's rows (`model.fleet.HostSeen`, `Claim`) changed, or its client's
        heartbeat came: the core decides what they take or give here."""
        self.run(self.core.fleet_view, hosts, claims)

    def start(self) -> None:
        """Start following the host `watch_after` s from now if no switch connected first;
        this host's record to the fleet store, if any."""
        if self.publish is not None:
            with self.lock:
                self.publish(self.core.fleet_record())
        self.spawn(self._watch, self.watch_after)

    def _watch(self, delay: float = 0.0) -> None:
        if delay:
            self.sleep(delay)
        with self.lock:
            if self.watching or self.closed:
                return
            self.watching = True
        self.start_watching()

    def _follow_station_mac(self) -> None:
        """(Under the lock.)  The station MAC changed: set the bridge's, in a thread of its
        own, as OVSDB may be slow."""
        if self.datapath is None:
            return
        mac = self.bridge_mac.due(self.core.station_mac)
        if mac is not None:
            self.spawn(self._set_bridge_mac, mac, self.datapath.id)

    def _set_bridge_mac(self, mac: str, dpid: int) -> None:
        ok = False
        try:
            self.set_mac(mac, dpid)
            ok = True
            LOG.warning("station MAC is now %s: bridge %s set to it (other_config:hwaddr)",
                        mac, self.bridge)
        except Exception as exc:  # noqa: BLE001 - whatever failed, fall back to netlink
            LOG.error("cannot set other_config:hwaddr of %s to %s through OVSDB (%s); "
                      "setting the interface MAC directly", self.bridge, mac, exc)
        finally:
            with self.lock:
                self.bridge_mac.finished(ok)   # the port-status for LOCAL confirms or corrects
            if not ok:
                self.wake()   # the tick loop sets it: pyroute2 from one thread only

    # -------------------------------------------------- saves and the tick
    def persist(self) -> None:
        """Save the state if it changed, atomically, and set the interval before the next
        save (a save of a thousand guests takes tens of ms; learning bursts must not pay it
        each time): at least SAVE_INTERVAL, longer when saves are slow (SAVE_SHARE)."""
        if not self.core.dirty:
            return
        self.core.take_dirty()
        started = self.monotonic()
        try:
            self.store.save(self.core.export_state())
        except OSError as exc:
            LOG.error("cannot save state to %s: %s", self.store.path, exc)
            self.core.dirty = True
        self.saved_at = self.monotonic()
        self.save_interval = max(SAVE_INTERVAL, (self.saved_at - started) / SAVE_SHARE)

    def next_wake(self) -> float:
        """Seconds the tick loop may sleep: until the core's next due time or a wanted save
        is allowed, at most IDLE_WAKE."""
        with self.lock:
            due = self.core.next_due()
            now = self.clock()
            wake = now + IDLE_WAKE if due is None else min(due, now + IDLE_WAKE)
            if self.save_wanted:
                wake = min(wake, now + self.saved_at + self.save_interval - self.monotonic())
        return max(0.0, wake - now)

    def tick(self) -> None:
        """What is due now: the core's tick, a MAC left to netlink, a wanted save."""
        with self.lock:
            due = self.core.next_due()
        if due is not None and self.clock() >= due:
            self.run(self.core.tick)
        with self.lock:
            mac = self.bridge_mac.take_netlink()
        if mac is not None:
            try:
                self.set_mac_netlink(mac)
            except Exception:
                LOG.exception("cannot set the MAC of %s", self.bridge)
        with self.lock:
            if self.save_wanted and self.monotonic() >= self.saved_at + self.save_interval:
                self.save_wanted = False
                self.persist()

    def run_ticker(self) -> None:
        """The tick loop (a thread): sleeps until something is due or an event wakes it."""
        while not self.stopped.is_set():
            self.wakeup.wait(self.next_wake())
            self.wakeup.clear()
            if self.stopped.is_set():
                break
            try:
                self.tick()
            except Exception:
                LOG.exception("tick failed")

    # ---------------------------------------------------- port isolation
    def isolate(self, changes: list[tuple[str, bool]]) -> None:
        """Hand (port name, on the bridge?) to the isolation worker; never blocks."""
        if changes:
            self.queue.put(changes)

    def isolation_step(self) -> None:
        """One batch: what port events queued (waiting until one comes, or until a retry is
        due), then carried out (never raises)."""
        batch: list[tuple[str, bool]] = []
        try:
            batch += self.queue.get(timeout=self.isolation.retry_in())
            while True:
                batch += self.queue.get_nowait()
        except self.queue_empty:
            pass
        if not self.stopped.is_set():
            self.isolation.apply(batch)

    def run_isolation(self) -> None:
        """The isolation worker (a thread): keeps the host stack off guest ports."""
        try:
            while not self.stopped.is_set():
                self.isolation_step()
        finally:
            self.isolation.close()

    # ----------------------------------------------------------- the end
    def close(self) -> None:
        """Stop the loops and save the state, whatever changed."""
        if self.closed:
            return
        self.closed = True
        self.stopped.set()
        self.wakeup.set()
        self.queue.put([])   # wakes the isolation worker
        with self.lock:
            self.core.dirty = True
            self.persist()
