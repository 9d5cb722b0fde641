"""Pure parts of setup/teardown: saved state, netlink parsing, options, refusals (with fakes)."""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
from dataclasses import replace
from typing import Any

import pytest
from wlbridge import bridge_setup, bridge_teardown, hostnet, ovsdb
from wlbridge.cli import UserError
from wlbridge.hostnet import Address, Route, SavedState

MAC = "02:aa:bb:cc:dd:01"


# ---- fakes --------------------------------------------------------------------
class FakeMsg(dict):
    """Enough of a pyroute2 message: fields by key, NLAs by get_attr."""

    def __init__(self, fields: dict[str, Any], attrs: dict[str, Any]) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def state(uplink: str = "wlan0") -> SavedState:
    return SavedState(uplink=uplink, mac=MAC, allmulticast=False,
                      addresses=[Address(4, "192.168.1.5", 24, "192.168.1.255", label=uplink)],
                      routes=[Route(4, None, 0, "192.168.1.1", proto=16)])


class FakeNet:
    def __init__(self, links: dict[str, dict[str, Any]]) -> None:
        self.links = links
        self.calls: list[tuple[Any, ...]] = []

    def link_index(self, name: str) -> int | None:
        return list(self.links).index(name) + 1 if name in self.links else None

    def master(self, name: str) -> tuple[str, str] | None:
        return self.links[name].get("master")

    def snapshot(self, name: str) -> SavedState:
        self.calls.append(("snapshot", name))
        return state(name)

    def get_tx_checksum(self, name: str) -> dict[str, bool] | None:
        return None

    def wait_for_link(self, name: str, timeout: float = 0) -> int:
        return self.link_index(name) or 0

    def get_mac(self, name: str) -> str:
        return self.links[name].get("mac", MAC)

    def flags(self, name: str) -> int:
        return hostnet.IFF_UP

    def get_allmulticast(self, name: str) -> bool:
        return self.links[name].get("allmulti", False)

    def set_allmulticast(self, name: str, on: bool) -> None:
        self.calls.append(("allmulti", name, on))
        self.links[name]["allmulti"] = on

    def move(self, st: SavedState, src: str, dst: str, nodad: bool = False) -> list[str]:
        self.calls.append(("move", src, dst))
        return self.links[dst].pop("pending", [])

    # uplink ingress: "absent", "ours", "foreign", "ingress"; "refuse": isolate_uplink fails
    def ingress_status(self, name: str) -> str:
        status = self.links[name].get("ingress", "absent")
        return "absent" if status == "refuse" else status

    def isolate_uplink(self, name: str) -> list[str]:
        self.calls.append(("isolate", name))
        status = self.links[name].get("ingress", "absent")
        if status == "refuse":
            raise hostnet.IsolationError("the kernel refused both filters")
        self.links[name]["ingress"] = "ours"
        return [] if status == "ours" else [f"filter added to {name}"]

    def release_uplink(self, name: str) -> list[str]:
        self.calls.append(("release", name))
        return [f"filter removed from {name}"] if self.links[name].pop("ingress", None) else []


def bridge(name: str = "br-wl", uplink: str | None = "wlan0", managed: bool = True,
           saved: str | None = None) -> ovsdb.BridgeInfo:
    ports = [ovsdb.PortInfo(name, (ovsdb.InterfaceInfo(name, "internal", {}, 65534, None),))]
    if uplink:
        ports.append(ovsdb.PortInfo(uplink, (ovsdb.InterfaceInfo(
            uplink, "", {ovsdb.ROLE_KEY: ovsdb.ROLE_UPLINK}, 1, None),)))
    ext = {}
    if managed:
        ext = {ovsdb.OWNER_KEY: uplink or "wlan0",
               ovsdb.SAVED_KEY: saved if saved is not None else state().to_json()}
    ctl = ovsdb.ControllerInfo(bridge_setup.DEFAULT_CONTROLLER, "out-of-band", 1000, 250, False)
    return ovsdb.BridgeInfo(name, "netdev", ("OpenFlow13",), "secure", (ctl,),
                            {"hwaddr": MAC}, ext, tuple(ports))


class FakeDb:
    def __init__(self, bridges: list[ovsdb.BridgeInfo] = (), iface_error: str | None = None,
                 net: FakeNet | None = None) -> None:
        self.bridges = {b.name: b for b in bridges}
        self.net = net
        self.iface_error = iface_error
        self.calls: list[tuple[Any, ...]] = []

    def port_bridge(self, port: str) -> str | None:
        return next((b.name for b in self.bridges.values()
                     if any(p.name == port for p in b.ports)), None)

    def bridge_info(self, name: str) -> ovsdb.BridgeInfo | None:
        return self.bridges.get(name)

    def create_bridge(self, spec: ovsdb.BridgeSpec) -> None:
        self.calls.append(("create", spec))
        if self.net is not None:     # ovs-vswitchd creates the internal port
            self.net.links[spec.name] = {"pending": ["address moved"]}
        self.bridges[spec.name] = bridge(spec.name, spec.ports[0].name,
                                         saved=spec.external_ids[ovsdb.SAVED_KEY])

    def wait_interface(self, name: str, timeout: float = 0) -> ovsdb.InterfaceInfo:
        err = self.iface_error
        return ovsdb.InterfaceInfo(name, "", {}, -1 if err else 1, err)

    def delete_bridge(self, name: str) -> bool:
        self.calls.append(("delete", name))
        return self.bridges.pop(name, None) is not None


def opts(**kw: Any) -> bridge_setup.SetupOptions:
    return bridge_setup.SetupOptions(uplink=kw.pop("uplink", "wlan0"), **kw)


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
        bridge_setup.saved_state(bridge(saved="{broken"))


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
    assert (args.bridge, args.controller, args.db, args.datapath) == (
        "br-wl", "tcp:127.0.0.1:6653", None, None)
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


def test_bridge_spec() -> None:
    spec = bridge_setup.bridge_spec(opts(datapath="netdev"), state())
    assert (spec.protocols, spec.fail_mode, spec.datapath_type) == (("OpenFlow13",), "secure",
                                                                    "netdev")
    assert spec.other_config == {"hwaddr": MAC, "disable-in-band": "true"}
    assert (spec.controller, spec.connection_mode, spec.rate_limit, spec.burst_limit) == (
        "tcp:127.0.0.1:6653", "out-of-band", 1000, 250)
    assert spec.ports[0].iface_external_ids == {"wlbridge-role": "uplink"}
    assert SavedState.from_json(spec.external_ids["wlbridge-saved"]) == state()
    unlimited = bridge_setup.bridge_spec(opts(packet_in_rate=0), state())
    assert unlimited.rate_limit is None and unlimited.burst_limit is None


def test_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge_setup, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="must be run as root"):
        bridge_setup.main(parse("--uplink", "wlan0"))
    monkeypatch.setattr(bridge_setup, "geteuid", lambda: 0)
    bridge_setup.require_root("setup")


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


# ---- uplink isolation (userspace datapath) -------------------------------------
BPF_ALL, U32_ALL = hostnet.isolation_filters("bpf"), hostnet.isolation_filters("u32")
FOREIGN_FILTER = (1, 0x0800, "u32")


@pytest.mark.parametrize(("kind", "ingress", "egress", "status"), [
    (None, [], [], "absent"),
    ("ingress", [], [], "ingress"),                              # ovs-vswitchd deletes those
    ("clsact", BPF_ALL, [], "ours"),
    ("clsact", U32_ALL, [], "ours"),
    ("clsact", sorted(U32_ALL)[:2], [], "partial"),              # e.g. a crash half-way
    ("clsact", [], [], "foreign"),                               # an empty qdisc: someone's
    ("clsact", [*BPF_ALL, FOREIGN_FILTER], [], "foreign"),
    ("clsact", BPF_ALL, [FOREIGN_FILTER], "foreign"),            # egress in use
    ("clsact", [(hostnet.ISOLATION_PRIO, 0x0800, "bpf")], [], "foreign"),  # our prio only
])
def test_ingress_status(kind: str | None, ingress: list, egress: list, status: str) -> None:
    assert hostnet.ingress_status(kind, ingress, egress) == status


def test_ingress_plan_leaves_foreign_qdiscs_alone() -> None:
    assert hostnet.ingress_plan("absent") == hostnet.INGRESS_OURS
    assert hostnet.ingress_plan("ours") == hostnet.INGRESS_OURS       # a leftover: adopted
    assert hostnet.ingress_plan("partial") == hostnet.INGRESS_OURS
    assert hostnet.ingress_plan("foreign") == hostnet.INGRESS_FOREIGN


def test_isolation_filters_pass_eapol_below_the_drop() -> None:
    (drop,) = BPF_ALL
    assert drop == (hostnet.ISOLATION_PRIO, hostnet.ETH_P_ALL, "bpf")
    passes = sorted(f for f in U32_ALL if f[1] != hostnet.ETH_P_ALL)
    assert {f[1] for f in passes} == set(hostnet.HOST_ETHERTYPES) and 0x888E in {
        f[1] for f in passes}
    assert all(f[0] < hostnet.ISOLATION_PRIO for f in passes)  # lower prio number: first
    reqs = hostnet.isolation_requests("u32")
    assert [r["action"] for r in reqs] == ["ok"] * len(passes) + ["drop"]
    assert [(r["prio"], r["protocol"]) for r in reqs] == [f[:2] for f in passes] + [drop[:2]]
    assert all(r["parent"] == hostnet.CLSACT_INGRESS and r["keys"] == ["0x0/0x0+0"]
               for r in reqs)
    (bpf,) = hostnet.isolation_requests("bpf")
    assert bpf["direct_action"] and (bpf["prio"], bpf["protocol"]) == drop[:2]
    assert bpf["parent"] == hostnet.CLSACT_INGRESS


def _run_program(prog: bytes, skb_protocol: int) -> int:
    """A tiny interpreter for the instructions `isolation_program` uses."""
    insns = [struct.unpack("=BBhi", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    r0, pc = 0, 0
    while True:
        code, regs, off, imm = insns[pc]
        dst, src = (regs & 0xF, regs >> 4) if sys.byteorder == "little" else (regs >> 4,
                                                                            regs & 0xF)
        assert dst == 0
        if code == 0x61:
            assert (src, off) == (1, 16)            # __sk_buff.protocol (network order)
            r0 = socket.htons(skb_protocol)
        elif code == 0x15:
            pc += off if r0 == imm else 0
        elif code == 0xB7:
            r0 = imm
        elif code == 0x95:
            return r0
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


@pytest.mark.parametrize(("proto", "verdict"), [
    (0x888E, hostnet.TC_ACT_OK), (0x88C7, hostnet.TC_ACT_OK), (0x890D, hostnet.TC_ACT_OK),
    (0x0800, hostnet.TC_ACT_SHOT), (0x0806, hostnet.TC_ACT_SHOT), (0x86DD, hostnet.TC_ACT_SHOT),
    (0x8100, hostnet.TC_ACT_SHOT),
])
def test_isolation_program_verdicts(proto: int, verdict: int) -> None:
    assert _run_program(hostnet.isolation_program(), proto) == verdict


def test_fresh_netdev_setup_isolates_the_uplink_and_teardown_releases_it() -> None:
    net = FakeNet({"wlan0": {}})
    db = FakeDb(net=net)
    lines: list[str] = []
    bridge_setup.setup(db, net, opts(), out=lines.append)
    saved = SavedState.from_json(db.bridges["br-wl"].external_ids[ovsdb.SAVED_KEY])
    assert saved.uplink_ingress == hostnet.INGRESS_OURS
    assert ("isolate", "wlan0") in net.calls
    assert any("ingress filter gives the host stack only EAPOL" in line for line in lines)

    net.calls.clear()
    bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None)
    assert net.calls[0] == ("release", "wlan0")      # before the addresses move back
    assert "ingress" not in net.links["wlan0"]


def test_setup_leaves_a_foreign_ingress_qdisc_alone() -> None:
    net = FakeNet({"wlan0": {"ingress": "foreign"}})
    db = FakeDb(net=net)
    lines: list[str] = []
    bridge_setup.setup(db, net, opts(), out=lines.append)
    saved = SavedState.from_json(db.bridges["br-wl"].external_ids[ovsdb.SAVED_KEY])
    assert saved.uplink_ingress == hostnet.INGRESS_FOREIGN
    assert not any(c[0] == "isolate" for c in net.calls)
    assert any("clsact qdisc that is not wlbridge's; left alone" in line for line in lines)
    bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None)
    assert not any(c[0] == "release" for c in net.calls)
    assert net.links["wlan0"]["ingress"] == "foreign"


def test_setup_refuses_a_classic_ingress_qdisc_ovs_would_delete() -> None:
    net = FakeNet({"wlan0": {"ingress": "ingress"}})
    db = FakeDb(net=net)
    with pytest.raises(UserError, match="has an ingress qdisc.*nothing changed"):
        bridge_setup.setup(db, net, opts(), out=lambda line: None)
    assert db.calls == [] and net.calls == []
    bridge_setup.setup(db, net, opts(datapath="system"), out=lambda line: None)  # not needed


def test_kernel_refusing_the_filter_is_a_warning_and_a_rerun_retries() -> None:
    net = FakeNet({"wlan0": {"ingress": "refuse"}})
    db = FakeDb(net=net)
    lines: list[str] = []
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert any("warning: could not filter" in line and "rerun" in line for line in lines)
    net.links["wlan0"]["ingress"] = "absent"
    lines.clear()
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert "finished what an interrupted setup left undone" in lines[0]
    assert net.links["wlan0"]["ingress"] == "ours"


def test_kernel_datapath_needs_no_isolation() -> None:
    net = FakeNet({"wlan0": {}})
    db = FakeDb(net=net)
    bridge_setup.setup(db, net, opts(datapath="system"), out=lambda line: None)
    saved = SavedState.from_json(db.bridges["br-wl"].external_ids[ovsdb.SAVED_KEY])
    assert saved.uplink_ingress is None
    assert not any(c[0] == "isolate" for c in net.calls)
