"""The app shell (`wlbridge.app.shell`) driven without the framework: fake datapath, store,
clock, threads and host, through its public methods only."""

from __future__ import annotations

import queue
import threading
import time

import pytest
from wlbridge.app.shell import ADD, DELETE, IDLE_WAKE, MODIFY, SAVE_INTERVAL, Shell
from wlbridge.compat import ofp, parser
from wlbridge.core import Core, CoreConfig, flow_stats_request, group_stats_request
from wlbridge.model.state import Port

BRIDGE, DPID = "br-wl", 0x2A
LOCAL_MAC, STATION_MAC, NEW_STATION = "02:00:00:00:00:01", "02:00:00:00:00:aa", "02:00:00:00:00:bb"


def wait_for(pred, timeout: float = 5.0, what: str = "condition"):
    """Poll `pred` until it is true; fail after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Datapath:
    """What the shell uses of os-ken's Datapath: ``id``, xids and recorded writes."""

    def __init__(self, dpid: int = DPID) -> None:
        self.id = dpid
        self.ofproto, self.ofproto_parser = ofp, parser
        self.xid = 100
        self.writes: list[bytes] = []

    def set_xid(self, msg) -> None:
        self.xid += 1
        msg.set_xid(self.xid)

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        self.writes.append(buf)
        return True

    @staticmethod
    def split(buf: bytes) -> list[bytes]:
        """The OpenFlow messages in one write."""
        out, i = [], 0
        while i < len(buf):
            n = int.from_bytes(buf[i + 2:i + 4], "big")
            out.append(buf[i:i + n])
            i += n
        return out

    def messages(self) -> list[bytes]:
        """Each OpenFlow message written, in order."""
        return [m for buf in self.writes for m in self.split(buf)]

    def types(self) -> list[int]:
        return [m[1] for m in self.messages()]

    def request_xids(self) -> list[int]:
        return [int.from_bytes(m[4:8], "big") for m in self.messages()
                if m[1] == ofp.OFPT_MULTIPART_REQUEST]


class Store:
    path = "/nowhere/state.json"

    def __init__(self) -> None:
        self.saved: list[dict] = []
        self.fail = False

    def save(self, data) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saved.append(data)

    def report(self) -> dict:
        return {"path": self.path, "saves": len(self.saved)}


class Isolation:
    def __init__(self) -> None:
        self.applied: list[list] = []
        self.closed = False

    def apply(self, changes) -> None:
        self.applied.append(list(changes))

    def retry_in(self):
        return None   # nothing pending: the worker waits for the next batch

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A shell with fakes around it; `spawned` holds what it started, run by `run_spawned`."""

    def __init__(self, core=None, publish=None) -> None:
        self.core = core or Core(CoreConfig(uplink="wlan0"))
        self.store, self.isolation, self.clock = Store(), Isolation(), Clock()
        self.spawned: list[tuple] = []
        self.slept: list[float] = []
        self.macs_set: list[tuple] = []
        self.netlink_macs: list[str] = []
        self.ovsdb_fails = False
        self.watching = 0
        self.shell = Shell(
            self.core, self.store, bridge=BRIDGE, spawn=lambda fn, *a: self.spawned.append((fn, a)),
            sleep=self.slept.append, isolation=self.isolation, queue=queue.Queue(),
            queue_empty=queue.Empty, set_mac=self.set_mac, set_mac_netlink=self.netlink_macs.append,
            start_watching=self.start_watching, describe=lambda now: {"bridge": BRIDGE},
            clock=self.clock, monotonic=self.clock, publish=publish)

    def set_mac(self, mac: str, dpid: int) -> None:
        if self.ovsdb_fails:
            raise OSError("ovsdb away")
        self.macs_set.append((mac, dpid))

    def start_watching(self) -> None:
        self.watching += 1

    def run_spawned(self) -> None:
        spawned, self.spawned = self.spawned, []
        for fn, args in spawned:
            fn(*args)

    def connect(self, dp: Datapath, local_name: str = BRIDGE, guests: int = 1) -> None:
        """The handshake: features, meter replies, the port descriptions in two parts."""
        self.shell.switch_features(dp)
        self.shell.meter_features(dp, 64)
        self.shell.meter_config(dp, [])
        ports = [Port(ofp.OFPP_LOCAL, local_name, LOCAL_MAC, True),
                 Port(1, "wlan0", STATION_MAC, True)]
        self.shell.port_desc(dp, ports, more=True)
        self.shell.port_desc(dp, [Port(2 + i, f"tap{i}", f"02:00:00:00:01:{i:02x}", True)
                                  for i in range(guests)], more=False)


# ---- the handshake -------------------------------------------------------------------

def test_the_handshake_connects_the_switch_and_resyncs_it():
    rig, dp = Rig(), Datapath()
    rig.shell.switch_features(dp)
    assert dp.types() == [ofp.OFPT_SET_CONFIG] + [ofp.OFPT_MULTIPART_REQUEST] * 3
    assert rig.shell.status()["connected"] is False
    dp.writes.clear()
    rig.connect(dp, guests=2)
    status = rig.shell.status()
    assert status["connected"] is True and status["dpid"] == f"{DPID:016x}"
    assert status["bridge"] == BRIDGE and status["state_file"]["path"] == Store.path
    assert ofp.OFPT_FLOW_MOD in dp.types()   # the resync went out to this switch
    assert rig.shell.datapath is dp
    assert rig.watching == 1                 # netlink events are followed from now on
    rig.shell.isolation_step()               # every port but LOCAL, in one batch
    assert rig.isolation.applied == [[("wlan0", True), ("tap0", True), ("tap1", True)]]


def test_a_switch_that_is_another_bridge_is_ignored():
    rig, dp = Rig(), Datapath()
    rig.connect(dp, local_name="br-other")
    assert rig.shell.status()["connected"] is False
    assert rig.shell.datapath is None
    assert dp.types() == [ofp.OFPT_SET_CONFIG] + [ofp.OFPT_MULTIPART_REQUEST] * 3
    rig.shell.packet_in(dp, 2, bytes(60))    # its events go nowhere
    assert len(dp.writes) == 1


def test_a_lost_switch_is_disconnected_and_a_stale_one_ignored():
    rig, dp, old = Rig(), Datapath(), Datapath(7)
    rig.connect(dp)
    rig.shell.switch_gone(old)               # an earlier connection ending: nothing
    assert rig.shell.status()["connected"] is True
    rig.shell.switch_gone(dp)
    assert rig.shell.status()["connected"] is False
    assert rig.shell.datapath is None


def test_port_status_reaches_the_core_and_the_isolation_worker():
    rig, dp = Rig(), Datapath()
    rig.connect(dp, guests=0)
    rig.shell.isolation_step()
    tap = Port(5, "tap5", "02:00:00:00:05:05", True)
    rig.shell.port_status(dp, ADD, tap)
    assert [g["port"] for g in rig.shell.status()["guests"]] == ["tap5"]
    rig.shell.port_status(dp, DELETE, tap)
    assert rig.shell.status()["guests"] == []
    rig.shell.isolation_step()
    assert rig.isolation.applied[-1] == [("tap5", True), ("tap5", False)]   # one batch


def test_an_events_messages_go_in_one_write_but_packet_outs_at_once():
    from wlbridge.flows.pipeline import Output, build_add, flow
    from wlbridge.openflow.ofmsg import packet_out

    def flow_mod(i: int):
        return build_add(flow("switch_local", 100, {"eth_dst": f"02:00:00:00:00:{i:02x}"},
                              [Output(i + 2)]), 1)

    def frame():
        return packet_out(1, 2, bytes(60))

    rig, dp = Rig(), Datapath()
    rig.connect(dp)
    dp.writes.clear()
    rig.shell.send([flow_mod(i) for i in range(6)] + [frame()])   # ARP learning
    assert [[m[1] for m in Datapath.split(w)] for w in dp.writes] == [
        [ofp.OFPT_FLOW_MOD] * 6 + [ofp.OFPT_PACKET_OUT]]
    dp.writes.clear()
    rig.shell.send([frame()] + [flow_mod(i) for i in range(12)])  # DHCP ACK
    assert [[m[1] for m in Datapath.split(w)] for w in dp.writes] == [
        [ofp.OFPT_PACKET_OUT], [ofp.OFPT_FLOW_MOD] * 12]


# ---- events through the core -------------------------------------------------------

class FakeCore:
    """Stands for `Core` where the test needs to steer it: dirty state, due times, MACs."""

    def __init__(self) -> None:
        from wlbridge.model.state import Counters

        self.counters = Counters()
        self.dirty, self.station_mac, self.due = False, None, None
        self.ticks = 0
        self.swept: list[list[int]] = []
        self.grouped: list[list[tuple]] = []
        self.connected = False

    def meter_info(self, max_meter, ids, now) -> list:
        return []

    def switch_connected(self, dpid, ports, now) -> list:
        self.connected = True
        return [flow_stats_request()]

    def switch_disconnected(self, now) -> list:
        return []

    def flow_stats(self, cookies, now) -> list:
        self.swept.append(list(cookies))
        return []

    def group_stats(self, entries, now) -> list:
        self.grouped.append(list(entries))
        return []

    def probe_groups(self, now) -> list:
        return [group_stats_request()]

    def learn(self, now) -> list:
        self.dirty = True
        return []

    def broken(self, now) -> list:
        raise ValueError("bug")

    def next_due(self):
        return self.due

    def tick(self, now) -> list:
        self.ticks += 1
        self.due = None
        return []

    def take_dirty(self) -> bool:
        dirty, self.dirty = self.dirty, False
        return dirty

    def export_state(self) -> dict:
        return {"ticks": self.ticks}

    def status(self, now) -> dict:
        return {"connected": self.connected}


def test_a_failing_event_is_counted_never_raised():
    rig = Rig(FakeCore())
    rig.shell.run(rig.core.broken)
    assert rig.core.counters["errors.handler"] == 1


def test_saves_are_coalesced_and_paced():
    rig = Rig(FakeCore())
    rig.shell.run(rig.core.learn)
    assert rig.shell.next_wake() == 0.0      # a first save is due at once
    rig.shell.tick()
    assert len(rig.store.saved) == 1
    rig.clock.now += 0.1
    rig.shell.run(rig.core.learn)
    rig.shell.run(rig.core.learn)
    assert rig.shell.next_wake() == pytest.approx(SAVE_INTERVAL - 0.1)
    rig.shell.tick()
    assert len(rig.store.saved) == 1         # not before the interval
    rig.clock.now += SAVE_INTERVAL
    rig.shell.tick()
    assert len(rig.store.saved) == 2         # both changes in one save
    rig.shell.tick()
    assert len(rig.store.saved) == 2


def test_slow_saves_are_spaced_out():
    """A save taking 1 s is followed by at least 10 s without one (saving at most a tenth
    of the time)."""
    rig = Rig(FakeCore())
    slow = rig.store.save

    def save(data) -> None:
        rig.clock.now += 1.0
        slow(data)

    rig.store.save = save
    rig.shell.run(rig.core.learn)
    rig.shell.tick()
    rig.shell.run(rig.core.learn)
    rig.clock.now += 9.0
    assert rig.shell.next_wake() == pytest.approx(1.0)
    rig.shell.tick()
    assert len(rig.store.saved) == 1
    rig.clock.now += 1.0
    rig.shell.tick()
    assert len(rig.store.saved) == 2


def test_a_failed_save_is_kept_for_the_next():
    rig = Rig(FakeCore())
    rig.store.fail = True
    rig.shell.run(rig.core.learn)
    rig.shell.tick()
    assert rig.store.saved == [] and rig.core.dirty
    rig.store.fail = False
    rig.shell.close()
    assert len(rig.store.saved) == 1


def test_the_tick_runs_when_due_and_idle_sleeps_long():
    rig = Rig(FakeCore())
    assert rig.shell.next_wake() == IDLE_WAKE
    rig.core.due = rig.clock.now + 3
    assert rig.shell.next_wake() == pytest.approx(3)
    rig.shell.tick()
    assert rig.core.ticks == 0
    rig.clock.now += 3
    rig.shell.tick()
    assert rig.core.ticks == 1


def test_the_bridge_follows_the_station_mac_once_per_change():
    rig, dp = Rig(FakeCore()), Datapath()
    rig.connect(dp)
    rig.core.station_mac = LOCAL_MAC          # already the bridge's: nothing to do
    rig.shell.run(rig.core.learn)
    assert rig.spawned == []
    rig.core.station_mac = NEW_STATION
    rig.shell.run(rig.core.learn)
    rig.shell.run(rig.core.learn)             # a change in progress is not started twice
    assert len(rig.spawned) == 1
    rig.run_spawned()
    assert rig.macs_set == [(NEW_STATION, DPID)]
    rig.shell.run(rig.core.learn)             # the bridge has it now
    assert rig.spawned == []


def test_a_mac_ovsdb_refuses_is_set_through_netlink_by_the_tick():
    rig, dp = Rig(FakeCore()), Datapath()
    rig.connect(dp)
    rig.ovsdb_fails = True
    rig.core.station_mac = NEW_STATION
    rig.shell.run(rig.core.learn)
    rig.run_spawned()
    assert rig.macs_set == [] and rig.netlink_macs == []
    rig.shell.tick()
    rig.shell.tick()
    assert rig.netlink_macs == [NEW_STATION]  # once


def test_no_mac_is_set_before_the_switch_reported_the_bridges():
    rig = Rig(FakeCore())
    rig.core.station_mac = NEW_STATION
    rig.shell.run(rig.core.learn)
    assert rig.spawned == []


def test_the_host_is_watched_after_the_first_resync_or_after_a_while():
    rig = Rig(FakeCore())
    rig.shell.start()
    rig.run_spawned()                          # no switch within watch_after
    assert rig.slept == [rig.shell.watch_after] and rig.watching == 1
    rig.connect(Datapath())
    assert rig.watching == 1                   # once only
    late = Rig(FakeCore())
    late.shell.start()
    late.connect(Datapath())
    late.run_spawned()
    assert late.watching == 1


# ---- flow statistics routed by xid --------------------------------------------------

def stat(cookie: int):
    return parser.OFPFlowStats(table_id=0, duration_sec=1, duration_nsec=0, priority=cookie,
                               idle_timeout=0, hard_timeout=0, flags=0, cookie=cookie,
                               packet_count=0, byte_count=0, match=parser.OFPMatch(),
                               instructions=[])


def test_wlbridge_flows_gets_its_own_reply_and_the_sweep_only_the_cores():
    rig, dp = Rig(FakeCore()), Datapath()
    rig.connect(dp)                             # the resync's filtered request
    sweep_xid = dp.request_xids()[-1]
    got: list = []
    asking = threading.Thread(target=lambda: got.append(rig.shell.switch_flows(timeout=10)),
                              daemon=True)
    asking.start()
    user_xid = wait_for(lambda: dp.request_xids()[-1] != sweep_xid and dp.request_xids()[-1],
                        what="the flows request")
    # parts interleaved: the core's reply completes first
    rig.shell.flow_stats(dp, user_xid, [stat(1), stat(2)], more=True)
    rig.shell.flow_stats(dp, sweep_xid, [stat(10)], more=True)
    rig.shell.flow_stats(dp, sweep_xid, [stat(11)], more=False)
    assert rig.core.swept == [[10, 11]]
    assert got == []                            # still waiting for its own last part
    rig.shell.flow_stats(dp, user_xid, [stat(3)], more=False)
    asking.join(10)
    assert not asking.is_alive()
    assert [e["cookie"] for e in got[0]] == [1, 2, 3]
    assert rig.core.swept == [[10, 11]]         # the user's all-flows reply sweeps nothing


def test_the_group_counters_go_to_the_core_as_plain_data_and_never_to_the_sweep():
    rig, dp = Rig(FakeCore()), Datapath()
    rig.connect(dp)
    sweep_xid = dp.request_xids()[-1]
    rig.shell.run(rig.core.probe_groups)          # (the core's tick asks, `policy.apmode`)
    group_xid = dp.request_xids()[-1]
    assert group_xid != sweep_xid
    counted = parser.OFPFlowStats(table_id=4, duration_sec=1, duration_nsec=0, priority=150,
                                  idle_timeout=0, hard_timeout=0, flags=0, cookie=7,
                                  packet_count=42, byte_count=0,
                                  match=parser.OFPMatch(eth_type=0x0806), instructions=[])
    rig.shell.flow_stats(dp, group_xid, [counted], more=False)
    rig.shell.flow_stats(dp, sweep_xid, [stat(10)], more=False)
    assert rig.core.grouped == [[(4, 42, {"eth_type": 0x0806})]]
    assert rig.core.swept == [[10]]


def test_a_flows_request_the_switch_never_answers_fails_and_its_late_reply_is_dropped():
    rig, dp = Rig(FakeCore()), Datapath()
    rig.connect(dp)
    with pytest.raises(RuntimeError, match="did not answer"):
        rig.shell.switch_flows(timeout=0.05)
    assert len(rig.shell.flow_requests) == 1    # only the core's sweep is still awaited
    rig.shell.flow_stats(dp, dp.request_xids()[-1], [stat(1)], more=False)
    assert rig.core.swept == []
    rig.shell.switch_gone(dp)
    with pytest.raises(RuntimeError, match="not connected"):
        rig.shell.switch_flows(timeout=0.05)


def test_a_new_connection_forgets_the_requests_of_the_last():
    """Reconnected before the old connection was declared dead: the old sweep's reply
    never comes, and a reply bearing its xid feeds nothing."""
    rig, old, new = Rig(FakeCore()), Datapath(), Datapath()
    new.xid = 500
    rig.connect(old)
    old_xid = old.request_xids()[-1]
    rig.shell.flow_stats(old, old_xid, [stat(10)], more=True)
    rig.connect(new)
    rig.shell.flow_stats(new, old_xid, [stat(11)], more=False)
    assert rig.core.swept == []
    rig.shell.flow_stats(new, new.request_xids()[-1], [stat(12)], more=False)
    assert rig.core.swept == [[12]]


# ---- the loops ---------------------------------------------------------------------

def test_close_ends_both_loops_and_saves():
    rig = Rig(FakeCore())
    threads = [threading.Thread(target=rig.shell.run_ticker, daemon=True),
               threading.Thread(target=rig.shell.run_isolation, daemon=True)]
    for t in threads:
        t.start()
    rig.shell.isolate([("tap0", True)])
    wait_for(lambda: rig.isolation.applied, what="the isolation batch")
    rig.shell.run(rig.core.learn)
    wait_for(lambda: rig.store.saved, what="the save")
    rig.shell.close()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert rig.isolation.closed
    assert len(rig.store.saved) == 2           # closing saves, changed or not


def test_the_status_endpoint_serves_status_and_metrics():
    """prometheus_client loads at the first scrape (start-up), and the scrape still works."""
    import json
    import urllib.request

    from wlbridge.app.status_server import serve, stop

    rig, dp = Rig(), Datapath()
    rig.connect(dp)
    server = serve("127.0.0.1", 0, rig.shell.status)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(base + "/status", timeout=10) as reply:
            assert json.load(reply)["connected"] is True
        for _ in range(2):
            with urllib.request.urlopen(base + "/metrics", timeout=10) as reply:
                assert "wlbridge_switch_connected 1.0" in reply.read().decode()
    finally:
        stop(server)


def test_a_change_of_lan_reaches_the_core_sends_its_port_mods_and_wakes_the_tick():
    rig, dp = Rig(), Datapath()
    rig.connect(dp, guests=2)
    rig.shell.lan_seen("10.0.0.0/24", "02:10:00:00:00:01", "home")
    rig.shell.port_status(dp, MODIFY, Port(1, "wlan0", STATION_MAC, False))
    rig.shell.station_associated("cafe")
    rig.shell.wakeup.clear()
    sent = len(dp.types())
    rig.shell.lan_seen("10.9.0.0/24", "02:b0:00:00:00:01", "cafe")
    assert dp.types()[sent:] == [ofp.OFPT_PORT_MOD] * 2           # the guests' carrier down
    assert rig.shell.wakeup.is_set()                               # up again on a tick
    assert rig.shell.status()["lan"]["subnet"] == "10.9.0.0/24"
    rig.clock.now += 1.0
    rig.shell.tick()
    assert dp.types()[sent + 2:] == [ofp.OFPT_PORT_MOD] * 2
# ---- the fleet store ----------------------------------------------------------------------

def test_the_fleet_store_gets_this_hosts_record_when_it_changes_and_its_view_reaches_the_core():
    from wlbridge.model.fleet import Claim, HostSeen
    from wlbridge.proto.packets import gratuitous_arp

    records: list[dict] = []
    rig, dp = Rig(Core(CoreConfig(uplink="wlan0", fleet_host="b")), publish=records.append), \
        Datapath()
    rig.shell.start()
    assert len(records) == 1 and records[0]["bindings"] == []   # at start, what is known
    rig.connect(dp)
    guest = "02:00:00:00:01:00"
    for _ in range(2):   # its MAC learned, then its address (the switch would send it again)
        rig.shell.packet_in(dp, 2, gratuitous_arp(guest, "10.0.0.50"))
    assert [b["ip"] for b in records[-1]["bindings"]] == ["10.0.0.50"]
    assert records[-1]["station_mac"] == STATION_MAC
    n = len(records)
    rig.shell.packet_in(dp, 2, gratuitous_arp(guest, "10.0.0.50"))   # nothing new: not sent
    assert len(records) == n
    rig.shell.fleet_view([HostSeen("a", rig.clock.now, "02:5a:00:00:00:0a")],
                         [Claim("a", "10.0.0.60", "02:00:00:00:77:01", rig.clock.now - 5)])
    rig.shell.packet_in(dp, 2, gratuitous_arp(guest, "10.0.0.60"))
    assert list(records[-1]["conflicts"]) == ["10.0.0.60"]
    assert rig.shell.status()["counters"]["refused.fleet-ip-in-use"] == 1


def test_without_a_fleet_store_nothing_is_published():
    rig, dp = Rig(), Datapath()
    rig.shell.start()
    rig.connect(dp)
    assert rig.shell.publish is None and rig.shell.status()["fleet"]["hosts"] == []


def test_a_vm_libvirt_plugged_is_a_guest_named_in_status_until_its_port_goes():
    from wlbridge.host.libvirt_vms import VmPort

    rig, dp = Rig(), Datapath()
    rig.connect(dp, guests=0)
    vnet = Port(5, "vnet0", "fe:54:00:12:34:56", True)
    rig.shell.port_status(dp, ADD, vnet)
    rig.shell.vm_ports([VmPort("vnet0", "52:54:00:12:34:56", "0d9b-uuid", name="vm1")])
    (guest,) = rig.shell.status()["guests"]
    assert (guest["port"], guest["vm"], guest["vm_id"]) == ("vnet0", "vm1", "0d9b-uuid")
    assert (guest["mac"], guest["mac_source"]) == ("52:54:00:12:34:56", "libvirt")
    rig.shell.port_status(dp, DELETE, vnet)
    rig.shell.port_status(dp, ADD, Port(6, "vnet0", "fe:00:00:00:00:06", True))  # reused name
    (guest,) = rig.shell.status()["guests"]
    assert "vm" not in guest and guest["mac"] is None
