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


def netlink_message(msg_type: int, index: int, change: int = 0,
                    attrs: list | None = None) -> bytes:
    """A link (RTM_*LINK) or address (RTM_*ADDR) message as the kernel sends it, encoded by
    pyroute2 (not by the code under test)."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    if msg_type in (16, 17):
        msg = ifinfmsg()
        msg["change"] = change
        msg["attrs"] = attrs if attrs is not None else [("IFLA_IFNAME", f"if{index}"),
                                                        ("IFLA_MTU", 1500)]
    else:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["attrs"] = [("IFA_LOCAL", "10.0.0.2")]
    msg["header"]["type"] = msg_type
    msg["index"] = index
    msg.encode()
    return bytes(msg.data)


def kernel_passes(prog: list, messages: list[bytes]) -> list[bool]:
    """Which `messages` the kernel's socket filter `prog` lets through: the filter attached
    to a datagram socket of a pair (as the watcher attaches it to its netlink socket), each
    message sent to it from the other end."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        host_events.attach_filter(ours.fileno(), prog)
        ours.setblocking(False)
        passed = []
        for data in messages:
            theirs.send(data)
            try:
                passed.append(ours.recv(65536) == data)
            except BlockingIOError:
                passed.append(False)
        return passed


NEW = 0xFFFFFFFF


def test_event_filter_wakes_the_watcher_for_its_two_interfaces_only() -> None:
    prog = host_events.event_filter((7, 5), ("br-wl", "wlp2s0"))
    cases = [   # ((type, index, change, attrs), passes)
        ((16, 7, 0, None), True), ((16, 5, 1, None), True), ((20, 7, 0, None), True),  # ours
        ((17, 5, NEW, None), True),                                       # ours deleted
        ((16, 9, 0, None), False), ((20, 9, 0, None), False), ((17, 9, 0, None), False),
        ((16, 9, NEW, None), False),          # someone else's new interface: "if9"
        ((16, 9, NEW, [("IFLA_IFNAME", "xct-br")]), False),
        ((16, 12, NEW, [("IFLA_IFNAME", "wlp2s0")]), True),     # the uplink, re-created
        ((16, 13, NEW, [("IFLA_IFNAME", "br-wl"), ("IFLA_MTU", 1500)]), True),
        ((16, 14, NEW, [("IFLA_IFNAME", "wlp2s")]), False),     # a prefix of the uplink's
        ((16, 14, NEW, [("IFLA_IFNAME", "wlp2s01")]), False),   # ... and a longer name
        ((16, 14, NEW, [("IFLA_IFNAME", "br-w")]), False),
        # a link message not starting with its name: let through, the watcher decides
        ((16, 15, NEW, [("IFLA_MTU", 1500), ("IFLA_IFNAME", "other")]), True),
    ]
    messages = [netlink_message(*msg) for msg, _ in cases]
    assert kernel_passes(prog, messages) == [passes for _, passes in cases]
    # without names (the uplink's unknown): every new interface
    assert kernel_passes(host_events.event_filter((7, 5)),
                         [netlink_message(16, 9, NEW), netlink_message(16, 9)]) == [True, False]


def test_event_filter_names_of_every_length_and_the_ones_the_kernel_sends() -> None:
    names = ["a", "abc", "abcd", "abcdefg", "abcdefgh", "a" * 15]
    prog = host_events.event_filter((7, 5), tuple(names[::2]))
    got = kernel_passes(prog, [netlink_message(16, 30, NEW, [("IFLA_IFNAME", n)])
                               for n in names])
    assert got == [True, False, True, False, True, False]


class SocketEvents:
    """The watcher's events socket: one end of a datagram socket pair, so that the filter the
    watcher attaches is run by the kernel; its messages decoded by pyroute2."""

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.received: list[str] = []

    def bind(self, groups: int) -> None:
        pass

    def fileno(self) -> int:
        return self.sock.fileno()

    def filtered(self) -> bool:
        # SO_GET_FILTER (= SO_ATTACH_FILTER): nothing before a filter is attached
        return len(self.sock.getsockopt(socket.SOL_SOCKET, host_events.SO_ATTACH_FILTER,
                                        1024)) > 0

    def get(self) -> list:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        data = self.sock.recv(65536)
        msg = ifinfmsg(data)
        msg.decode()
        name = msg.get_attr("IFLA_IFNAME")
        self.received.append(name)
        return [link(msg["index"], name)]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)    # wakes the watcher's recv
        self.sock.close()


def test_the_watcher_is_woken_only_by_its_own_interfaces() -> None:
    import threading

    from topologies.procs import wait_for

    events, seen = SocketEvents(), []
    sockets = iter([events, FakeQuery({7: ["10.0.0.2"]})])
    w = HostWatcher("br-wl", "wlan0", on_addresses=lambda ips: None,
                    on_uplink=lambda change, st: seen.append((change, st and st.index)),
                    iproute=lambda: next(sockets))
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(events.filtered, 10, 0.01, what="the watcher's socket filter")
        for index, name in ((21, "xct-br"), (22, "veth1"), (23, "wlan0")):
            events.peer.send(netlink_message(16, index, NEW, [("IFLA_IFNAME", name)]))
        wait_for(lambda: seen, 10, 0.01, what="the re-created uplink")
        assert seen == [("recreated", 23)]
        assert events.received == ["wlan0"]       # the others never woke it
    finally:
        w.stop()
        thread.join(10)
    assert not thread.is_alive()


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
