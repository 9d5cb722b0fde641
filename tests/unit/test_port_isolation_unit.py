"""Guest-port isolation (userspace datapath): the shell's worker logic, hostnet's netlink
calls (with a fake IPRoute) and what teardown does with the bridge's former ports."""

from __future__ import annotations

import errno
import logging
import socket
import struct
from typing import Any

import pytest
from fake_netlink import FakeMsg as Msg
from pyroute2.netlink.exceptions import NetlinkError
from wlbridge.cli import bridge_teardown
from wlbridge.host import hostnet, ovsdb, port_isolation
from wlbridge.host.hostnet import GUEST_ISOLATION_PRIO, HostNet, IsolationError
from wlbridge.host.port_isolation import GuestPortIsolation


# ---- fakes --------------------------------------------------------------------
def iface(name: str, type_: str = "", uplink: bool = False) -> ovsdb.InterfaceInfo:
    ext = {ovsdb.ROLE_KEY: ovsdb.ROLE_UPLINK} if uplink else {}
    return ovsdb.InterfaceInfo(name, type_, ext, 1, None)


def bridge(*ifaces: ovsdb.InterfaceInfo, datapath: str = "netdev",
           saved: str | None = None) -> ovsdb.BridgeInfo:
    ports = (ovsdb.PortInfo("br-wl", (iface("br-wl", "internal"),)),
             ovsdb.PortInfo("wlan0", (iface("wlan0", uplink=True),)),
             *(ovsdb.PortInfo(i.name, (i,)) for i in ifaces))
    ext = {ovsdb.OWNER_KEY: "wlan0"}
    if saved is not None:
        ext[ovsdb.SAVED_KEY] = saved
    return ovsdb.BridgeInfo("br-wl", datapath, ("OpenFlow13",), "secure", (), {}, ext, ports)


class FakeHostNet:
    """What `GuestPortIsolation` asks of `HostNet`."""

    def __init__(self, links: set[str], refuse: set[str] = frozenset()) -> None:
        self.links, self.refuse = links, refuse
        self.isolated: set[str] = set()
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False

    def isolate_guest_port(self, name: str, prog_fd: int | None = None) -> list[str]:
        self.calls.append(("isolate", name, prog_fd))
        if name not in self.links:
            raise LookupError(name)
        if name in self.refuse:
            raise IsolationError("refused")
        if name in self.isolated:
            return []
        self.isolated.add(name)
        return [f"isolated {name}"]

    def release_guest_port(self, name: str) -> list[str]:
        self.calls.append(("release", name))
        if name in self.isolated:
            self.isolated.discard(name)
            return [f"released {name}"]
        return []

    def close(self) -> None:
        self.closed = True


class Rig:
    def __init__(self, info: ovsdb.BridgeInfo | None, links: set[str] | None = None,
                 **kw: Any) -> None:
        self.info: Any = info
        self.lookups = 0
        self.loads = 0
        self.now = 100.0
        self.net = FakeHostNet(links if links is not None else {"vg1", "vg2", "tap0"}, **kw)
        self.iso = GuestPortIsolation("br-wl", "wlan0", "unix:db", bridge_info=self.bridge_info,
                                      hostnet_factory=lambda: self.net,
                                      load_program=self.load, clock=lambda: self.now)

    def bridge_info(self, name: str, remote: str | None) -> ovsdb.BridgeInfo | None:
        assert (name, remote) == ("br-wl", "unix:db")
        self.lookups += 1
        if isinstance(self.info, Exception):
            raise self.info
        return self.info

    def load(self) -> int:
        self.loads += 1
        return -7   # never a real descriptor: close() must tolerate it


# ---- the worker's logic ---------------------------------------------------------
def test_netdev_bridge_isolates_guest_ports_only() -> None:
    rig = Rig(bridge(iface("vg1"), iface("tap0", "system"), iface("in0", "internal")))
    rig.iso.apply([("br-wl", True), ("wlan0", True), ("vg1", True), ("tap0", True),
                   ("in0", True)])
    assert rig.net.isolated == {"vg1", "tap0"}
    assert all(c[2] == -7 for c in rig.net.calls)          # one shared program
    assert rig.loads == 1 and rig.lookups == 1
    # idempotent, and known ports cost no OVSDB lookup
    rig.iso.apply([("vg1", True)])
    assert rig.lookups == 1 and rig.net.calls[-1] == ("isolate", "vg1", -7)
    rig.iso.close()
    assert rig.net.closed


def test_kernel_datapath_does_nothing() -> None:
    rig = Rig(bridge(iface("vg1"), datapath="system"))
    rig.iso.apply([("vg1", True), ("vg1", False)])
    rig.iso.apply([("vg1", True)])
    assert rig.net.calls == [] and rig.loads == 0
    assert rig.lookups == 1          # the datapath type is cached


def test_port_added_later_is_looked_up_then_left_released() -> None:
    rig = Rig(bridge(iface("vg1")))
    rig.iso.apply([("vg1", True)])
    rig.info = bridge(iface("vg1"), iface("vg2"))
    rig.iso.apply([("vg2", True)])
    assert rig.lookups == 2 and rig.net.isolated == {"vg1", "vg2"}
    rig.iso.apply([("vg2", False)])
    assert rig.net.isolated == {"vg1"} and rig.net.calls[-1] == ("release", "vg2")
    # the last change per name wins within a batch
    rig.iso.apply([("vg1", False), ("vg1", True)])
    assert rig.net.isolated == {"vg1"} and rig.net.calls[-1][0] == "isolate"


def test_interface_gone_or_elsewhere_is_harmless() -> None:
    rig = Rig(bridge(iface("vg1"), iface("vg9")), links={"vg1"})
    rig.iso.apply([("vg9", True), ("vg1", True)])          # vg9: LookupError, ignored
    rig.iso.apply([("vg9", False)])
    assert rig.net.isolated == {"vg1"}
    assert [c[:2] for c in rig.net.calls] == [("isolate", "vg9"), ("isolate", "vg1"),
                                              ("release", "vg9")]


def test_ovsdb_unreachable_is_logged_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(ConnectionError("db down"))
    assert rig.iso.retry_in() is None           # nothing pending: the worker just waits
    with caplog.at_level(logging.WARNING, "wlbridge.host.port_isolation"):
        rig.iso.apply([("vg1", True)])
        rig.iso.apply([("vg2", True)])          # within the retry interval: not asked
        assert rig.lookups == 1
        assert rig.iso.retry_in() == port_isolation.RETRY_SECONDS   # the worker wakes then
        rig.now += port_isolation.RETRY_SECONDS
        rig.iso.apply()
        assert rig.lookups == 2
    assert len([r for r in caplog.records if "db down" in r.getMessage()]) == 1
    assert rig.net.calls == []
    rig.info = bridge(iface("vg1"), iface("vg2"))
    rig.now += port_isolation.RETRY_SECONDS
    rig.iso.apply()                             # the pending ports are done now
    assert rig.net.isolated == {"vg1", "vg2"}
    assert rig.iso.retry_in() is None


def test_refusal_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(bridge(iface("vg1")), refuse={"vg1"})
    with caplog.at_level(logging.WARNING, "wlbridge.host.port_isolation"):
        rig.iso.apply([("vg1", True)])
        rig.iso.apply([("vg1", True)])
    assert len(caplog.records) == 1 and "vg1" in caplog.records[0].getMessage()
    assert [c[0] for c in rig.net.calls] == ["isolate", "isolate"]   # retried each time

    def boom(*a: Any) -> None:
        raise RuntimeError("unexpected")

    rig.net.isolate_guest_port = boom   # type: ignore[method-assign]
    rig.iso.apply([("vg1", True)])      # logged, not raised


def test_program_refused_falls_back_per_port() -> None:
    rig = Rig(bridge(iface("vg1"), iface("vg2")))

    def refuse() -> int:
        rig.loads += 1
        raise OSError(errno.EPERM, "no bpf")

    rig.iso._load_program = refuse
    rig.iso.apply([("vg1", True), ("vg2", True)])
    assert rig.loads == 1 and [c[2] for c in rig.net.calls] == [None, None]


# ---- hostnet: the program, the requests, the netlink calls -----------------------
def test_drop_all_program_is_one_verdict() -> None:
    prog = hostnet.isolation_program(())
    assert [struct.unpack("=BBhi", prog[i:i + 8])[::3] for i in range(0, len(prog), 8)] == \
        [(0xB7, hostnet.TC_ACT_SHOT), (0x95, 0)]


def test_guest_filter_is_not_mistaken_for_the_uplinks() -> None:
    for kind in ("bpf", "u32"):
        (f,) = hostnet.guest_isolation_filters(kind)
        assert not hostnet.is_isolation_filter(f)
        req = hostnet.guest_isolation_request(kind)
        assert (req["prio"], req["protocol"], req["parent"]) == (
            GUEST_ISOLATION_PRIO, hostnet.ETH_P_ALL, hostnet.CLSACT_INGRESS)
    assert hostnet.guest_isolation_request("u32")["action"] == "drop"
    assert hostnet.guest_isolation_request("bpf")["direct_action"]


class FakeIPR:
    """Qdiscs and ingress filters of a few links, as the kernel would keep them."""

    def __init__(self, links: dict[str, int], refuse: set[str] = frozenset()) -> None:
        self.links = links
        self.refuse = refuse
        self.qdisc: dict[int, str] = {}
        self.filters: dict[int, dict[int, tuple[int, str]]] = {}
        self.calls: list[tuple[Any, ...]] = []

    def link_lookup(self, ifname: str) -> list[int]:
        return [self.links[ifname]] if ifname in self.links else []

    def get_qdiscs(self, index: int) -> list[Msg]:
        return [Msg({"index": i, "parent": hostnet.TC_H_CLSACT}, {"TCA_KIND": k})
                for i, k in self.qdisc.items()]

    def get_filters(self, index: int, parent: int) -> list[Msg]:
        if index not in self.qdisc:
            raise NetlinkError(errno.EINVAL)
        if parent != hostnet.CLSACT_INGRESS:
            return []
        return [Msg({"index": index, "info": prio << 16 | socket.htons(proto)},
                    {"TCA_KIND": kind})
                for prio, (proto, kind) in self.filters.get(index, {}).items()]

    def tc(self, cmd: str, kind: str, index: int, **kw: Any) -> None:
        self.calls.append((cmd, kind, index, kw.get("fd")))
        if cmd == "add":
            if index in self.qdisc:
                raise NetlinkError(errno.EEXIST)
            self.qdisc[index] = kind
        elif cmd == "del":
            self.qdisc.pop(index)
            self.filters.pop(index, None)
        elif cmd == "add-filter":
            if kind in self.refuse:
                raise NetlinkError(errno.ENOENT)
            self.filters.setdefault(index, {})[kw["prio"]] = (kw["protocol"], kind)
        elif cmd == "del-filter":
            if kw["prio"] not in self.filters.get(index, {}):
                raise NetlinkError(errno.ENOENT)
            del self.filters[index][kw["prio"]]


def test_isolate_and_release_guest_port_with_a_shared_program() -> None:
    ipr = FakeIPR({"vg1": 5})
    net = HostNet(ipr)   # type: ignore[arg-type]
    assert len(net.isolate_guest_port("vg1", prog_fd=42)) == 2
    assert ipr.filters[5] == {GUEST_ISOLATION_PRIO: (hostnet.ETH_P_ALL, "bpf")}
    assert ("add-filter", "bpf", 5, 42) in ipr.calls
    calls = len(ipr.calls)
    assert net.isolate_guest_port("vg1", prog_fd=42) == []    # idempotent, no change
    assert len(ipr.calls) == calls
    assert net.release_guest_port("vg1") == ["guest-port filter removed from vg1",
                                             "clsact qdisc removed from vg1"]
    assert 5 not in ipr.qdisc and net.release_guest_port("vg1") == []
    assert net.release_guest_port("gone") == []
    with pytest.raises(LookupError):
        net.isolate_guest_port("gone")


def test_release_of_a_port_that_vanishes_meanwhile_is_no_error() -> None:
    """A short-lived port (the Docker plugin's lease port) can go between the filter's
    removal and the qdisc check: nothing is left to remove (issue 23)."""
    ipr = FakeIPR({"vg1": 5})
    net = HostNet(ipr)   # type: ignore[arg-type]
    net.isolate_guest_port("vg1", prog_fd=42)
    tc = ipr.tc

    def tc_then_gone(cmd: str, kind: str, index: int, **kw: Any) -> None:
        tc(cmd, kind, index, **kw)
        if cmd == "del-filter":
            ipr.links.pop("vg1", None)
    ipr.tc = tc_then_gone   # type: ignore[method-assign]
    assert net.release_guest_port("vg1") == ["guest-port filter removed from vg1"]


def test_isolate_guest_port_keeps_others_filters_and_falls_back_to_u32() -> None:
    ipr = FakeIPR({"vg1": 5}, refuse={"bpf"})
    ipr.qdisc[5] = "clsact"
    ipr.filters[5] = {7: (0x0800, "flower")}
    net = HostNet(ipr)   # type: ignore[arg-type]
    assert net.isolate_guest_port("vg1", prog_fd=42) == [
        "host stack on guest port vg1 now gets nothing (u32 filter with gact)"]
    assert ipr.filters[5] == {7: (0x0800, "flower"),
                              GUEST_ISOLATION_PRIO: (hostnet.ETH_P_ALL, "u32")}
    assert net.release_guest_port("vg1") == ["guest-port filter removed from vg1"]
    assert ipr.qdisc[5] == "clsact"              # someone else's filter is still on it


def test_isolate_guest_port_refused_leaves_nothing_behind() -> None:
    ipr = FakeIPR({"vg1": 5, "vg2": 6}, refuse={"bpf", "u32"})
    net = HostNet(ipr)   # type: ignore[arg-type]
    with pytest.raises(IsolationError):
        net.isolate_guest_port("vg1", prog_fd=42)
    assert 5 not in ipr.qdisc
    ipr.qdisc[6] = "ingress"
    with pytest.raises(IsolationError, match="ingress qdisc"):
        net.isolate_guest_port("vg2", prog_fd=42)


# ---- teardown ---------------------------------------------------------------------
class TeardownNet:
    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def link_index(self, name: str) -> int | None:
        return None if name == "wlan0" else 1     # uplink gone: nothing to move back

    def release_guest_port(self, name: str) -> list[str]:
        self.calls.append(("release", name))
        if name == self.fail:
            raise NetlinkError(errno.EPERM)
        return [f"filter removed from {name}"]


class TeardownDb:
    def __init__(self, info: ovsdb.BridgeInfo) -> None:
        self.info: ovsdb.BridgeInfo | None = info
        self.calls: list[str] = []

    def bridge_info(self, name: str) -> ovsdb.BridgeInfo | None:
        return self.info

    def delete_bridge(self, name: str) -> bool:
        self.calls.append("delete")
        self.info = None
        return True


def test_teardown_releases_former_guest_ports_after_deleting_the_bridge() -> None:
    saved = hostnet.SavedState(uplink="wlan0", mac="02:00:00:00:00:01",
                               allmulticast=False).to_json()
    db = TeardownDb(bridge(iface("vg1"), iface("vg2"), saved=saved))
    net = TeardownNet(fail="vg2")
    lines: list[str] = []
    order: list[str] = []
    db.delete_bridge = lambda name: order.append("delete") or True   # type: ignore[method-assign]
    orig = net.release_guest_port
    net.release_guest_port = lambda name: order.append(name) or orig(name)  # type: ignore
    assert bridge_teardown.teardown(db, net, "br-wl", lines.append)   # type: ignore[arg-type]
    assert order == ["delete", "vg1", "vg2"]                          # not br-wl, not wlan0
    assert "  filter removed from vg1" in lines
    assert any("warning: could not remove wlbridge's ingress filter from vg2" in line
               and f"pref {GUEST_ISOLATION_PRIO}" in line for line in lines)
