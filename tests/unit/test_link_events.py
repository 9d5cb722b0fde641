"""Host-link events: the netlink watcher's decisions (wlbridge.host.host_events), what the
controller does about uplink changes (wlbridge.host.link_events), re-preparing a re-created
uplink (wlbridge.host.uplink_care), the core's wake-up time and the re-added uplink's
announcements."""

from __future__ import annotations

import logging
import socket

from fake_netlink import FakeMsg
from hostnet_fakes import FakeNet, state
from rig import UP, Rig
from test_resilience_unit import populated
from wlbridge.host import datapath, host_events, link_events
from wlbridge.host.host_events import HostWatcher, LinkState, link_change
from wlbridge.host.hostnet import INGRESS_OURS
from wlbridge.host.uplink_care import prepare_uplink
from wlbridge.model.state import Port

IFF_UP_LOWER = host_events.IFF_UP | host_events.IFF_LOWER_UP


def link(index: int, name: str, flags: int = IFF_UP_LOWER, event: str = "RTM_NEWLINK",
         mac: str = "02:00:00:00:00:aa") -> FakeMsg:
    return FakeMsg({"event": event, "index": index, "flags": flags},
                   {"IFLA_IFNAME": name, "IFLA_ADDRESS": mac})


def addr(index: int, event: str = "RTM_NEWADDR") -> FakeMsg:
    return FakeMsg({"event": event, "index": index, "family": socket.AF_INET}, {})


def test_link_changes() -> None:
    up = LinkState(5, True, True, "m")
    assert link_change(None, up) == "appeared"
    assert link_change(up, None) == "removed"
    assert link_change(up, LinkState(9, True, True, "m")) == "recreated"
    assert link_change(up, LinkState(5, True, False, "m")) == "carrier-down"
    assert link_change(LinkState(5, True, False, "m"), up) == "carrier-up"
    assert link_change(up, LinkState(5, True, True, "other")) is None   # OVS reports MACs
    assert link_change(None, None) is None


class FakeQuery:
    def __init__(self, addresses: dict[int, list[str]]) -> None:
        self.addresses = addresses
        self.new_uplink = link(11, "wlan0")   # as it is now, after its first message
        self.queries = 0

    def get_links(self, *index: int) -> list[FakeMsg]:
        links = [link(7, "br-wl"), link(5, "wlan0"), link(6, "veth9")]
        if not index:
            return links
        return [m for m in links + [self.new_uplink] if m["index"] == index[0]]

    def get_addr(self, index: int, family: int) -> list[FakeMsg]:
        self.queries += 1
        v6 = family == socket.AF_INET6  # (IPv6 addresses have no IFA_LOCAL)
        return [FakeMsg({"prefixlen": 24} if a.endswith(".3") else {},
                        {"IFA_ADDRESS" if v6 else "IFA_LOCAL": a})
                for a in self.addresses.get(index, []) if (":" in a) == v6]


def watcher(query: FakeQuery) -> tuple[HostWatcher, list]:
    seen: list = []
    w = HostWatcher("br-wl", "wlan0", on_addresses=lambda ips: seen.append(("ips", ips)),
                    on_uplink=lambda change, st: seen.append((change, st and st.index)))
    w.begin(query)
    return w, seen


def test_watcher_reports_uplink_events_and_host_address_changes_only() -> None:
    query = FakeQuery({7: ["10.0.0.2"]})
    w, seen = watcher(query)
    assert seen == [("ips", ["10.0.0.2"])]   # the state at start
    seen.clear()
    w.handle([link(5, "wlan0", flags=host_events.IFF_UP)])           # carrier lost
    w.handle([link(5, "wlan0")])                                    # and back
    w.handle([link(5, "wlan0", event="RTM_DELLINK"), link(6, "veth9")])   # driver unloaded
    w.handle([link(11, "wlan0", flags=0)])      # and loaded again: created down, then up
    # (the messages about it coming up went by before the filter followed the new index)
    query.addresses[7] = ["10.0.0.2", "10.0.0.3"]
    w.handle([addr(3), addr(7)])                                    # an address on br-wl
    w.handle([addr(7, "RTM_DELADDR")])                              # same set: no report
    assert seen == [("carrier-down", 5), ("carrier-up", 5), ("removed", None),
                    ("appeared", 11), ("carrier-up", 11), ("ips", ["10.0.0.2", "10.0.0.3/24"])]


def test_watcher_reports_the_hosts_ipv6_addresses_too() -> None:
    query = FakeQuery({7: ["10.0.0.2", "2001:db8::2"]})
    w, seen = watcher(query)
    assert seen == [("ips", ["10.0.0.2", "2001:db8::2"])]
    query.addresses[7].append("fe80::2")
    w.handle([FakeMsg({"event": "RTM_NEWADDR", "index": 7, "family": socket.AF_INET6}, {})])
    assert seen[-1] == ("ips", ["10.0.0.2", "2001:db8::2", "fe80::2"])


def test_event_filter_lets_through_the_two_interfaces_and_new_ones() -> None:
    prog = host_events.event_filter((7, 5))
    # a tiny classic-BPF interpreter for the instructions the filter uses
    def verdict(msg_type: int, index: int, change: int) -> bool:
        data = (b"\0" * 4 + msg_type.to_bytes(2, "little") + b"\0" * 14
                + index.to_bytes(4, "little") + b"\0" * 4 + change.to_bytes(4, "little"))
        pc, acc = 0, 0
        while True:
            code, jt, jf, k = prog[pc]
            if code == 0x28:
                acc = int.from_bytes(data[k:k + 2], "big")
            elif code == 0x20:
                acc = int.from_bytes(data[k:k + 4], "big")
            elif code == 0x15:
                pc += jt if acc == k else jf
            elif code == 0x06:
                return k != 0
            pc += 1
    assert verdict(16, 7, 0) and verdict(16, 5, 1) and verdict(20, 7, 0)   # ours
    assert not verdict(16, 9, 0) and not verdict(20, 9, 0)               # someone else's
    assert verdict(16, 9, 0xFFFFFFFF)                                    # a new interface
    assert verdict(17, 5, 0xFFFFFFFF)                                    # ours deleted


class Spawned:
    def __init__(self) -> None:
        self.fns: list = []

    def __call__(self, fn) -> None:
        self.fns.append(fn)

    def run_all(self) -> None:
        while self.fns:
            self.fns.pop(0)()


def test_recreated_uplink_is_repaired_once_more_if_it_changes_meanwhile() -> None:
    spawn, calls = Spawned(), []
    events = link_events.UplinkEvents("br-wl", "wlan0", None, spawn,
                                      repair=lambda b, u, r: calls.append((b, u)) or (["x"], []))
    events.uplink_changed("removed", None)
    assert spawn.fns == []
    events.uplink_changed("appeared", LinkState(11, True, True, None))
    events.uplink_changed("recreated", LinkState(12, True, True, None))  # during the repair
    assert len(spawn.fns) == 1
    spawn.run_all()
    assert calls == [("br-wl", "wlan0"), ("br-wl", "wlan0")] and events.repairs == 2


def test_a_failed_repair_is_logged_not_raised(caplog) -> None:
    def fail(*_):
        raise RuntimeError("ovsdb gone")

    spawn = Spawned()
    events = link_events.UplinkEvents("br-wl", "wlan0", None, spawn, repair=fail)
    events.uplink_changed("recreated", LinkState(3, True, True, None))
    spawn.run_all()
    assert "could not re-plug the re-created uplink wlan0 (ovsdb gone)" in caplog.text
    events.uplink_changed("recreated", LinkState(4, True, True, None))
    assert len(spawn.fns) == 1          # not stuck "repairing"


def test_reassociation_runs_the_hooks() -> None:
    events = link_events.UplinkEvents("br-wl", "wlan0", None, Spawned())
    renewed = []
    events.on_reassociated.append(lambda: renewed.append(1))
    events.uplink_changed("carrier-down", LinkState(3, True, False, None))
    events.uplink_changed("carrier-up", LinkState(3, True, True, None))
    assert renewed == [1]


def test_a_new_uplink_interface_gets_what_setup_gave_the_old_one() -> None:
    net = FakeNet({"wlan0": {}})
    st = state()
    st.uplink_ingress = INGRESS_OURS
    warnings: list[str] = []
    changes = prepare_uplink(net, st, "wlan0", warnings)
    assert ("allmulti", "wlan0", True) in net.calls and ("isolate", "wlan0") in net.calls
    assert changes and not warnings
    assert prepare_uplink(net, st, "wlan0", warnings) == []        # idempotent


def test_datapath_traits() -> None:
    assert datapath.traits("netdev").isolate_host_stack
    for kind in ("system", "", None):
        t = datapath.traits(kind)
        assert not t.isolate_host_stack and not t.tx_checksum_off and t.mac_via_hwaddr


def test_re_added_uplink_announces_the_guests() -> None:
    """A re-plugged uplink (port-status DELETE, then ADD): flows back, guests announced."""
    rig = populated()
    before = rig.sw.snapshot()
    rig.apply(rig.core.port_deleted(UP, rig.now))
    d = rig.apply(rig.core.port_added(Port(UP, "wlan0", rig.station), rig.now))
    assert rig.sw.snapshot() == before
    assert len([1 for p, h in d.outputs if p == UP and h.get("arp_op") == 1]) == 5


def test_core_is_due_only_when_something_is_pending() -> None:
    rig = Rig()
    assert rig.core.next_due() is None                       # nothing to expire: sleep
    rig = populated()
    assert rig.core.next_due() <= rig.now  # its new bindings, to announce (policing)
    while rig.core.next_due() <= rig.now + 1:
        rig.advance(1)
    due = rig.core.next_due()
    assert due is None or due > rig.now
    rig.apply(rig.core.port_modified(Port(UP, "wlan0", "02:5a:00:00:00:99"), rig.now))
    assert rig.core.next_due() == rig.now + 1.0              # the repeated announcement


def test_pending_relay_entries_and_held_back_log_lines_are_due() -> None:
    from wlbridge.policy.dhcp_relay import ClientIdRelay
    from wlbridge.ratelog import RateLimitedLog

    relay = ClientIdRelay(ttl=60.0)
    assert relay.next_expiry() is None
    relay.record(0x1234, "02:00:00:00:00:02", 2, "02:5a:00:00:00:01", 100.0)
    assert relay.next_expiry() == 160.0
    log = RateLimitedLog(logging.getLogger("test"), "lines", burst=1, period=1.0)
    log.info(10.0, "one")
    assert log.due() is None                 # nothing held back: no summary to write
    log.info(10.2, "two")
    assert log.due() == 11.0


def test_a_re_plugged_uplink_runs_the_recreated_hooks_once_after_the_last_repair() -> None:
    order: list[str] = []
    spawn = Spawned()
    events = link_events.UplinkEvents(
        "br-wl", "wlan0", None, spawn,
        repair=lambda *_: (order.append("repair"), ([], []))[1])
    events.on_recreated.append(lambda: order.append("hook"))
    events.on_reassociated.append(lambda: order.append("reassociated"))
    events.uplink_changed("recreated", LinkState(11, True, True, None))
    events.uplink_changed("recreated", LinkState(12, True, True, None))  # during the repair
    assert order == []                  # nothing before the new interface is plugged in
    spawn.run_all()
    assert order == ["repair", "repair", "hook"]


def test_a_failed_repair_runs_no_recreated_hook() -> None:
    def fail(*_):
        raise RuntimeError("ovsdb gone")

    hooked: list[int] = []
    spawn = Spawned()
    events = link_events.UplinkEvents("br-wl", "wlan0", None, spawn, repair=fail)
    events.on_recreated.append(lambda: hooked.append(1))
    events.uplink_changed("appeared", LinkState(3, True, True, None))
    spawn.run_all()
    assert hooked == []


def test_an_interrupted_dump_is_asked_again() -> None:
    """The kernel interrupts a dump while interfaces change (other test runs on the
    machine): the watcher asks again instead of stopping."""
    from wlbridge.host.pyroute2_lazy import NetlinkDumpInterrupted

    class Interrupting(FakeQuery):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.interrupts = {"links": 2, "addr": 2}

        def _maybe(self, what: str) -> None:
            if self.interrupts[what]:
                self.interrupts[what] -= 1
                raise NetlinkDumpInterrupted()

        def get_links(self, *index: int) -> list[FakeMsg]:
            self._maybe("links")
            return super().get_links(*index)

        def get_addr(self, index: int, family: int) -> list[FakeMsg]:
            self._maybe("addr")
            return super().get_addr(index, family)

    query = Interrupting({7: ["10.0.0.2"]})
    w, seen = watcher(query)
    assert seen == [("ips", ["10.0.0.2"])] and w.uplink_state.index == 5
    assert query.interrupts == {"links": 0, "addr": 0}
