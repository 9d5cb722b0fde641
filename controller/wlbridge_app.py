"""wlbridge as an os-ken / Ryu application: the thin shell around `wlbridge.core.Core`.

Load it with ``wlbridge run`` (os-ken) or ``ryu-manager wlbridge_app`` (Ryu 4.34).
This is the only module that touches a datapath: it turns OpenFlow events into
core events (with ``now`` from the clock), binds the returned messages to the
datapath and sends them.  It also runs the periodic tick, persists state,
serves the status/metrics endpoint and, with the userspace datapath, keeps the
host stack off guest ports (`wlbridge.host.port_isolation`, in a thread of its own).
"""

from __future__ import annotations

import logging
import threading
import time

# pyroute2 and the host modules load here, in the main thread: imported lazily by two green
# threads at once (Ryu's eventlet hub), one saw the other's half-initialised module.  Only
# the parts of pyroute2 the controller uses (wlbridge.host.pyroute2_lazy: 5 MiB less at rest).
import wlbridge.host.hostnet
import wlbridge.host.pyroute2_lazy  # noqa: F401
from wlbridge.app import config as wl_config
from wlbridge.app import listener, liveness, switch_link
from wlbridge.app.instance_lock import InstanceError, InstanceLock
from wlbridge.app.listener import Listener
from wlbridge.app.ofsocket import on_receive, send_directly
from wlbridge.app.persist import StateDirError, StateStore
from wlbridge.app.ryu_signals import restore_signals, stop_on_signals
from wlbridge.app.stats_requests import FlowStatsRequests
from wlbridge.compat import FRAMEWORK, ofp, parser, runtime
from wlbridge.core import Core, CoreConfig
from wlbridge.flows.flowtext import flow_entries
from wlbridge.host.addr_handoff import host_address_status
from wlbridge.host.host_events import HostWatcher
from wlbridge.host.lease_renewal import LeaseRenewal
from wlbridge.host.link_events import UplinkEvents
from wlbridge.host.port_isolation import GuestPortIsolation
from wlbridge.model.state import Port, StateFormatError

_rt = runtime()
app_manager = _rt["app_manager"]
ofp_event = _rt["ofp_event"]
handler = _rt["handler"]
hub = _rt["hub"]
AppBase = app_manager.OSKenApp if FRAMEWORK == "os_ken" else app_manager.RyuApp
set_ev_cls = handler.set_ev_cls
MAIN, CONFIG, DEAD = handler.MAIN_DISPATCHER, handler.CONFIG_DISPATCHER, handler.DEAD_DISPATCHER

LOG = logging.getLogger("wlbridge.app")
WATCH_AFTER = 5.0  # netlink events are followed from the first resync, or after this long
IDLE_WAKE = 60.0  # the tick thread wakes at least this often, even with nothing due
SAVE_INTERVAL = 0.5  # state saves are coalesced: at most one per interval (the tick flushes)
SAVE_SHARE = 0.1  # ... and the interval grows so that saving takes at most this share of time
SEND_CHUNK = 256 * 1024  # bytes per write: each has the socket's timeout to get through
PACKET_OUT = parser.OFPPacketOut
FLOW_STATS_REQUEST = parser.OFPFlowStatsRequest
SWEEP = "stale-generation sweep"  # the owner of the core's own flow-statistics requests


def _port(p) -> Port:
    name = p.name.decode() if isinstance(p.name, bytes) else str(p.name)
    up = not (p.state & ofp.OFPPS_LINK_DOWN) and not (p.config & ofp.OFPPC_PORT_DOWN)
    return Port(p.port_no, name, p.hw_addr.lower(), up)


def discover_uplink(conf, bridge) -> str:
    """The uplink: from configuration, else the interface `wlbridge setup` marked in OVSDB
    (`bridge`: the bridge's OVSDB record)."""
    if conf.uplink:
        return conf.uplink
    name = bridge.uplink
    if not name:
        raise SystemExit(f"bridge {conf.bridge} has no uplink marked by `wlbridge "
                         f"setup`; pass --uplink")
    return name


def _claim(root, conf, store: StateStore) -> tuple[InstanceLock, Listener]:
    """Before anything is read or bound: this bridge's instance lock, then the listening
    address (loopback unless TLS or insecure_listen) and its port, free.  A refusal is one
    line (SystemExit) and changes nothing."""
    try:
        store.check_writable()
        lock = InstanceLock(conf.state_dir, conf.bridge)
        lock.acquire()
        try:
            listening = listener.configure(root, conf)
            listener.probe(listening)
        except BaseException:
            lock.release()
            raise
    except (StateDirError, InstanceError, listener.ListenError) as exc:
        raise SystemExit(str(exc)) from None
    return lock, listening


class WlBridgeApp(AppBase):
    """Programs one OVS bridge so guests share the Wi-Fi station's MAC."""

    OFP_VERSIONS = [ofp.OFP_VERSION]  # noqa: RUF012 - the framework reads this attribute

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        root = wl_config.register()
        try:
            wl_config.check_loaded(root)
        except wl_config.ConfigError as exc:  # one line, as `wlbridge run` says it
            raise SystemExit(f"wlbridge: {exc}") from exc
        conf = root.wlbridge
        self.conf = conf
        # the bridge must exist (a clear exit otherwise, nothing written); its controller
        # targets say whether we connect to it (passive target) or wait for it
        # (see wlbridge.app.switch_link)
        bridge = switch_link.wait_for_bridge(conf.bridge, conf.ovsdb, conf.bridge_timeout)
        self.store = StateStore(conf.state_dir, conf.bridge)
        self.instance_lock, self.listener = _claim(root, conf, self.store)
        if self.listener.tls and FRAMEWORK == "ryu":
            from wlbridge.app import ryu_tls

            ryu_tls.install()  # Ryu's own TLS listener serves one connection only
        self.detect_after = liveness.configure(root, conf.echo_interval, conf.echo_timeout)
        self._targets = [c.target for c in bridge.controllers]
        self.connectors: list[switch_link.Connector] = []
        uplink = discover_uplink(conf, bridge)
        self.core = Core(CoreConfig(
            uplink=uplink, dhcp_mode=conf.dhcp_mode, idle_timeout=conf.idle_timeout,
            max_ips_per_port=conf.max_ips_per_port, max_bindings=conf.max_bindings,
            ipv6_bindings_per_guest=conf.ipv6_bindings_per_guest,
            static_macs=wl_config.static_macs(conf.static_macs), meters=conf.meters,
            meter_pps=conf.meter_pps, group_membership_interval=conf.group_membership_interval,
            max_groups_per_port=conf.max_groups_per_port, max_groups=conf.max_groups))
        self.lock = threading.RLock()
        self.datapath = None
        self._ports: list[Port] = []
        # flow-statistics requests in flight, by xid: the core's (SWEEP) or a
        # `switch_flows` waiter's (done, result)
        self._flow_requests = FlowStatsRequests()
        self._meters_seen: dict = {}  # datapath -> [max_meter or None, meter ids or None]
        self._local_mac: str | None = None  # the bridge's internal port MAC, as reported
        self._hwaddr_busy = False
        self._netlink_mac: str | None = None
        self._saved_at = 0.0
        self.status_server = None
        if conf.status_port:  # bound before the state is loaded: a port in use changes nothing
            from wlbridge.app.status_server import serve

            try:
                self.status_server = serve(conf.status_host, conf.status_port, self.status,
                                           {"/flows": self.switch_flows})
            except OSError as exc:
                raise SystemExit(f"cannot serve status on {conf.status_host}:"
                                 f"{conf.status_port}: {exc.strerror or exc} (another "
                                 f"controller?); choose another status_port") from None
        self._load_state()
        self._stop = threading.Event()
        self._save_due = threading.Event()  # wakes the tick thread, which saves the state
        self._save_wanted = False
        self._save_interval = SAVE_INTERVAL
        self._inline: list[tuple] = []  # (event class, handler) registered on the brick
        self._closed = False
        # guest ports' host-side interfaces (userspace datapath), from a thread of its own
        self.isolation = GuestPortIsolation(conf.bridge, uplink, conf.ovsdb)
        self._isolation_q = hub.Queue()
        self.isolator = hub.spawn(self._isolation_loop)
        self.ticker = hub.spawn(self._tick_loop)
        # host addresses and uplink changes from netlink events (wlbridge.host.host_events);
        # a re-created uplink is re-plugged (wlbridge.host.link_events)
        self.uplink_events = UplinkEvents(conf.bridge, uplink, conf.ovsdb, hub.spawn)
        # ... and a reassociation renews the host's DHCP client (wlbridge.host.lease_renewal)
        self.lease_renewal = LeaseRenewal(conf.bridge, conf.ovsdb, hub.spawn)
        self.uplink_events.on_reassociated.append(self.lease_renewal.reassociated)
        self.uplink_events.on_recreated.append(self.lease_renewal.recreated)
        self.watcher = HostWatcher(conf.bridge, uplink, on_addresses=self.host_addresses,
                                   on_uplink=self.uplink_events.uplink_changed)
        self._watching = False   # started after the first resync (see _start_watcher)
        self._signal_handlers = stop_on_signals(hub, self._stop)
        LOG.info("wlbridge on %s, uplink %s, DHCP mode %s, state %s, status %s:%s, OpenFlow "
                 "%s, switch lost after %.1fs without echo reply", conf.bridge, uplink,
                 conf.dhcp_mode, self.store.path, conf.status_host, conf.status_port,
                 self.listener, self.detect_after)

    # ------------------------------------------------------------- plumbing
    def _send(self, msgs: list) -> None:
        """Serialise an event's messages (as ``send_msg`` would) and write them together:
        one write per event, not one per message — except that a packet-out goes at once
        (a host waits for it; the core puts it first when flows can follow).  While more
        packet-ins wait, the socket holds writes a little longer (`ofsocket.SwitchSocket`)."""
        dp = self.datapath
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

    def _run(self, fn, *args) -> None:
        """Feed one event to the core and send what it returns.  Never raises: an exception
        escaping a handler would end the switch connection's receive loop.  A changed state
        is saved by the tick thread (woken here), off the receive path."""
        try:
            with self.lock:
                msgs = fn(*args, time.time())
                self._send(msgs)
                for msg in msgs:   # the core's flow-statistics requests: for its sweep
                    if isinstance(msg, FLOW_STATS_REQUEST):
                        self._flow_requests.sent(msg.xid, SWEEP)
                if self.core.dirty and not self._save_wanted:
                    self._save_wanted = True
                    self._save_due.set()
                self._follow_station_mac()
        except Exception:
            self.core.counters.bump("errors.handler")
            LOG.exception("error handling %s", getattr(fn, "__name__", fn))

    def start(self):
        """Start the app, then put its OpenFlow message handlers on the receive thread
        (see `on_receive`)."""
        thread = super().start()
        brick = app_manager.lookup_service_brick("ofp_event")
        if brick is None:  # pragma: no cover - the framework always loads ofp_handler
            raise RuntimeError("os-ken's ofp_event service is not loaded")
        for name in sorted(vars(type(self))):
            mark = getattr(getattr(type(self), name), "wl_on_receive", None)
            if mark is None:
                continue
            ev_cls, dispatchers = mark
            run = self._guarded(getattr(self, name))
            handler.set_ev_handler(ev_cls, dispatchers)(run)
            brick.register_handler(ev_cls, run)
            self._inline.append((brick, ev_cls, run))
        self._connect_to_bridge()
        hub.spawn(self._start_watcher, WATCH_AFTER)
        return thread

    def _start_watcher(self, delay: float = 0.0) -> None:
        """Start following netlink events: after the first resync, or `delay` s after start
        if the switch has not connected by then."""
        if delay:
            hub.sleep(delay)
        with self.lock:
            if self._watching or self._closed:
                return
            self._watching = True
        hub.spawn(self.watcher.run)

    def _connect_to_bridge(self) -> None:
        """Connect to the bridge's passive controller target(s), retrying quickly (see
        `wlbridge.app.switch_link`); with an active target, wait for the bridge to connect."""
        import importlib

        factory = switch_link.datapath_server(importlib.import_module(
            f"{FRAMEWORK}.controller.controller").Datapath)
        root = wl_config.register()
        listen = f"{root.ofp_listen_host or '0.0.0.0'}:{root.ofp_tcp_listen_port or 6653}"
        LOG.info("%s", switch_link.wait_message(self.conf.bridge, self._targets, listen))
        for ep in switch_link.endpoints(self._targets):
            connector = switch_link.Connector(ep, factory, hub.sleep)
            self.connectors.append(connector)
            hub.spawn(connector.run)

    def _guarded(self, method):
        def run(ev) -> None:
            try:
                method(ev)
            except Exception:  # never into the receive loop: it would drop the switch
                self.core.counters.bump("errors.handler")
                LOG.exception("error handling %s", type(ev).__name__)
        run.__name__ = method.__name__
        return run

    def _persist(self, force: bool = False) -> None:
        """Save the state if it changed: atomically, at most once per interval (a save of a
        thousand guests takes tens of ms; learning bursts must not pay it each time): at
        least SAVE_INTERVAL, longer when saves are slow (SAVE_SHARE).  What is left pending
        is saved by the tick thread."""
        if not self.core.dirty:
            return
        if not force and time.monotonic() - self._saved_at < self._save_interval:
            return
        self.core.take_dirty()
        started = time.monotonic()
        try:
            self.store.save(self.core.export_state())
        except OSError as exc:
            LOG.error("cannot save state to %s: %s", self.store.path, exc)
            self.core.dirty = True
        self._saved_at = time.monotonic()
        self._save_interval = max(SAVE_INTERVAL, (self._saved_at - started) / SAVE_SHARE)

    def _follow_station_mac(self) -> None:
        """Keep the bridge's internal port (the host's own interface) on the station MAC:
        through OVSDB ``other_config:hwaddr`` (what `wlbridge setup` set), so ovs-vswitchd
        keeps it; in a thread, as OVSDB may be slow."""
        mac = self.core.station_mac
        if (mac is None or self._local_mac is None or mac == self._local_mac
                or self._hwaddr_busy or self.datapath is None):
            return
        self._hwaddr_busy = True
        hub.spawn(self._set_bridge_mac, mac, self.datapath.id)

    def _set_bridge_mac(self, mac: str, dpid: int) -> None:
        bridge = self.conf.bridge
        try:
            from wlbridge.host import ovsdb

            with ovsdb.connect(self.conf.ovsdb, 5.0) as db:
                info = db.bridge_info(bridge)
                updates = {"hwaddr": mac}
                if info is not None and "datapath-id" not in info.other_config:
                    # OVS derives the datapath id from hwaddr: pin it, or the bridge would
                    # reconnect as another switch
                    updates["datapath-id"] = f"{dpid:016x}"
                db.set_other_config(bridge, updates)
            LOG.warning("station MAC is now %s: bridge %s set to it (other_config:hwaddr)",
                        mac, bridge)
        except Exception as exc:  # noqa: BLE001 - whatever failed, fall back to netlink
            LOG.error("cannot set other_config:hwaddr of %s to %s through OVSDB (%s); "
                      "setting the interface MAC directly", bridge, mac, exc)
            self._netlink_mac = mac  # by the tick: pyroute2 is used from one thread only
            self.wake_ticker()
        finally:
            with self.lock:
                self._local_mac = mac  # the port-status for LOCAL will confirm or correct
                self._hwaddr_busy = False

    def _set_mac_by_netlink(self) -> None:
        mac, self._netlink_mac = self._netlink_mac, None
        if mac is None:
            return
        try:
            from wlbridge.host.pyroute2_lazy import IPRoute

            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=self.conf.bridge)[0], address=mac)
        except Exception:
            LOG.exception("cannot set the MAC of %s", self.conf.bridge)

    def _load_state(self) -> None:
        try:
            data = self.store.load()
            if data is not None:
                self.core.restore_state(data)
                LOG.info("restored state from %s: %d guests, %d addresses waiting for the "
                         "switch", self.store.path, len(data.get("guests", [])),
                         len(data.get("bindings", [])))
        except (ValueError, StateFormatError) as exc:
            try:
                self.store.move_aside(str(exc))
            except StateDirError as err:
                raise SystemExit(str(err)) from None

    def status(self) -> dict:
        with self.lock:
            snap = self.core.status(time.time())
        snap["bridge"] = self.conf.bridge
        snap["framework"] = FRAMEWORK
        snap["state_file"] = self.store.report()
        snap["host_address"] = host_address_status(self.conf.bridge, self.conf.ovsdb, time.time())
        return snap

    def switch_flows(self, timeout: float = 3.0) -> list[dict]:
        """The bridge's flows as the switch reports them (for `wlbridge flows`)."""
        from wlbridge.core import flow_stats_request

        done, result = threading.Event(), []
        with self.lock:
            dp = self.datapath
            if dp is None:
                raise RuntimeError("switch not connected")
            msg = flow_stats_request(all_flows=True)
            dp.set_xid(msg)
            self._flow_requests.sent(msg.xid, (done, result))   # this reply, only this one
            self._send([msg])
        if not done.wait(timeout):
            with self.lock:
                self._flow_requests.forget(msg.xid)
            raise RuntimeError("switch did not answer the flow statistics request")
        return result

    def host_addresses(self, ips: list[str]) -> None:
        """The host's IPv4 and IPv6 addresses on the bridge changed (netlink event): ``addr/len``."""
        self._run(self.core.host_addresses, ips)
        self._save_due.set()   # the tick thread recomputes when it is next due

    def wake_ticker(self) -> None:
        """Something may now be due earlier (see `_tick_loop`)."""
        self._save_due.set()

    def _tick_loop(self) -> None:
        """The core's tick when something is due (`Core.next_due`: a lease ending, an
        announcement to repeat, ...) and the state saves `_run` asks for, as soon as the save
        interval allows (see `_persist`).  Nothing due: it sleeps until an event wakes it
        (at most IDLE_WAKE seconds, a safety net)."""
        while not self._stop.is_set():
            with self.lock:
                due = self.core.next_due()
            now = time.time()
            wake = min(due if due is not None else now + IDLE_WAKE, now + IDLE_WAKE)
            if self._save_wanted:
                wake = min(wake, now + self._saved_at + self._save_interval - time.monotonic())
            self._save_due.wait(max(0.0, wake - now))
            self._save_due.clear()
            try:
                if due is not None and time.time() >= due:
                    self._run(self.core.tick)
                self._set_mac_by_netlink()
                with self.lock:
                    if self._save_wanted and \
                            time.monotonic() >= self._saved_at + self._save_interval:
                        self._save_wanted = False
                        self._persist()
            except Exception:
                LOG.exception("tick failed")

    def _isolate_ports(self, changes: list[tuple[str, bool]]) -> None:
        """Hand (port name, on the bridge?) to the isolation worker; never blocks."""
        if changes:
            self._isolation_q.put(changes)

    def _isolation_loop(self) -> None:
        """Keep the host stack off guest ports (see `wlbridge.host.port_isolation`): batches
        what the port events queued; retries what OVSDB being away left pending."""
        try:
            while not self._stop.is_set():
                batch: list[tuple[str, bool]] = []
                try:   # sleeps until a port event, or until a retry is due
                    batch += self._isolation_q.get(timeout=self.isolation.retry_in())
                    while True:
                        batch += self._isolation_q.get_nowait()
                except hub.QueueEmpty:
                    pass
                self.isolation.apply(batch)   # never raises
        finally:
            self.isolation.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for connector in self.connectors:
            connector.stop()
        self.watcher.stop()
        self._stop.set()
        self._save_due.set()
        for brick, ev_cls, run in self._inline:
            brick.unregister_handler(ev_cls, run)
        self._inline = []
        with self.lock:
            self.core.dirty = True
            self._persist(force=True)
        if self.status_server is not None:
            from wlbridge.app.status_server import stop

            stop(self.status_server)
        restore_signals(self._signal_handlers)
        self.instance_lock.release()
        LOG.info("wlbridge stopped; state saved to %s", self.store.path)

    # --------------------------------------------------------------- events
    @on_receive(ofp_event.EventOFPSwitchFeatures, CONFIG)
    def _features(self, ev) -> None:
        dp = ev.msg.datapath
        send_directly(dp)
        self._ports = []
        dp.send_msg(dp.ofproto_parser.OFPSetConfig(dp, ofp.OFPC_FRAG_NORMAL, 0xFFFF))
        # meter support and existing meters first: the replies arrive before the ports'
        self._meters_seen[dp] = [None, None]
        dp.send_msg(dp.ofproto_parser.OFPMeterFeaturesStatsRequest(dp, 0))
        dp.send_msg(dp.ofproto_parser.OFPMeterConfigStatsRequest(dp, 0, ofp.OFPM_ALL))
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    @on_receive(ofp_event.EventOFPMeterFeaturesStatsReply, [CONFIG, MAIN])
    def _meter_features(self, ev) -> None:
        # CONFIG too: the reply can arrive before os-ken moves the switch to MAIN
        seen = self._meters_seen.get(ev.msg.datapath)
        if seen is not None and ev.msg.body:
            seen[0] = ev.msg.body[0].max_meter

    @on_receive(ofp_event.EventOFPMeterConfigStatsReply, [CONFIG, MAIN])
    def _meter_config(self, ev) -> None:
        seen = self._meters_seen.get(ev.msg.datapath)
        if seen is not None:
            seen[1] = (seen[1] or []) + [m.meter_id for m in ev.msg.body]

    @on_receive(ofp_event.EventOFPPortDescStatsReply, MAIN)
    def _port_desc(self, ev) -> None:
        try:
            self._ports += [_port(p) for p in ev.msg.body]
        except Exception:
            LOG.exception("bad port description")
        if ev.msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        ports, self._ports = self._ports, []
        dp = ev.msg.datapath
        local = [p.name for p in ports if p.port_no == ofp.OFPP_LOCAL]
        if local != [self.conf.bridge]:
            LOG.error("switch %016x is bridge %s, not %s: ignoring it", dp.id,
                      local[0] if local else "?", self.conf.bridge)
            return
        with self.lock:
            self._flow_requests.clear()   # an earlier connection's replies never come
        self.datapath = dp
        max_meter, meter_ids = self._meters_seen.pop(dp, None) or (None, None)
        self._meters_seen = {}
        self._local_mac = next((p.hw_addr for p in ports if p.port_no == ofp.OFPP_LOCAL), None)
        # no meter features reply (an error): no meters; no config reply: assume none exist
        self._run(self.core.meter_info, max_meter or 0, meter_ids or [])
        self._run(self.core.switch_connected, dp.id, ports)
        self._start_watcher()
        self._isolate_ports([(p.name, True) for p in ports if p.port_no != ofp.OFPP_LOCAL])

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD)
    def _dead(self, ev) -> None:
        if ev.datapath is self.datapath:
            LOG.warning("switch %016x disconnected (connection closed, or no echo reply for "
                        "%.1fs); flows stay in place (fail_mode=secure)", ev.datapath.id or 0,
                        self.detect_after)
            self.datapath = None
            with self.lock:
                self._flow_requests.clear()
            self._run(self.core.switch_disconnected)
        hub.spawn(liveness.release, ev.datapath)

    @on_receive(ofp_event.EventOFPPortStatus, MAIN)
    def _port_status(self, ev) -> None:
        msg = ev.msg
        if msg.datapath is not self.datapath:
            return
        try:
            port = _port(msg.desc)
        except Exception:
            LOG.exception("bad port status")
            return
        if port.port_no == ofp.OFPP_LOCAL:
            with self.lock:
                self._local_mac = port.hw_addr
        if msg.reason == ofp.OFPPR_ADD:
            self._run(self.core.port_added, port)
        elif msg.reason == ofp.OFPPR_DELETE:
            self._run(self.core.port_deleted, port.port_no)
        else:
            self._run(self.core.port_modified, port)
        if port.port_no != ofp.OFPP_LOCAL:   # modified too: its interface may be new
            self._isolate_ports([(port.name, msg.reason != ofp.OFPPR_DELETE)])
        self.wake_ticker()   # announcements may now be due

    @on_receive(ofp_event.EventOFPPacketIn, MAIN)
    def _packet_in(self, ev) -> None:
        msg = ev.msg
        if msg.datapath is not self.datapath:
            return
        try:
            in_port = msg.match["in_port"]
        except KeyError:
            return
        self._run(lambda now: self.core.packet_in(in_port, bytes(msg.data), now,
                                                  msg.table_id, msg.cookie))

    @on_receive(ofp_event.EventOFPFlowRemoved, MAIN)
    def _flow_removed(self, ev) -> None:
        msg = ev.msg
        if msg.datapath is not self.datapath:
            return
        match = dict(msg.match.items())
        self._run(lambda now: self.core.flow_removed(msg.cookie, match, now, msg.reason))

    @on_receive(ofp_event.EventOFPFlowStatsReply, MAIN)
    def _flow_stats(self, ev) -> None:
        """A flow-statistics reply part, matched to its request by xid
        (`wlbridge.app.stats_requests`): the core's request feeds its stale-generation sweep
        only; a `switch_flows` request gets its own reply, whole."""
        msg = ev.msg
        if msg.datapath is not self.datapath:
            return
        with self.lock:
            complete = self._flow_requests.received(
                msg.xid, list(msg.body), bool(msg.flags & ofp.OFPMPF_REPLY_MORE))
        if complete is None:
            return
        owner, found = complete
        if owner == SWEEP:
            self._run(self.core.flow_stats, [s.cookie for s in found])
            return
        done, result = owner
        try:
            result.extend(flow_entries(found))
        except Exception:
            LOG.exception("bad flow statistics")
        done.set()

    @on_receive(ofp_event.EventOFPErrorMsg, [CONFIG, MAIN])
    def _error(self, ev) -> None:
        msg = ev.msg
        with self.lock:
            self.core.counters.bump(f"switch_errors.type{msg.type}")
        LOG.error("switch error type=%s code=%s data=%s", msg.type, msg.code,
                  bytes(msg.data[:64]).hex() if msg.data else "")
