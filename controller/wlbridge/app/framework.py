"""The os-ken / Ryu application: the framework's adapter to `wlbridge.app.shell`.

Loaded as `wlbridge_app` (``wlbridge run``, or ``ryu-manager wlbridge_app`` on Ryu 4.34),
which declares the app class the frameworks look for.  This module is framework glue only: it reads the configuration, claims the bridge (instance lock,
listening address, status port), builds the `Shell` with its collaborators (the core, the
state file, the framework's threads and queue, the host integration) and turns each OpenFlow
event into a call of the shell with plain data.  What happens then — the core, the handshake,
saves, the station MAC, port isolation, flow-statistics routing — is the shell's
(`wlbridge.app.shell`, tested without the framework).

Start-up: the host integration (pyroute2, port isolation, netlink events, the address
hand-off's status) is not needed for the first connection: it is imported after the connect,
by `wlbridge.app.host_loader.HostLoader` (one thread imports it, in one order; the isolation
worker, the netlink watcher, the status server and the station MAC's netlink path wait for
it): two threads importing pyroute2 at once saw each other's half-initialised modules.
prometheus_client loads at the first ``/metrics`` (under Ryu's eventlet hub: at import).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable

from wlbridge.app import config as wl_config
from wlbridge.app import listener, liveness, switch_link
from wlbridge.app.host_loader import HostLoader
from wlbridge.app.instance_lock import InstanceError, InstanceLock
from wlbridge.app.listener import Listener
from wlbridge.app.ofsocket import on_receive, send_directly
from wlbridge.app.persist import StateDirError, StateStore
from wlbridge.app.ryu_signals import restore_signals, stop_on_signals
from wlbridge.app.shell import ADD, DELETE, MODIFY, Shell, port_of
from wlbridge.compat import FRAMEWORK, ofp, runtime
from wlbridge.core import Core, CoreConfig
from wlbridge.model.state import StateFormatError

if FRAMEWORK == "ryu":  # eventlet: two green threads importing one module (see above)
    import prometheus_client.core  # noqa: F401 - for /metrics (wlbridge.app.status_server)

_rt = runtime()
app_manager = _rt["app_manager"]
ofp_event = _rt["ofp_event"]
handler = _rt["handler"]
hub = _rt["hub"]
AppBase = app_manager.OSKenApp if FRAMEWORK == "os_ken" else app_manager.RyuApp
set_ev_cls = handler.set_ev_cls
MAIN, CONFIG, DEAD = handler.MAIN_DISPATCHER, handler.CONFIG_DISPATCHER, handler.DEAD_DISPATCHER
HANDSHAKE = handler.HANDSHAKE_DISPATCHER

LOG = logging.getLogger("wlbridge.app")
REASONS = {ofp.OFPPR_ADD: ADD, ofp.OFPPR_DELETE: DELETE, ofp.OFPPR_MODIFY: MODIFY}


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


def core_config(conf, uplink: str) -> CoreConfig:
    """The core's settings from the options: every `CoreConfig` field is the option of the
    same name (a new setting cannot be declared and then forgotten here), but the uplink (from
    the bridge) and `static_macs` (parsed)."""
    given = {"uplink": uplink, "static_macs": wl_config.static_macs(conf.static_macs),
             "fleet_host": conf.fleet_host or socket.gethostname()}
    return CoreConfig(**{f.name: given[f.name] if f.name in given else getattr(conf, f.name)
                         for f in dataclasses.fields(CoreConfig)})


def _load_state(core: Core, store: StateStore) -> None:
    try:
        data = store.load()
        if data is not None:
            core.restore_state(data)
            LOG.info("restored state from %s: %d guests, %d addresses waiting for the "
                     "switch", store.path, len(data.get("guests", [])),
                     len(data.get("bindings", [])))
    except (ValueError, StateFormatError) as exc:
        try:
            store.move_aside(str(exc))
        except StateDirError as err:
            raise SystemExit(str(err)) from None


def _fleet_store(conf, uplink: str, host: str, on_view):
    """The fleet store's client (`wlbridge.host.fleet_store`) if `fleet` is set, else None."""
    if not conf.fleet:
        return None
    from wlbridge.host.fleet_store import HEARTBEAT, FleetStore, set_tls

    set_tls(conf.fleet_private_key, conf.fleet_certificate, conf.fleet_ca_cert)
    # a heartbeat well within fleet_gone_after: this host is not thought gone while alive,
    # and the view is refreshed often enough to see another one go
    return FleetStore(conf.fleet, host, conf.bridge, conf.fleet_lan or uplink, on_view,
                      heartbeat=min(HEARTBEAT, conf.fleet_gone_after / 3))


class _Isolation:
    """Guest-port isolation (`wlbridge.host.port_isolation`), made on first use: in the
    isolation worker's thread, after the switch connected (`host`: the `HostLoader`)."""

    def __init__(self, host: HostLoader, bridge: str, uplink: str, ovsdb: str | None,
                 on_vms: Callable[[list], None]) -> None:
        self.host = host
        self.args = (bridge, uplink, ovsdb)
        self.on_vms = on_vms
        self.made = None
        self.domains = None

    def _get(self):
        if self.made is None:
            isolation = self.host.module("wlbridge.host.port_isolation")
            self.domains = self.host.module("wlbridge.host.libvirt_vms").DomainNames()
            self.made = isolation.GuestPortIsolation(*self.args, on_interfaces=self._interfaces)
        return self.made

    def _interfaces(self, interfaces: dict[str, dict]) -> None:
        """The bridge's guest interfaces as read: those libvirt plugged for a VM (its MAC,
        its domain) to the shell (`wlbridge.host.libvirt_vms`)."""
        found = self.host.module("wlbridge.host.libvirt_vms").vm_ports(interfaces)
        if found:
            self.on_vms(self.domains.named(found))

    def apply(self, changes) -> None:
        self._get().apply(changes)

    def retry_in(self) -> float | None:
        return None if self.made is None else self.made.retry_in()

    def close(self) -> None:
        if self.made is not None:
            self.made.close()


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
        conf = self.conf = root.wlbridge
        # the bridge must exist (a clear exit otherwise, nothing written); its controller
        # targets say whether we connect to it (passive target) or wait for it
        # (see wlbridge.app.switch_link)
        bridge = switch_link.wait_for_bridge(conf.bridge, conf.ovsdb, conf.bridge_timeout)
        store = StateStore(conf.state_dir, conf.bridge)
        self.instance_lock, self.listener = _claim(root, conf, store)
        if self.listener.tls and FRAMEWORK == "ryu":
            from wlbridge.app import ryu_tls

            ryu_tls.install()  # Ryu's own TLS listener serves one connection only
        self.detect_after = liveness.configure(root, conf.echo_timeout)
        # datapath -> event set at its features reply (or its end), see `_handshake`
        self.handshakes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.targets = [c.target for c in bridge.controllers]
        self.connectors: list[switch_link.Connector] = []
        self.uplink = discover_uplink(conf, bridge)
        core = Core(core_config(conf, self.uplink))
        self.host = HostLoader()   # imported after the connect (see the module docstring)
        self.fleet = _fleet_store(conf, self.uplink, core.config.fleet_host,
                                  lambda hosts, claims: self.shell.fleet_view(hosts, claims))
        self.shell = Shell(
            core, store, bridge=conf.bridge, spawn=hub.spawn, sleep=hub.sleep,
            isolation=_Isolation(self.host, conf.bridge, self.uplink, conf.ovsdb,
                                 lambda vms: self.shell.vm_ports(vms)),
            queue=hub.Queue(), queue_empty=hub.QueueEmpty,
            set_mac=self._set_mac_ovsdb, set_mac_netlink=self._set_mac_netlink,
            start_watching=lambda: hub.spawn(self._watch_host), describe=self._describe,
            publish=None if self.fleet is None else self.fleet.publish)
        self.status_server = None
        if conf.status_port:  # bound before the state is loaded: a port in use changes nothing
            from wlbridge.app.status_server import serve

            try:
                self.status_server = serve(conf.status_host, conf.status_port,
                                           self.shell.status, {"/flows": self.shell.switch_flows})
            except OSError as exc:
                raise SystemExit(f"cannot serve status on {conf.status_host}:"
                                 f"{conf.status_port}: {exc.strerror or exc} (another "
                                 f"controller?); choose another status_port") from None
        _load_state(core, store)
        self.watcher = None   # netlink events (wlbridge.host.host_events), see _watch_host
        self.lan_watch = None   # the LAN the station is on (wlbridge.host.lan_watch)
        self._inline: list[tuple] = []  # (brick, event class, handler) registered on the brick
        self.isolator = hub.spawn(self.shell.run_isolation)
        self.ticker = hub.spawn(self.shell.run_ticker)
        if self.fleet is not None:
            hub.spawn(self.fleet.run)
        self._signal_handlers = stop_on_signals(hub, self.shell.stopped)
        LOG.info("wlbridge on %s, uplink %s, DHCP mode %s, state %s, status %s:%s, OpenFlow "
                 "%s, switch lost after %.1fs without echo reply", conf.bridge, self.uplink,
                 conf.dhcp_mode, store.path, conf.status_host, conf.status_port,
                 self.listener, self.detect_after)

    # ------------------------------------------------- the shell's collaborators
    def _set_mac_ovsdb(self, mac: str, dpid: int) -> None:
        from wlbridge.app.bridge_mac import set_by_ovsdb

        set_by_ovsdb(self.conf.ovsdb, self.conf.bridge, mac, dpid)

    def _set_mac_netlink(self, mac: str) -> None:
        from wlbridge.app.bridge_mac import set_by_netlink

        self.host.ready()   # pyroute2
        set_by_netlink(self.conf.bridge, mac)

    def _describe(self, now: float) -> dict:
        fields = {"bridge": self.conf.bridge, "framework": FRAMEWORK,
                  "fleet_store": None if self.fleet is None else self.fleet.status()}
        # once the host integration is loaded (right after the connect): a status poll
        # neither starts its import early nor waits for it
        if self.host.loaded:
            handoff = self.host.module("wlbridge.host.addr_handoff")
            fields["host_address"] = handoff.host_address_status(self.conf.bridge,
                                                                 self.conf.ovsdb, now)
            wireless = self.host.module("wlbridge.host.wireless")
            fields["uplink_translation"] = wireless.uplink_translation(self.uplink, now)
        return fields

    def _watch_host(self) -> None:
        """Follow netlink events (a thread): host addresses, uplink changes (a re-created
        uplink is re-plugged, `wlbridge.host.link_events`; a reassociation renews the host's
        DHCP client, `wlbridge.host.lease_renewal`)."""
        self.host.ready()
        from wlbridge.host.host_events import HostWatcher
        from wlbridge.host.lan_watch import LanWatch
        from wlbridge.host.lease_renewal import LeaseRenewal
        from wlbridge.host.link_events import UplinkEvents

        conf = self.conf
        uplink_events = UplinkEvents(conf.bridge, self.uplink, conf.ovsdb, hub.spawn)
        renewal = LeaseRenewal(conf.bridge, conf.ovsdb, hub.spawn)
        lan = LanWatch(conf.bridge, self.uplink, on_lan=self.shell.lan_seen,
                       on_associated=self.shell.station_associated, spawn=hub.spawn,
                       sleep=hub.sleep)
        uplink_events.on_reassociated.append(renewal.reassociated)
        uplink_events.on_reassociated.append(lan.reassociated)
        uplink_events.on_recreated.append(renewal.recreated)

        def addresses(ips: list[str]) -> None:
            self.shell.host_addresses(ips)
            lan.addresses_changed()

        watcher = HostWatcher(conf.bridge, self.uplink, on_addresses=addresses,
                              on_uplink=uplink_events.uplink_changed)
        with self.shell.lock:
            if self.shell.closed:
                return
            self.watcher = watcher
            self.lan_watch = lan
        lan.start()
        watcher.run()

    # ------------------------------------------------------------- lifetime
    def start(self):
        """Start the app, then put its OpenFlow message handlers on the receive thread
        (see `on_receive`)."""
        thread = super().start()
        brick = app_manager.lookup_service_brick("ofp_event")
        if brick is None:  # pragma: no cover - the framework always loads ofp_handler
            raise RuntimeError("os-ken's ofp_event service is not loaded")
        for name in sorted(dir(type(self))):   # wlbridge_app declares a subclass
            mark = getattr(getattr(type(self), name), "wl_on_receive", None)
            if mark is None:
                continue
            ev_cls, dispatchers = mark
            run = self._guarded(getattr(self, name))
            handler.set_ev_handler(ev_cls, dispatchers)(run)
            brick.register_handler(ev_cls, run)
            self._inline.append((brick, ev_cls, run))
        self._connect_to_bridge()
        self.shell.start()
        return thread

    def _connect_to_bridge(self) -> None:
        """Connect to the bridge's passive controller target(s), retrying quickly (see
        `wlbridge.app.switch_link`); with an active target, wait for the bridge to connect."""
        import importlib

        factory = switch_link.datapath_server(importlib.import_module(
            f"{FRAMEWORK}.controller.controller").Datapath)
        root = wl_config.register()
        listen = f"{root.ofp_listen_host or '0.0.0.0'}:{root.ofp_tcp_listen_port or 6653}"
        LOG.info("%s", switch_link.wait_message(self.conf.bridge, self.targets, listen))
        for ep in switch_link.endpoints(self.targets):
            connector = switch_link.Connector(ep, factory, hub.sleep)
            self.connectors.append(connector)
            hub.spawn(connector.run)

    def _guarded(self, method):
        def run(ev) -> None:
            try:
                method(ev)
            except Exception:  # never into the receive loop: it would drop the switch
                self.shell.handler_failed(type(ev).__name__)
                LOG.exception("error handling %s", type(ev).__name__)
        run.__name__ = method.__name__
        return run

    def close(self) -> None:
        if self.shell.closed:
            return
        for connector in self.connectors:
            connector.stop()
        for brick, ev_cls, run in self._inline:
            brick.unregister_handler(ev_cls, run)
        self._inline = []
        self.shell.close()   # stops its loops (a host watcher is no longer made), saves
        if self.fleet is not None:
            self.fleet.stop()
        with self.shell.lock:
            watcher = self.watcher
        if watcher is not None:
            watcher.stop()
        if self.lan_watch is not None:
            self.lan_watch.stop()
        if self.status_server is not None:
            from wlbridge.app.status_server import stop

            stop(self.status_server)
        restore_signals(self._signal_handlers)
        self.instance_lock.release()
        LOG.info("wlbridge stopped; state saved to %s", self.shell.store.path)

    # --------------------------------------------------------------- events
    @set_ev_cls(ofp_event.EventOFPStateChange, HANDSHAKE)
    def _handshake(self, ev) -> None:
        # a switch that hangs before its features reply is not watched by `Liveness` yet
        # (threading.Event: os-ken's hub.Event cannot time out on native threads)
        greeted = self.handshakes.setdefault(ev.datapath, threading.Event())
        hub.spawn(liveness.give_up_unless_greeted, ev.datapath, self.detect_after, greeted)

    def _greeted(self, dp) -> None:
        # (the receive thread: it may come before `_handshake`, on the app's thread)
        self.handshakes.setdefault(dp, threading.Event()).set()

    @on_receive(ofp_event.EventOFPSwitchFeatures, CONFIG)
    def _features(self, ev) -> None:
        dp = ev.msg.datapath
        self._greeted(dp)
        send_directly(dp, liveness.Liveness(self.conf.echo_interval, self.conf.echo_timeout,
                                            time.monotonic()))
        self.shell.switch_features(dp)

    @on_receive(ofp_event.EventOFPMeterFeaturesStatsReply, [CONFIG, MAIN])
    def _meter_features(self, ev) -> None:
        # CONFIG too: the reply can arrive before os-ken moves the switch to MAIN
        body = ev.msg.body
        self.shell.meter_features(ev.msg.datapath, body[0].max_meter if body else None)

    @on_receive(ofp_event.EventOFPMeterConfigStatsReply, [CONFIG, MAIN])
    def _meter_config(self, ev) -> None:
        self.shell.meter_config(ev.msg.datapath, [m.meter_id for m in ev.msg.body])

    @on_receive(ofp_event.EventOFPPortDescStatsReply, MAIN)
    def _port_desc(self, ev) -> None:
        try:
            ports = [port_of(p) for p in ev.msg.body]
        except Exception:
            LOG.exception("bad port description")
            ports = []
        self.shell.port_desc(ev.msg.datapath, ports, bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD)
    def _dead(self, ev) -> None:
        self._greeted(ev.datapath)   # its handshake watch ends too
        self.shell.switch_gone(ev.datapath, self.detect_after)
        hub.spawn(liveness.release, ev.datapath)

    @on_receive(ofp_event.EventOFPPortStatus, MAIN)
    def _port_status(self, ev) -> None:
        msg = ev.msg
        if msg.datapath is not self.shell.datapath:
            return
        try:
            port = port_of(msg.desc)
        except Exception:
            LOG.exception("bad port status")
            return
        self.shell.port_status(msg.datapath, REASONS.get(msg.reason, MODIFY), port)

    @on_receive(ofp_event.EventOFPPacketIn, MAIN)
    def _packet_in(self, ev) -> None:
        msg = ev.msg
        try:
            in_port = msg.match["in_port"]
        except KeyError:
            return
        self.shell.packet_in(msg.datapath, in_port, bytes(msg.data), msg.table_id, msg.cookie)

    @on_receive(ofp_event.EventOFPFlowRemoved, MAIN)
    def _flow_removed(self, ev) -> None:
        msg = ev.msg
        self.shell.flow_removed(msg.datapath, msg.cookie, dict(msg.match.items()), msg.reason)

    @on_receive(ofp_event.EventOFPFlowStatsReply, MAIN)
    def _flow_stats(self, ev) -> None:
        msg = ev.msg
        self.shell.flow_stats(msg.datapath, msg.xid, list(msg.body),
                              bool(msg.flags & ofp.OFPMPF_REPLY_MORE))

    @on_receive(ofp_event.EventOFPErrorMsg, [CONFIG, MAIN])
    def _error(self, ev) -> None:
        msg = ev.msg
        self.shell.switch_error(msg.type, msg.code, bytes(msg.data or b""))
