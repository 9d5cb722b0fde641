"""`wlbridge setup` / `teardown` against the real Open vSwitch and kernel.

Each test gets its own "station": a veth whose peer lives in a namespace that
plays the LAN (gateway 10.231.A.1, a host 10.231.B.1 behind it).  All names
start with ``ws`` + 3 random characters; everything is removed even when a
test fails.  ``ip``/``ovs-vsctl``/``ovs-ofctl``/``ethtool`` are used only to
build the fixture and to verify.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytestmark = pytest.mark.integration

if os.geteuid() != 0 or not shutil.which("ovs-vsctl") or not shutil.which("ip"):
    pytest.skip("needs root, iproute2 and Open vSwitch", allow_module_level=True)
if subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True,
                  check=False).returncode:
    pytest.skip("Open vSwitch is not running", allow_module_level=True)

from wlbridge import bridge_setup, bridge_teardown, hostnet, ingress_filter, ovsdb
from wlbridge.cli import UserError

NO_CONTROLLER = "tcp:127.0.0.1:1"   # nothing listens there: never another engineer's controller


def sh(*cmd: str, check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode:
        raise AssertionError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


def free_octets(n: int) -> list[int]:
    used = sh("ip", "-4", "route", "show", "table", "all") + sh("ip", "-4", "addr")
    free = [o for o in range(100, 250) if f"10.231.{o}." not in used]
    return random.sample(free, n)


@dataclass
class Lan:
    tag: str
    ns: str
    uplink: str
    peer: str
    bridge: str
    gw4: str
    host4: str
    net4: str
    remote4: str        # a host behind the gateway (on the peer's lo)
    remote_net4: str
    gw6: str
    host6: str
    remote6: str
    remote_net6: str

    def run(self, command: str, *extra: str) -> tuple[int, str]:
        """Run `wlbridge COMMAND` in-process the way wlbridge.cli does; (rc, output)."""
        module = bridge_setup if command == "setup" else bridge_teardown
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        argv = ["--bridge", self.bridge, *extra]
        if command == "setup":
            argv += ["--uplink", self.uplink, "--datapath", "netdev",
                     "--controller", NO_CONTROLLER]
        args = parser.parse_args(argv)
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                rc = module.main(args)
        except UserError as exc:
            buf.write(f"ERROR: {exc}\n")
            rc = 2
        return rc, buf.getvalue()


def wait_dad(dev: str, timeout: float = 10.0) -> None:
    """Wait until no IPv6 address of `dev` is tentative (so snapshots are stable)."""
    deadline = time.monotonic() + timeout
    while sh("ip", "-6", "addr", "show", "dev", dev, "tentative").strip():
        assert time.monotonic() < deadline, f"IPv6 DAD on {dev} did not finish"
        time.sleep(0.1)


def _cleanup(tag: str) -> None:
    for br in sh("ovs-vsctl", "list-br").split():
        if br.startswith(tag):
            sh("ovs-vsctl", "--if-exists", "del-br", br, check=False)
    for link in json.loads(sh("ip", "-j", "link", "show")):
        if link["ifname"].startswith(tag):
            sh("ip", "link", "del", link["ifname"], check=False)
    sh("ip", "netns", "del", f"{tag}n", check=False)


@pytest.fixture
def lan() -> Iterator[Lan]:
    tag = "ws" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    a, b = free_octets(2)
    u6 = f"fd31:{random.randrange(0x1000, 0xffff):x}"
    lan = Lan(tag=tag, ns=f"{tag}n", uplink=f"{tag}u", peer=f"{tag}p", bridge=f"{tag}br",
              gw4=f"10.231.{a}.1", host4=f"10.231.{a}.2", net4=f"10.231.{a}.0/24",
              remote4=f"10.231.{b}.1", remote_net4=f"10.231.{b}.0/24",
              gw6=f"{u6}:{a:x}::1", host6=f"{u6}:{a:x}::2", remote6=f"{u6}:{b:x}::1",
              remote_net6=f"{u6}:{b:x}::/64")
    try:
        sh("ip", "netns", "add", lan.ns)
        sh("ip", "link", "add", lan.uplink, "type", "veth", "peer", "name", lan.peer,
           "netns", lan.ns)
        nsx = ("ip", "netns", "exec", lan.ns)
        sh(*nsx, "ip", "link", "set", "lo", "up")
        sh(*nsx, "ip", "link", "set", lan.peer, "up")
        sh(*nsx, "ethtool", "-K", lan.peer, "tx", "off")
        sh(*nsx, "ip", "addr", "add", f"{lan.gw4}/24", "dev", lan.peer)
        sh(*nsx, "ip", "addr", "add", f"{lan.gw6}/64", "dev", lan.peer, "nodad")
        sh(*nsx, "ip", "addr", "add", f"{lan.remote4}/32", "dev", "lo")
        sh(*nsx, "ip", "addr", "add", f"{lan.remote6}/128", "dev", "lo")
        with open(f"/proc/sys/net/ipv6/conf/{lan.uplink}/accept_dad", "w") as f:
            f.write("0")    # no tentative link-local: stable before/after snapshots
        sh("ip", "link", "set", lan.uplink, "up")
        sh("ip", "addr", "add", f"{lan.host4}/24", "brd", "+", "dev", lan.uplink)
        sh("ip", "addr", "add", f"{lan.host6}/64", "dev", lan.uplink, "nodad")
        sh("ip", "route", "add", lan.remote_net4, "via", lan.gw4, "dev", lan.uplink,
           "metric", "50", "proto", "static")
        sh("ip", "-6", "route", "add", lan.remote_net6, "via", lan.gw6, "dev", lan.uplink)
        wait_dad(lan.uplink)
        yield lan
    finally:
        _cleanup(tag)


# ---- observation helpers (iproute2/ovs-vsctl, independent of the product) ----
_VOLATILE = {"valid_life_time", "preferred_life_time", "expires"}


def host_state(lan: Lan) -> dict[str, Any]:
    """Addresses, routes and link attributes of the test interfaces."""
    links = {}
    for name in (lan.uplink, lan.bridge):
        out = subprocess.run(["ip", "-j", "-d", "addr", "show", "dev", name],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            continue
        link = json.loads(out.stdout)[0]
        links[name] = {
            "flags": sorted(link["flags"]), "mac": link["address"], "mtu": link["mtu"],
            "operstate": link["operstate"], "master": link.get("master"),
            "addrs": sorted(json.dumps({k: v for k, v in a.items() if k not in _VOLATILE},
                                       sort_keys=True) for a in link["addr_info"]),
        }
    routes = []
    for fam in ("-4", "-6"):
        for r in json.loads(sh("ip", "-j", fam, "route", "show", "table", "main")):
            if r.get("dev") in (lan.uplink, lan.bridge):
                routes.append(json.dumps({k: v for k, v in r.items() if k not in _VOLATILE},
                                         sort_keys=True))
    tx = [ln.strip() for ln in sh("ethtool", "-k", lan.uplink).splitlines()
          if "tx-checksum" in ln]
    return {"links": links, "routes": sorted(routes), "tx": tx, "tc": tc_state(lan.uplink),
            "bridges": sorted(b for b in sh("ovs-vsctl", "list-br").split()
                              if b.startswith(lan.tag))}


def tc_state(dev: str) -> dict[str, list[str]]:
    """The qdiscs of `dev` and the filters on its ingress/egress hooks, as `tc -j` shows."""
    found = {"qdiscs": json.loads(sh("tc", "-j", "qdisc", "show", "dev", dev) or "[]")}
    for hook in ("ingress", "egress"):
        found[hook] = json.loads(sh("tc", "-j", "filter", "show", "dev", dev, hook) or "[]")
    return {k: sorted(json.dumps(v, sort_keys=True) for v in items) for k, items in found.items()}


def ingress_filters(dev: str) -> list[dict[str, Any]]:
    """The filters on `dev`'s ingress that carry options (one per handle)."""
    return [f for f in json.loads(sh("tc", "-j", "filter", "show", "dev", dev, "ingress")
                                  or "[]") if "options" in f]


def has_ingress_qdisc(dev: str) -> bool:
    return any(json.loads(q)["kind"] in ("ingress", "clsact") for q in tc_state(dev)["qdiscs"])


def assert_isolated(dev: str) -> None:
    """wlbridge's ingress filter on `dev`: the eBPF one, or u32/gact where that failed."""
    filters = ingress_filters(dev)
    names = [f["options"].get("bpf_name") for f in filters if f["kind"] == "bpf"]
    assert names == ["wlbridge-uplink"] or {f["kind"] for f in filters} == {"u32"}, filters
    assert all(f["pref"] >= hostnet.ISOLATION_PRIO - len(hostnet.HOST_ETHERTYPES)
               for f in filters), filters


def assert_same(after: dict[str, Any], before: dict[str, Any]) -> None:
    """Host state equal, with a readable diff when not."""
    for name in sorted(set(before["links"]) | set(after["links"])):
        b, a = before["links"].get(name), after["links"].get(name)
        assert a is not None and b is not None, f"{name}: before {b}, after {a}"
        for key in b:
            assert a[key] == b[key], f"{name} {key}: before {b[key]}, after {a[key]}"
    for key in ("routes", "tx", "tc", "bridges"):
        assert after[key] == before[key], key


def vsctl_get(table: str, record: str, column: str) -> str:
    return sh("ovs-vsctl", "get", table, record, column).strip()


def ping(dst: str) -> bool:
    return subprocess.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", dst],
                          capture_output=True, check=False).returncode == 0


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


class Crash(BaseException):
    """The process dies here (not an error setup could catch)."""


@pytest.mark.parametrize("then", ["teardown", "setup"])
def test_crash_between_ingress_qdisc_and_filter(lan: Lan, monkeypatch: pytest.MonkeyPatch,
                                                then: str) -> None:
    before = host_state(lan)

    def crash(self: hostnet.HostNet, index: int, kind: str) -> None:
        raise Crash

    monkeypatch.setattr(hostnet.HostNet, "_add_isolation", crash)
    with pytest.raises(Crash):
        lan.run("setup")
    monkeypatch.undo()
    assert has_ingress_qdisc(lan.uplink) and not ingress_filters(lan.uplink)

    if then == "setup":
        rc, out = lan.run("setup")
        assert rc == 0 and "finished" in out, out
        assert_isolated(lan.uplink)
        rc, out = lan.run("setup")
        assert rc == 0 and "nothing changed" in out, out
    rc, out = lan.run("teardown")
    assert rc == 0, out
    assert_same(host_state(lan), before)
    assert not has_ingress_qdisc(lan.uplink)


def test_foreign_clsact_qdisc_is_left_alone(lan: Lan) -> None:
    sh("tc", "qdisc", "add", "dev", lan.uplink, "clsact")
    sh("tc", "filter", "add", "dev", lan.uplink, "ingress", "prio", "7", "protocol", "ip",
       "u32", "match", "u32", "0", "0", "classid", "1:1")
    before = host_state(lan)
    rc, out = lan.run("setup")
    assert rc == 0, out
    assert "already had a clsact qdisc that is not wlbridge's; left alone" in out
    saved = hostnet.SavedState.from_json(
        json.loads(vsctl_get("Bridge", lan.bridge, "external_ids:wlbridge-saved")))
    assert saved.uplink_ingress == hostnet.INGRESS_FOREIGN
    sh("ip", "link", "set", lan.uplink, "allmulticast", "off")   # a link change: OVS
    sh("ip", "link", "set", lan.uplink, "allmulticast", "on")    # resets its policing
    time.sleep(0.5)
    assert host_state(lan)["tc"] == before["tc"]
    rc, out = lan.run("setup")            # a re-run does not change its mind
    assert rc == 0 and host_state(lan)["tc"] == before["tc"]
    rc, out = lan.run("teardown")
    assert rc == 0, out
    assert_same(host_state(lan), before)


def test_refuses_classic_ingress_qdisc(lan: Lan) -> None:
    """ovs-vswitchd would delete it (it owns its ports' ingress qdisc): refuse, untouched."""
    sh("tc", "qdisc", "add", "dev", lan.uplink, "ingress")
    before = host_state(lan)
    rc, out = lan.run("setup")
    assert rc == 2 and f"uplink {lan.uplink} has an ingress qdisc" in out, out
    assert "nothing changed" in out
    assert_same(host_state(lan), before)


def test_filter_survives_link_changes_and_a_vswitchd_reconfiguration(lan: Lan) -> None:
    """ovs-vswitchd deletes its ports' "ingress" qdisc after each link change: not ours."""
    assert lan.run("setup")[0] == 0
    for state in ("off", "on", "off", "on"):
        sh("ip", "link", "set", lan.uplink, "allmulticast", state)
    sh("ovs-vsctl", "set", "Interface", lan.uplink, "external_ids:wlbridge-test=1")
    sh("ovs-vsctl", "remove", "Interface", lan.uplink, "external_ids", "wlbridge-test")
    time.sleep(0.5)
    assert_isolated(lan.uplink)
    assert lan.run("teardown")[0] == 0


def test_leftover_filter_is_adopted_and_removed(lan: Lan) -> None:
    """The bridge deleted by hand leaves wlbridge's filter behind: the next setup owns it."""
    assert lan.run("setup")[0] == 0
    sh("ovs-vsctl", "del-br", lan.bridge)
    assert_isolated(lan.uplink)
    rc, out = lan.run("setup")
    assert rc == 0 and "not wlbridge's" not in out, out
    assert_isolated(lan.uplink)
    assert lan.run("teardown")[0] == 0
    assert not has_ingress_qdisc(lan.uplink)


def test_isolation_without_ebpf(lan: Lan, monkeypatch: pytest.MonkeyPatch) -> None:
    """No bpf(): u32 filters with gact, or (kernel without act_gact) a warning, no leftovers."""
    before = host_state(lan)

    def refuse() -> int:
        raise OSError(38, "bpf() not available")

    monkeypatch.setattr(ingress_filter, "load_isolation_program", refuse)
    rc, out = lan.run("setup")
    assert rc == 0, out
    filters = ingress_filters(lan.uplink)
    if filters:
        assert_isolated(lan.uplink)
        assert {f["kind"] for f in filters} == {"u32"}
    else:
        assert "warning: could not filter what the host receives" in out, out
        assert not has_ingress_qdisc(lan.uplink)
    monkeypatch.undo()
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
    monkeypatch.setattr(bridge_setup, "geteuid", lambda: 1000)
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
