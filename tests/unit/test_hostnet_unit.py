"""Pure parts of setup/teardown: saved state, netlink parsing, options, refusals (with fakes)."""

from __future__ import annotations

import argparse
import json
import socket
import struct
from dataclasses import replace

import pytest
from fake_netlink import FakeMsg
from hostnet_fakes import MAC, FakeDb, FakeNet, bridge, opts, state
from wlbridge.cli import bridge_setup, bridge_teardown, common
from wlbridge.errors import UserError
from wlbridge.host import hostnet, ovsdb
from wlbridge.host.hostnet import Address, Route, SavedState


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bridge_setup.add_arguments(parser)
    return parser.parse_args(list(argv))


# ---- saved state --------------------------------------------------------------
def test_saved_state_round_trips_through_json() -> None:
    st = SavedState(uplink="wlan0", mac=MAC, allmulticast=True, tx_checksum={"tx-checksum-ip-generic": True},
                    addresses=[Address(4, "10.0.0.2", 24, "10.0.0.255", 0, 0x80, None, None, "wlan0"),
                               Address(6, "2001:db8::2", 64, flags=0x200, valid_lft=300,
                                       preferred_lft=100)],
                    routes=[Route(4, None, 0, "10.0.0.1", 600, 16),
                            Route(6, "2001:db8:1::", 48, "fe80::1", 1024, 9, pref=1, expires=90,
                                  metrics={"mtu": 1400})])
    again = SavedState.from_json(st.to_json())
    assert again == st
    assert again.routes[1].metrics == {"mtu": 1400}


def test_saved_state_keeps_the_uplink_ingress_decision() -> None:
    for value in (hostnet.INGRESS_OURS, hostnet.INGRESS_FOREIGN, None):
        st = replace(state(), uplink_ingress=value, tx_checksum={"tx-checksum-ipv4": True})
        assert SavedState.from_json(st.to_json()) == st
    # a state saved before the field existed still reads (and means: nothing to remove)
    old = json.loads(state().to_json())
    del old["uplink_ingress"]
    assert SavedState.from_json(json.dumps(old)).uplink_ingress is None


@pytest.mark.parametrize("text", ["", "nonsense", "[]", '{"version": 99}', '{"version": 1}'])
def test_saved_state_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        SavedState.from_json(text)


def test_unreadable_saved_state_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unreadable"):
        common.saved_state(bridge(saved="{broken"))


# ---- netlink parsing and requests ---------------------------------------------
def test_address_from_netlink() -> None:
    msg = FakeMsg({"family": socket.AF_INET, "prefixlen": 24, "scope": 0, "flags": 0},
                  {"IFA_LOCAL": "10.0.0.2", "IFA_ADDRESS": "10.0.0.2",
                   "IFA_BROADCAST": "10.0.0.255", "IFA_LABEL": "wlan0:1", "IFA_FLAGS": 0x81,
                   "IFA_CACHEINFO": {"ifa_valid": 0xFFFFFFFF, "ifa_preferred": 0xFFFFFFFF}})
    assert hostnet.address_from_nl(msg) == Address(4, "10.0.0.2", 24, "10.0.0.255", 0, 0x81,
                                                   None, None, "wlan0:1")
    msg6 = FakeMsg({"family": socket.AF_INET6, "prefixlen": 64, "scope": 0, "flags": 0},
                   {"IFA_ADDRESS": "2001:db8::2",
                    "IFA_CACHEINFO": {"ifa_valid": 300, "ifa_preferred": 100}})
    a6 = hostnet.address_from_nl(msg6)
    assert (a6.valid_lft, a6.preferred_lft, a6.broadcast) == (300, 100, None)


def test_route_from_netlink_default_and_attributes() -> None:
    msg = FakeMsg({"family": socket.AF_INET6, "dst_len": 0, "proto": 9, "scope": 0, "type": 1,
                   "table": 254, "tos": 0, "flags": 0},
                  {"RTA_GATEWAY": "fe80::1", "RTA_PRIORITY": 1024, "RTA_TABLE": 254,
                   "RTA_PREF": 1, "RTA_CACHEINFO": {"rta_expires": 60000},
                   "RTA_METRICS": {"attrs": [("RTAX_MTU", 1400)]}})
    r = hostnet.route_from_nl(msg)
    assert r.dst is None and str(r).startswith("default via fe80::1")
    assert (r.priority, r.proto, r.pref, r.expires, r.metrics) == (1024, 9, 1, 600, {"mtu": 1400})


@pytest.mark.parametrize(("addr", "movable"), [
    (Address(4, "10.0.0.2", 24), True),
    (Address(4, "169.254.3.4", 16), True),
    (Address(6, "2001:db8::2", 64), True),
    (Address(6, "fe80::1", 64), False),                      # link-local: per interface
    (Address(6, "2001:db8::abcd", 64, flags=0x01), False),   # temporary: kernel-made
])
def test_movable_addresses(addr: Address, movable: bool) -> None:
    assert hostnet.is_movable_address(addr) is movable


@pytest.mark.parametrize(("route", "movable"), [
    (Route(4, None, 0, "10.0.0.1"), True),                   # default route
    (Route(4, "10.1.0.0", 16, "10.0.0.1", proto=16), True),
    (Route(4, "10.0.0.0", 24, proto=hostnet.RTPROT_KERNEL), False),
    (Route(4, "10.1.0.0", 16, "10.0.0.1", table=100), False),
    (Route(4, "10.1.0.0", 16, type=6), False),               # prohibit
    (Route(6, "ff00::", 8), False),
])
def test_movable_routes(route: Route, movable: bool) -> None:
    assert hostnet.is_movable_route(route) is movable


def test_prefix_route_of_a_noprefixroute_address_moves() -> None:
    """NetworkManager flags its addresses noprefixroute and adds the subnet route itself,
    with proto kernel: that route moves with the address; the kernel's own does not."""
    addrs = [Address(4, "10.0.0.5", 24, flags=hostnet.IFA_F_NOPREFIXROUTE),
             Address(4, "10.9.0.5", 24), Address(6, "2001:db8::5", 64, flags=0x200)]
    noprefix = hostnet.noprefix_networks(addrs)
    assert noprefix == {(4, "10.0.0.0", 24), (6, "2001:db8::", 64)}
    nm_route = Route(4, "10.0.0.0", 24, proto=hostnet.RTPROT_KERNEL, scope=253, priority=100)
    assert hostnet.is_movable_route(nm_route, noprefix)
    assert not hostnet.is_movable_route(nm_route)
    assert not hostnet.is_movable_route(Route(4, "10.9.0.0", 24, proto=hostnet.RTPROT_KERNEL),
                                        noprefix)
    assert hostnet.is_movable_route(Route(6, "2001:db8::", 64, proto=hostnet.RTPROT_KERNEL),
                                    noprefix)


class _RecordingIpr:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def addr(self, cmd: str, **kw: object) -> None:
        self.calls.append(("addr " + cmd, kw))

    def route(self, cmd: str, **kw: object) -> None:
        self.calls.append(("route " + cmd, kw))


def test_move_adds_link_routes_before_routes_via_a_gateway() -> None:
    """A route via a gateway cannot be added before the route to the gateway's subnet
    ("Network is unreachable"), whatever order the kernel listed them in."""
    net = hostnet.HostNet.__new__(hostnet.HostNet)
    net.ipr = _RecordingIpr()
    net.link_index = lambda name: None                       # the source is gone
    net._index = lambda name: 7
    net.addresses = lambda name: []
    net.routes = lambda name: []
    via = Route(4, "198.18.0.0", 24, "10.0.0.1", priority=100, proto=16)
    link = Route(4, "10.0.0.0", 24, priority=100, proto=hostnet.RTPROT_KERNEL, scope=253)
    state = hostnet.SavedState(uplink="wlan0", mac="02:00:00:00:00:01", allmulticast=False,
                               addresses=[Address(4, "10.0.0.5", 24, flags=0x200)],
                               routes=[via, link])
    net.move(state, "wlan0", "br-wl")
    added = [kw.get("dst") for call, kw in net.ipr.calls if call == "route replace"]
    assert added == ["10.0.0.0", "198.18.0.0"]


def test_labels_follow_the_interface() -> None:
    assert hostnet.retarget_label("wlan0", "wlan0", "br-wl") is None
    assert hostnet.retarget_label("wlan0:1", "wlan0", "br-wl") == "br-wl:1"
    assert hostnet.retarget_label("wlp2s0:abcdefgh", "wlp2s0", "br-wlan0x") is None  # > 15
    assert hostnet.retarget_label(None, "wlan0", "br-wl") is None


def test_address_kwargs_keep_user_flags_and_lifetimes() -> None:
    a = Address(6, "2001:db8::2", 64, flags=0x80 | 0x200 | 0x40, valid_lft=300,
                preferred_lft=500)
    kw = hostnet.address_kwargs(a, 7, nodad=True)
    assert kw["flags"] == 0x200 | hostnet.IFA_F_NODAD        # permanent/tentative dropped
    assert (kw["valid_lft"], kw["preferred_lft"]) == (300, 300)
    kw4 = hostnet.address_kwargs(Address(4, "10.0.0.2", 24, "10.0.0.255", flags=0x80), 7,
                                 label="br-wl:1", nodad=True)
    assert "flags" not in kw4 and "valid_lft" not in kw4
    assert (kw4["broadcast"], kw4["label"], kw4["family"]) == ("10.0.0.255", "br-wl:1",
                                                              socket.AF_INET)


def test_route_kwargs_full_and_for_delete() -> None:
    r = Route(6, None, 0, "fe80::1", 1024, 9, prefsrc="2001:db8::2", pref=1, expires=90,
              metrics={"mtu": 1400}, flags=4)
    full = hostnet.route_kwargs(r, 5)
    assert "dst" not in full and full["dst_len"] == 0 and full["oif"] == 5
    assert full["expires"] == struct.pack("=I", 90) and full["metrics"] == {"mtu": 1400}
    assert (full["proto"], full["flags"], full["prefsrc"]) == (9, 4, "2001:db8::2")
    short = hostnet.route_kwargs(r, 5, full=False)
    assert set(short) == {"family", "dst_len", "oif", "table", "tos", "gateway", "priority"}


# ---- options ------------------------------------------------------------------
def test_option_defaults() -> None:
    args = parse("--uplink", "wlan0")
    assert (args.bridge, args.controller, args.db, args.datapath) == ("br-wl", None, None, None)
    # the bridge listens on a root-only Unix socket; the controller connects to it
    assert bridge_setup.options_from_args(args, lambda: False).controller == \
        "punix:/var/run/openvswitch/br-wl.controller"
    args = parse("--uplink", "wlan0", "--bridge", "br2", "--db", "unix:/run/ovs/db.sock")
    assert bridge_setup.options_from_args(args, lambda: False).controller == \
        "punix:/run/ovs/br2.controller"
    assert bridge_setup.options_from_args(args, lambda: False).datapath == "netdev"
    assert bridge_setup.options_from_args(args, lambda: True).datapath == "system"
    assert bridge_setup.options_from_args(args, lambda: True).packet_in_rate == 1000


def test_option_refusals() -> None:
    with pytest.raises(UserError, match="kernel module"):
        bridge_setup.options_from_args(parse("--uplink", "wlan0", "--datapath", "system"),
                                       lambda: False)
    with pytest.raises(UserError, match="at least 100"):
        bridge_setup.options_from_args(parse("--uplink", "wlan0", "--packet-in-rate", "50"))
    with pytest.raises(UserError, match="not the bridge"):
        bridge_setup.options_from_args(parse("--uplink", "br-wl"))
    assert bridge_setup.options_from_args(
        parse("--uplink", "wlan0", "--packet-in-rate", "0")).packet_in_rate == 0
    with pytest.raises(UserError, match="any host.*nothing changed"):
        bridge_setup.options_from_args(parse("--uplink", "wlan0", "--controller", "ptcp:6653"))


def test_setup_again_gives_an_old_bridge_the_passive_target() -> None:
    """A bridge set up when the bridge connected to the controller (tcp:) is switched to
    the passive target by running setup again; its packet-in limit stays."""
    net = FakeNet({"wlan0": {}, "br-wl": {}})
    db = FakeDb([bridge(controller="tcp:127.0.0.1:6653")], net=net)
    lines: list[str] = []
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert ("set_controller", "br-wl", bridge_setup.DEFAULT_CONTROLLER) in db.calls
    assert [c.target for c in db.bridges["br-wl"].controllers] == [
        bridge_setup.DEFAULT_CONTROLLER]
    assert db.bridges["br-wl"].controllers[0].rate_limit == 1000
    assert any("was tcp:127.0.0.1:6653" in line for line in lines), lines
    db.calls.clear()
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert not any(c[0] == "set_controller" for c in db.calls)


def test_bridge_spec() -> None:
    spec = bridge_setup.bridge_spec(opts(datapath="netdev"), state())
    assert (spec.protocols, spec.fail_mode, spec.datapath_type) == (("OpenFlow13",), "secure",
                                                                    "netdev")
    assert spec.other_config == {"hwaddr": MAC, "disable-in-band": "true"}
    assert (spec.controller, spec.connection_mode, spec.rate_limit, spec.burst_limit) == (
        "punix:/var/run/openvswitch/br-wl.controller", "out-of-band", 1000, 250)
    assert spec.ports[0].iface_external_ids == {"wlbridge-role": "uplink"}
    assert SavedState.from_json(spec.external_ids["wlbridge-saved"]) == state()
    unlimited = bridge_setup.bridge_spec(opts(packet_in_rate=0), state())
    assert unlimited.rate_limit is None and unlimited.burst_limit is None


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="must be run as root"):
        bridge_setup.main(parse("--uplink", "wlan0"))
    monkeypatch.setattr(common, "geteuid", lambda: 0)
    common.require_root("setup")


def test_default_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ovsdb.REMOTE_ENV, raising=False)
    assert ovsdb.default_remote() == "unix:/var/run/openvswitch/db.sock"
    monkeypatch.setenv(ovsdb.REMOTE_ENV, "unix:/tmp/x.sock")
    assert ovsdb.default_remote() == "unix:/tmp/x.sock"


def test_unreachable_ovsdb_message() -> None:
    with pytest.raises(ovsdb.OvsdbUnavailable,
                       match=r"Open vSwitch is not running \(cannot connect to unix:/nonexist"):
        ovsdb.connect("unix:/nonexistent/db.sock", timeout=1)


def test_bridge_info_uplink_and_managed() -> None:
    info = bridge()
    assert info.uplink == "wlan0" and info.managed
    assert bridge(uplink=None, managed=False).uplink is None
    assert not bridge(managed=False).managed


# ---- refusal logic (nothing may be changed) -----------------------------------
@pytest.mark.parametrize(("links", "bridges", "message"), [
    ({}, [], "uplink wlan0 does not exist"),
    ({"wlan0": {}}, [bridge("br-other")], "already belongs to Open vSwitch bridge br-other"),
    ({"wlan0": {"master": ("br0", "bridge")}}, [], "enslaved to br0 (bridge)"),
    ({"wlan0": {}, "br-wl": {}}, [], "exists and is not an Open vSwitch bridge"),
    ({"wlan0": {}}, [bridge(uplink=None, managed=False)], "not created by wlbridge"),
    ({"wlan0": {}, "wlan1": {}}, [bridge(uplink="wlan1")], "already set up for uplink wlan1"),
])
def test_setup_refusals(links: dict, bridges: list, message: str) -> None:
    db, net = FakeDb(bridges), FakeNet(links)
    with pytest.raises(UserError) as exc:
        bridge_setup.setup(db, net, opts(), out=lambda line: None)
    assert message in str(exc.value) and "nothing changed" in str(exc.value)
    assert db.calls == [] and net.calls == []


def test_setup_checks_pass_for_ovs_master() -> None:
    net = FakeNet({"wlan0": {"master": ("ovs-system", "openvswitch")}})
    assert bridge_setup.check(FakeDb(), net, opts()) is None


def test_setup_rolls_back_when_vswitchd_rejects_the_uplink() -> None:
    db, net = FakeDb(iface_error="could not open network device wlan0"), FakeNet({"wlan0": {}})
    with pytest.raises(UserError, match="could not open network device.*nothing changed"):
        bridge_setup.setup(db, net, opts(), out=lambda line: None)
    assert [c[0] for c in db.calls] == ["create", "delete"]
    assert not any(c[0] == "move" for c in net.calls)


def test_setup_fresh_then_again_is_a_no_op() -> None:
    net = FakeNet({"wlan0": {}})
    db = FakeDb(net=net)
    lines: list[str] = []
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert [c[0] for c in db.calls] == ["create"]
    assert ("allmulti", "wlan0", True) in net.calls
    assert any("address moved" in line for line in lines)

    net.calls.clear()
    lines.clear()
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert [c[0] for c in db.calls] == ["create"]           # nothing created again
    assert ("snapshot", "wlan0") not in net.calls           # saved state not re-taken
    assert "nothing changed" in lines[0]


def test_teardown_nothing_to_do_and_refusal() -> None:
    lines: list[str] = []
    assert bridge_teardown.teardown(FakeDb(), FakeNet({}), "br-wl", lines.append) is False
    assert "nothing to do" in lines[0]
    with pytest.raises(UserError, match="not created by wlbridge"):
        bridge_teardown.teardown(FakeDb([bridge(managed=False)]), FakeNet({}), "br-wl")


def test_teardown_restores_then_deletes() -> None:
    db = FakeDb([bridge()])
    net = FakeNet({"wlan0": {"allmulti": True}, "br-wl": {}})
    assert bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None) is True
    assert net.calls == [("move", "br-wl", "wlan0"), ("allmulti", "wlan0", False)]
    assert db.calls == [("delete", "br-wl")]


def test_teardown_with_uplink_gone_still_removes_bridge() -> None:
    db = FakeDb([bridge()])
    lines: list[str] = []
    assert bridge_teardown.teardown(db, FakeNet({"br-wl": {}}), "br-wl", lines.append)
    assert db.calls == [("delete", "br-wl")]
    assert any("192.168.1.5/24" in line for line in lines)


def test_move_adds_link_routes_before_routes_through_a_gateway() -> None:
    """dhcpcd's address has no prefix route (noprefixroute: dhcpcd adds its own, listed
    after the default route): the gateway is unreachable on the destination until the link
    route is there (the kernel says "Network is unreachable")."""
    from wlbridge.host.hostnet import HostNet

    class Ipr:
        def __init__(self) -> None:
            self.link_routes: set[int] = set()
            self.calls: list[tuple] = []

        def link_lookup(self, ifname: str) -> list[int]:
            return [{"wlan0": 2, "br-wl": 7}[ifname]]

        def route(self, cmd: str, **kw) -> None:
            self.calls.append((cmd, kw.get("dst"), kw.get("gateway")))
            if cmd == "replace" and kw.get("gateway") and kw["oif"] not in self.link_routes:
                raise OSError(101, "Network is unreachable")
            if cmd == "replace":
                self.link_routes.add(kw["oif"])

    net = HostNet(Ipr())
    net.addresses = lambda name: []            # type: ignore[method-assign]
    net.routes = lambda name: []               # type: ignore[method-assign]
    default = Route(4, None, 0, "10.0.0.1", 1034, 16, prefsrc="10.0.0.5")
    subnet = Route(4, "10.0.0.0", 24, None, 1034, 16, scope=253, prefsrc="10.0.0.5")
    st = SavedState(uplink="wlan0", mac="02:00:00:00:00:01", allmulticast=False,
                    addresses=[], routes=[default, subnet])
    net.move(st, "wlan0", "br-wl")
    assert [c[1:] for c in net.ipr.calls if c[0] == "replace"] == [("10.0.0.0", None),
                                                                   (None, "10.0.0.1")]
