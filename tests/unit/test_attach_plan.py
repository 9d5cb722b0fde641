"""`wlbridge attach`: names, refusals and the plan (pure), the rollback of `execute` with
a failure injected at every step, and the controller's reaping of vanished attached ports."""

from __future__ import annotations

from typing import Any

import pytest
from test_port_isolation_unit import FakeHostNet, bridge
from wlbridge.errors import UserError
from wlbridge.host import attach, ovsdb
from wlbridge.host.attach import AttachError, Facts, Request, make_plan
from wlbridge.host.port_isolation import GuestPortIsolation


def req(**kw: Any) -> Request:
    base: dict[str, Any] = {"name": "c1", "bridge": "br-wl", "netns": "c1ns"}
    return Request(**{**base, **kw})


def facts(**kw: Any) -> Facts:
    base: dict[str, Any] = {"bridge_exists": True, "netdev": True, "netns_ok": True}
    return Facts(**{**base, **kw})


# ---- names -----------------------------------------------------------------------
def test_port_names_are_stable_short_and_distinct() -> None:
    assert attach.port_name("c1") == "wl-c1" and attach.peer_name("c1") == "wp-c1"
    assert attach.port_name("web-frontend") == "wl-web-frontend"      # exactly 15
    long_a, long_b = "database-primary", "database-replica"
    names = {attach.port_name(n) for n in (long_a, long_b)}
    assert len(names) == 2 and all(len(n) <= 15 for n in names)
    assert attach.port_name(long_a) == attach.port_name(long_a)
    assert attach.peer_name(long_a) != attach.port_name(long_a)


@pytest.mark.parametrize("kw, words", [
    ({"name": "bad name"}, "guest name"),
    ({"name": "-x"}, "guest name"),
    ({"netns": None}, "exactly one of"),
    ({"pid": 42}, "exactly one of"),
    ({"netns": None, "pid": 1}, "not 1"),
    ({"addresses": ("10.0.0.5",)}, "want ADDR/PLEN"),
    ({"addresses": ("10.0.0.300/24",)}, "not an IPv4 or IPv6"),
    ({"addresses": ("224.0.0.5/24",)}, "cannot be a guest's"),
    ({"dhcp": True, "addresses": ("10.0.0.5/24",)}, "exclude each other"),
    ({"gateways": ("10.0.0.1", "10.0.0.2")}, "at most one IPv4"),
    ({"dns": ("dns.example",)}, "not an IP address"),
    ({"ifname": "a/b"}, "not an interface name"),
    ({"mac": "01:00:5e:00:00:01"}, "not a unicast MAC"),
    ({"mac": "nope"}, "not a unicast MAC"),
])
def test_bad_requests_are_refused_in_one_line(kw: dict, words: str) -> None:
    with pytest.raises(UserError) as exc:
        make_plan(req(**kw), facts())
    assert words in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).endswith("nothing changed")


# ---- the plan --------------------------------------------------------------------
def test_plan_of_a_new_dhcp_guest() -> None:
    plan = make_plan(req(dhcp=True), facts())
    assert plan.steps == ("veth", "offload", "move", "resolv", "port", "dhcp")
    assert plan.port == "wl-c1" and plan.netns_path == "/run/netns/c1ns"
    assert plan.resolv == "/etc/netns/c1ns/resolv.conf"
    assert plan.external_ids == {attach.GUEST_KEY: "c1", attach.NETNS_KEY: "netns:c1ns",
                                 attach.ADDRESSING_KEY: "dhcp",
                                 attach.RESOLV_KEY: "/etc/netns/c1ns/resolv.conf",
                                 attach.MAC_KEY: attach.guest_mac("c1")}


def test_the_guest_mac_is_stable_unicast_and_local_unless_given() -> None:
    mac = attach.guest_mac("c1")
    assert mac == attach.guest_mac("c1") != attach.guest_mac("c2")
    assert int(mac[:2], 16) & 0x03 == 0x02          # unicast, locally administered
    given = make_plan(req(mac="52:54:00:AA:BB:CC"), facts())
    assert given.external_ids[attach.MAC_KEY] == "52:54:00:aa:bb:cc"


def test_plan_of_a_static_guest_on_the_kernel_datapath() -> None:
    plan = make_plan(req(addresses=("10.0.0.5/24", "fd00::5/64")), facts(netdev=False))
    assert plan.steps == ("veth", "move", "addresses", "port")
    assert plan.external_ids[attach.ADDRESSING_KEY] == "10.0.0.5/24,fd00::5/64"
    assert attach.RESOLV_KEY not in plan.external_ids


def test_a_pid_sharing_the_hosts_mounts_never_gets_a_resolv_conf() -> None:
    own = make_plan(req(netns=None, pid=4242, dhcp=True), facts())
    assert own.resolv == "/proc/4242/root/etc/resolv.conf" and "resolv" in own.steps
    shared = make_plan(req(netns=None, pid=4242, dhcp=True), facts(shares_host_mounts=True))
    assert shared.resolv is None and "resolv" not in shared.steps
    assert shared.netns_path == "/proc/4242/ns/net"


def test_attaching_again_as_before_only_restarts_what_is_missing() -> None:
    first = make_plan(req(dhcp=True), facts())
    ids = {**first.external_ids, attach.MAC_KEY: "02:00:00:00:00:01"}
    again = make_plan(req(dhcp=True), facts(port_ids=ids, port_bridge="br-wl",
                                            link_exists=True))
    assert again.already and again.steps == ("dhcp",)
    static = make_plan(req(addresses=("10.0.0.5/24",)), facts())
    assert make_plan(req(addresses=("10.0.0.5/24",)), facts(
        port_ids=static.external_ids, port_bridge="br-wl", link_exists=True)).steps == ()


@pytest.mark.parametrize("f, words", [
    (facts(bridge_exists=False), "bridge br-wl does not exist"),
    (facts(netns_ok=False), "no such network namespace"),
    (facts(link_exists=True), "is not a wlbridge guest port"),
    (facts(port_ids={}, port_bridge="br-wl", link_exists=True), "not attached by wlbridge"),
    (facts(port_ids={attach.GUEST_KEY: "other"}, port_bridge="br-wl", link_exists=True),
     "belongs to guest other"),
    (facts(port_ids={attach.GUEST_KEY: "c1", attach.NETNS_KEY: "netns:c1ns",
                     attach.ADDRESSING_KEY: "10.0.0.9/24"}, port_bridge="br-wl",
           link_exists=True), "already attached otherwise"),
    (facts(port_ids={attach.GUEST_KEY: "c1", attach.NETNS_KEY: "netns:c1ns",
                     attach.ADDRESSING_KEY: "dhcp"}, port_bridge="br-wl",
           link_exists=False), "its interface is gone"),
    (facts(port_ids={attach.GUEST_KEY: "c1"}, port_bridge="br-other", link_exists=True),
     "attached to bridge br-other"),
])
def test_what_the_host_has_can_refuse(f: Facts, words: str) -> None:
    with pytest.raises(UserError) as exc:
        make_plan(req(dhcp=True), f)
    assert words in str(exc.value) and str(exc.value).endswith("nothing changed")


# ---- rollback --------------------------------------------------------------------
class Ops:
    def __init__(self, fail_at: str | None = None, undo_fails: str | None = None) -> None:
        self.fail_at, self.undo_fails = fail_at, undo_fails
        self.log: list[tuple[str, str]] = []

    def do(self, step: str, plan: Any, done: Any) -> None:
        self.log.append(("do", step))
        if step == self.fail_at:
            raise OSError(f"{step} broke")

    def undo(self, step: str, plan: Any, done: Any) -> None:
        self.log.append(("undo", step))
        if step == self.undo_fails:
            raise OSError("undo broke")


PLAN = make_plan(req(dhcp=True), facts())


def test_execute_runs_every_step_in_order() -> None:
    ops = Ops()
    done = attach.execute(PLAN, ops)
    assert done.steps == list(PLAN.steps)
    assert ops.log == [("do", s) for s in PLAN.steps]


@pytest.mark.parametrize("k", range(len(PLAN.steps)))
def test_a_failing_step_undoes_every_earlier_one_newest_first(k: int) -> None:
    ops = Ops(fail_at=PLAN.steps[k])
    with pytest.raises(AttachError) as exc:
        attach.execute(PLAN, ops)
    before = list(PLAN.steps[:k])
    assert ops.log == ([("do", s) for s in before] + [("do", PLAN.steps[k])]
                       + [("undo", s) for s in reversed(before)])
    assert f"failed at {PLAN.steps[k]} ({PLAN.steps[k]} broke); rolled back" in str(exc.value)


def test_a_failing_undo_is_reported_and_the_rest_still_undone() -> None:
    ops = Ops(fail_at="dhcp", undo_fails="resolv")
    with pytest.raises(AttachError) as exc:
        attach.execute(PLAN, ops)
    assert ("undo", "veth") in ops.log
    assert "rolling back did not finish (undoing resolv: undo broke)" in str(exc.value)


# ---- the controller reaps vanished attached ports ----------------------------------
class ReapNet(FakeHostNet):
    def link_index(self, name: str) -> int | None:
        return 7 if name in self.links else None


def attached(name: str) -> ovsdb.InterfaceInfo:
    return ovsdb.InterfaceInfo(name, "", {attach.GUEST_KEY: name[3:]}, 3, None)


def reap_rig(links: set[str]) -> tuple[GuestPortIsolation, ReapNet, list]:
    reaped: list = []
    info = bridge(attached("wl-c1"), ovsdb.InterfaceInfo("vg1", "", {}, 4, None))
    net = ReapNet(links)
    iso = GuestPortIsolation(
        "br-wl", "wlan0", "unix:db", bridge_info=lambda n, r: info,
        hostnet_factory=lambda: net, load_program=lambda: -7,
        reap=lambda b, r, gone: reaped.append((b, r, gone)) or ["reaped"])
    return iso, net, reaped


def test_an_attached_port_whose_interface_vanished_is_reaped_on_its_event() -> None:
    iso, net, reaped = reap_rig({"wl-c1", "vg1"})
    iso.apply([("wl-c1", True), ("vg1", True)])
    assert reaped == []                                   # both interfaces exist
    net.links -= {"wl-c1", "vg1"}                         # the namespace is gone
    iso.apply([("wl-c1", True), ("vg1", False)])          # userspace datapath: a MODIFY
    assert reaped == [("br-wl", "unix:db", [("wl-c1", {attach.GUEST_KEY: "c1"})])]
    iso.apply([("wl-c1", False)])                         # reaped once
    assert len(reaped) == 1


def test_attached_ports_that_vanished_before_the_controller_started_are_reaped() -> None:
    iso, _, reaped = reap_rig({"vg1"})
    iso.apply([("vg1", True)])                            # the first read of the bridge
    assert reaped == [("br-wl", "unix:db", [("wl-c1", {attach.GUEST_KEY: "c1"})])]


# ---- the namespace's resolv.conf, never the host's ----------------------------------
def test_resolv_conf_is_never_written_through_a_symlink_or_into_the_hosts_file(tmp_path) -> None:
    from wlbridge.host.guest_dhcp import resolv_writable, write_resolv

    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    guest = tmp_path / "etc"
    guest.mkdir()
    own = guest / "resolv.conf"
    write_resolv(str(own), "nameserver 10.0.0.1\n", host=str(host))       # a new file
    write_resolv(str(own), "nameserver 10.0.0.2\n", host=str(host))       # in place
    assert own.read_text() == "nameserver 10.0.0.2\n"
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "resolv.conf").hardlink_to(host)       # a container sharing the host's /etc
    link = tmp_path / "linked"
    link.mkdir()
    (link / "resolv.conf").symlink_to(host)          # would resolve in the host's tree
    linked_dir = tmp_path / "linked-dir"
    linked_dir.symlink_to(shared)
    for path in (shared / "resolv.conf", link / "resolv.conf", linked_dir / "resolv.conf"):
        assert not resolv_writable(str(path), host=str(host))
        with pytest.raises(OSError):
            write_resolv(str(path), "nameserver 10.0.0.3\n", host=str(host))
    assert host.read_text() == "nameserver 192.0.2.53\n"


def test_a_containers_resolv_conf_is_written_but_never_removed() -> None:
    plan = make_plan(req(netns=None, pid=4242, dns=("10.0.0.1",)), facts())
    assert "resolv" in plan.steps and attach.RESOLV_KEY not in plan.external_ids
    attach.remove_resolv("/proc/4242/root/etc/resolv.conf")       # a no-op, whatever exists


# ---- a runtime's namespace by path, the LAN check, the controller (the plugins' needs) --
def test_a_namespace_by_path_has_no_resolv_conf_and_carries_the_plugins_labels() -> None:
    plan = make_plan(req(netns=None, nspath="/run/netns/cni-1", dhcp=True,
                         labels=(("wlbridge-cni", "abc/eth0"),)), facts())
    assert plan.netns_path == "/run/netns/cni-1" and plan.resolv is None
    assert "resolv" not in plan.steps and plan.external_ids["wlbridge-cni"] == "abc/eth0"
    assert plan.external_ids[attach.NETNS_KEY] == "path:/run/netns/cni-1"
    with pytest.raises(UserError, match="not absolute"):
        make_plan(req(netns=None, nspath="cni-1"), facts())
    with pytest.raises(UserError, match="exactly one of"):
        make_plan(req(nspath="/run/netns/cni-1"), facts())


@pytest.mark.parametrize("addr, lan, refused", [
    ("192.168.1.60/24", ("192.168.1.2/24",), False),
    ("10.9.0.5/24", ("192.168.1.2/24",), True),
    ("10.9.0.5/24", (), False),                                 # no LAN address known
    ("fd00::60/64", ("192.168.1.2/24",), False),                 # no IPv6 network known
    ("fd01::60/64", ("fd00::2/64",), True),
    ("fe80::60/64", ("fd00::2/64",), False),                     # link-local is on every LAN
])
def test_a_static_address_outside_the_lan_is_refused(addr: str, lan: tuple[str, ...],
                                                     refused: bool) -> None:
    if refused:
        with pytest.raises(UserError, match="outside the LAN"):
            make_plan(req(addresses=(addr,)), facts(lan=lan))
    else:
        assert "addresses" in make_plan(req(addresses=(addr,)), facts(lan=lan)).steps


def test_a_plugin_is_refused_without_a_running_controller() -> None:
    with pytest.raises(UserError, match="no controller"):
        make_plan(req(need_controller=True), facts(controller=False))
    assert make_plan(req(need_controller=True), facts(controller=True)).steps
    assert make_plan(req(), facts(controller=False)).steps     # `wlbridge attach` does not


def test_the_dhcp_keeper_starts_its_client_afresh_after_the_port_was_bounced(tmp_path) -> None:
    from wlbridge.host.guest_dhcp import bounced, port_up

    (tmp_path / "vb-c1").mkdir()
    flags = tmp_path / "vb-c1" / "flags"
    flags.write_text("0x1003\n")
    assert port_up("vb-c1", str(tmp_path)) is True
    flags.write_text("0x1002\n")
    assert port_up("vb-c1", str(tmp_path)) is False
    assert port_up("gone", str(tmp_path)) is None
    state, seen = "unknown", []
    # not up yet when the keeper starts (no bounce), up, down, briefly unreadable, up again
    for up in (False, None, True, False, None, False, True, True):
        state, afresh = bounced(state, up)
        seen.append(afresh)
    assert seen == [False, False, False, False, False, False, True, False]
