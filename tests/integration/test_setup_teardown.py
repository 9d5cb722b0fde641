"""`wlbridge setup` / `teardown` against the real Open vSwitch and kernel.

Each test gets its own "station": a veth whose peer lives in a namespace that
plays the LAN (gateway 10.231.A.1, a host 10.231.B.1 behind it).  All names
start with ``ws`` + 3 random characters; everything is removed even when a
test fails.  ``ip``/``ovs-vsctl``/``ovs-ofctl``/``ethtool`` are used only to
build the fixture and to verify.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration  # conftest skips (fails under CI) without root or OVS

from setup_station import (
    NO_CONTROLLER,
    Lan,
    assert_isolated,
    assert_same,
    host_state,
    ping,
    sh,
    station,
    vsctl_get,
)
from wlbridge.cli import bridge_setup, common
from wlbridge.errors import UserError
from wlbridge.host import hostnet, ovsdb


@pytest.fixture
def lan() -> Iterator[Lan]:
    with station() as lan:
        yield lan


# ---- tests --------------------------------------------------------------------
def test_setup_then_teardown_restores_host(lan: Lan) -> None:
    before = host_state(lan)
    mac = before["links"][lan.uplink]["mac"]
    assert ping(lan.remote4)

    rc, out = lan.run("setup")
    assert rc == 0, out
    assert f"created Open vSwitch bridge {lan.bridge}" in out

    # the bridge as ovs-vsctl sees it
    assert vsctl_get("Bridge", lan.bridge, "protocols") == "[OpenFlow13]"
    assert vsctl_get("Bridge", lan.bridge, "fail_mode") == "secure"
    assert vsctl_get("Bridge", lan.bridge, "datapath_type") == "netdev"
    assert vsctl_get("Bridge", lan.bridge, "other_config:hwaddr").strip('"') == mac
    assert vsctl_get("Bridge", lan.bridge, "other_config:disable-in-band").strip('"') == "true"
    assert vsctl_get("Interface", lan.uplink, "external_ids:wlbridge-role") == "uplink"
    assert sh("ovs-vsctl", "port-to-br", lan.uplink).strip() == lan.bridge
    assert sh("ovs-vsctl", "get-controller", lan.bridge).strip() == NO_CONTROLLER
    ctl = sh("ovs-vsctl", "--columns=connection_mode,controller_rate_limit", "list",
             "Controller").split("\n\n")
    assert any("out-of-band" in c and "1000" in c for c in ctl)
    saved = hostnet.SavedState.from_json(
        json.loads(vsctl_get("Bridge", lan.bridge, "external_ids:wlbridge-saved")))
    assert saved.uplink == lan.uplink and saved.mac == mac
    assert {a.address for a in saved.addresses} == {lan.host4, lan.host6}
    assert saved.uplink_ingress == hostnet.INGRESS_OURS
    assert f"uplink {lan.uplink}: ingress filter gives the host stack only EAPOL" in out

    # the read-only helpers the controller uses
    assert ovsdb.find_uplink(lan.bridge) == lan.uplink
    info = ovsdb.bridge_info(lan.bridge)
    assert info is not None and info.managed and info.uplink == lan.uplink
    assert ovsdb.find_uplink(lan.tag + "nope") is None

    # the host moved onto the internal port
    after = host_state(lan)
    br, up = after["links"][lan.bridge], after["links"][lan.uplink]
    assert br["mac"] == mac
    assert "UP" in br["flags"]
    assert any(lan.host4 in a for a in br["addrs"]) and any(lan.host6 in a for a in br["addrs"])
    assert not any(lan.host4 in a or lan.host6 in a for a in up["addrs"])
    assert "ALLMULTI" in up["flags"]
    routes = sh("ip", "route", "show", lan.remote_net4)
    assert f"via {lan.gw4} dev {lan.bridge}" in routes and "metric 50" in routes
    assert "proto static" in routes
    assert f"dev {lan.bridge}" in sh("ip", "-6", "route", "show", lan.remote_net6)
    assert "tx-checksum-ip-generic: off" in after["tx"]
    assert_isolated(lan.uplink)

    # the station still reaches the LAN through the bridge (NORMAL flow: test only)
    sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", lan.bridge, "priority=0,actions=NORMAL")
    assert ping(lan.remote4)
    assert ping(lan.remote6)

    rc, out = lan.run("teardown")
    assert rc == 0, out
    assert f"removed bridge {lan.bridge}" in out
    assert_same(host_state(lan), before)
    assert ping(lan.remote4)


def test_setup_and_teardown_are_idempotent(lan: Lan) -> None:
    before = host_state(lan)
    assert lan.run("setup")[0] == 0
    saved = vsctl_get("Bridge", lan.bridge, "external_ids:wlbridge-saved")
    configured = host_state(lan)

    rc, out = lan.run("setup")
    assert rc == 0, out
    assert "already set up" in out and "nothing changed" in out
    assert vsctl_get("Bridge", lan.bridge, "external_ids:wlbridge-saved") == saved
    assert_same(host_state(lan), configured)

    assert lan.run("teardown")[0] == 0
    rc, out = lan.run("teardown")
    assert rc == 0 and "nothing to do" in out
    assert_same(host_state(lan), before)


@pytest.mark.parametrize("then", ["teardown", "setup"])
def test_interrupted_setup_is_recoverable(lan: Lan, monkeypatch: pytest.MonkeyPatch,
                                          then: str) -> None:
    """Setup dies after moving the addresses but before the routes."""
    before = host_state(lan)
    real_move = hostnet.HostNet.move

    def crashing_move(self: hostnet.HostNet, state: hostnet.SavedState, src: str, dst: str,
                      nodad: bool = False) -> list[str]:
        partial = hostnet.SavedState(**{**state.__dict__, "routes": []})
        real_move(self, partial, src, dst, nodad)
        raise OSError("simulated crash")

    monkeypatch.setattr(hostnet.HostNet, "move", crashing_move)
    rc, out = lan.run("setup")
    assert rc == 2 and "half-way" in out and "teardown" in out
    monkeypatch.setattr(hostnet.HostNet, "move", real_move)

    if then == "setup":
        rc, out = lan.run("setup")
        assert rc == 0 and "finished" in out, out
        assert f"dev {lan.bridge}" in sh("ip", "route", "show", lan.remote_net4)
    rc, out = lan.run("teardown")
    assert rc == 0, out
    assert_same(host_state(lan), before)


def test_teardown_without_internal_port_data(lan: Lan) -> None:
    """Addresses already gone from the internal port (e.g. removed by hand): still restored."""
    before = host_state(lan)
    assert lan.run("setup")[0] == 0
    sh("ip", "addr", "flush", "dev", lan.bridge)
    rc, out = lan.run("teardown")
    assert rc == 0, out
    assert_same(host_state(lan), before)


# ---- refusals: a clear message and nothing changed ----------------------------
def test_refuses_when_not_root(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    before = host_state(lan)
    monkeypatch.setattr(common, "geteuid", lambda: 1000)
    for command in ("setup", "teardown"):
        rc, out = lan.run(command)
        assert rc == 2 and "must be run as root" in out
    assert_same(host_state(lan), before)


def test_refuses_when_ovs_not_running(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    before = host_state(lan)
    bogus = f"unix:/tmp/{lan.tag}-no-such-db.sock"
    rc, out = lan.run("setup", "--db", bogus)
    assert rc == 2 and f"Open vSwitch is not running (cannot connect to {bogus})" in out
    monkeypatch.setenv(ovsdb.REMOTE_ENV, bogus)
    rc, out = lan.run("teardown")
    assert rc == 2 and f"(cannot connect to {bogus})" in out
    assert_same(host_state(lan), before)


def test_refuses_missing_uplink(lan: Lan) -> None:
    before = host_state(lan)
    parser = argparse.ArgumentParser()
    bridge_setup.add_arguments(parser)
    args = parser.parse_args(["--uplink", lan.tag + "zz", "--bridge", lan.bridge,
                              "--datapath", "netdev", "--controller", NO_CONTROLLER])
    with pytest.raises(UserError, match=f"uplink {lan.tag}zz does not exist"):
        bridge_setup.main(args)
    assert_same(host_state(lan), before)


def test_refuses_uplink_in_another_bridge(lan: Lan) -> None:
    other = f"{lan.tag}ob"
    sh("ovs-vsctl", "add-br", other, "--", "set", "bridge", other, "datapath_type=netdev",
       "--", "add-port", other, lan.uplink)
    before = host_state(lan)
    rc, out = lan.run("setup")
    assert rc == 2 and f"already belongs to Open vSwitch bridge {other}" in out
    assert_same(host_state(lan), before)
    assert sh("ovs-vsctl", "port-to-br", lan.uplink).strip() == other


def test_refuses_foreign_bridge(lan: Lan) -> None:
    sh("ovs-vsctl", "add-br", lan.bridge, "--", "set", "bridge", lan.bridge,
       "datapath_type=netdev")
    before = host_state(lan)
    rc, out = lan.run("setup")
    assert rc == 2 and "not created by wlbridge" in out
    rc, out = lan.run("teardown")
    assert rc == 2 and "not created by wlbridge" in out
    assert_same(host_state(lan), before)


# ---- the OVSDB client on its own ------------------------------------------------
def test_ovsdb_client(lan: Lan) -> None:
    name = lan.bridge
    with ovsdb.connect() as db:
        info = db.create_bridge(ovsdb.BridgeSpec(name, datapath_type="netdev", fail_mode=None,
                                                 external_ids={"a": "1"}))
        assert info.ports[0].interfaces[0].type == "internal" and info.controllers == ()
        assert db.wait_interface(name).ofport == 65534
        db.set_protocols(name, ["OpenFlow10", "OpenFlow13"])
        db.set_fail_mode(name, "secure")
        db.set_datapath_type(name, "netdev")
        db.set_controller(name, NO_CONTROLLER, connection_mode="out-of-band", rate_limit=200)
        db.set_other_config(name, {"hwaddr": "02:00:00:00:00:aa", "disable-in-band": "true"})
        db.set_external_ids(name, {"a": None, "b": "2"})
        db.add_port(name, ovsdb.PortSpec(lan.uplink))
        db.set_interface_external_ids(lan.uplink, {"wlbridge-role": "uplink"})
        assert db.port_bridge(lan.uplink) == name and db.find_uplink(name) == lan.uplink
        assert db.get_external_ids(name) == {"b": "2"}
        assert name in db.bridge_names()

        assert vsctl_get("Bridge", name, "protocols") == "[OpenFlow10, OpenFlow13]"
        assert vsctl_get("Bridge", name, "fail_mode") == "secure"
        assert vsctl_get("Bridge", name, "other_config:hwaddr") == '"02:00:00:00:00:aa"'
        assert sh("ovs-vsctl", "get-controller", name).strip() == NO_CONTROLLER
        assert sh("ovs-vsctl", "port-to-br", lan.uplink).strip() == name

        # errors are reported, not logged and ignored
        with pytest.raises(ovsdb.OvsdbError, match="does not exist"):
            db.set_fail_mode(lan.tag + "nope", "secure")
        with pytest.raises(ovsdb.OvsdbError, match="bad value"):
            db.set_controller(name, NO_CONTROLLER, rate_limit=5)    # OVS minimum is 100
        with pytest.raises(ovsdb.OvsdbError, match="already"):
            db.create_bridge(ovsdb.BridgeSpec(name))

        def duplicate(txn: Any) -> None:   # bypasses our checks: the server must refuse
            br = txn.insert(db._idl.tables["Bridge"])
            br.name = name
            db._root().addvalue("bridges", br)

        with pytest.raises(ovsdb.OvsdbError, match="refused to add a duplicate"):
            db.transact(duplicate, "add a duplicate bridge")

        assert db.delete_port(name, lan.uplink) is True
        assert db.delete_port(name, lan.uplink) is False
        assert db.delete_bridge(name) is True
        assert db.delete_bridge(name) is False
    assert name not in sh("ovs-vsctl", "list-br").split()
