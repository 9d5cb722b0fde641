"""A reassociation (uplink carrier back) renews the host's DHCP client on the bridge as
NetworkManager would on wlan0 (issue 13, item 4): which hand-off gets which action, and that
the renewal never raises and never leaves the bridge's client stopped."""

from __future__ import annotations

import logging
import signal

import pytest
from handoff_fakes import FakeSystem
from wlbridge.host import addr_handoff as ah
from wlbridge.host import addr_manager as am
from wlbridge.host.host_events import CARRIER_UP, RECREATED
from wlbridge.host.hostnet import Address
from wlbridge.host.lease_renewal import LeaseRenewal, renewal
from wlbridge.host.link_events import UplinkEvents

LEASED = Address(4, "192.168.1.5", 24, "192.168.1.255", valid_lft=3600, preferred_lft=3600)
STATIC = Address(4, "192.168.1.5", 24, "192.168.1.255")
IFUPDOWN = ("/sbin/dhclient", "-4", "-v", "-pf", "/run/dhclient.wlan0.pid", "-lf",
            "/var/lib/dhcp/dhclient.wlan0.leases", "wlan0")


def proc(pid: int, *argv: str, name: str | None = None) -> am.Process:
    return am.Process(pid, 1, name or argv[0].rsplit("/", 1)[-1][:15], tuple(argv))


def make(mode: str, *procs: am.Process, addr: Address = LEASED, **facts) -> ah.Plan:
    det = am.detect(am.HostFacts(processes=[proc(1, "/sbin/init"), *procs], **facts),
                    "wlan0", [addr])
    return ah.make_plan(mode, det, "wlan0", "br-wl", "/var/lib/wlbridge", [addr], {}, 1e9)


PLANS = {
    "dhclient": lambda: make("auto", proc(500, *IFUPDOWN)),
    "networkmanager": lambda: make("auto", nm=am.NmDevice("100 (connected)", "Home")),
    "static": lambda: make("auto", addr=STATIC),
    "keep": lambda: make("keep", proc(500, *IFUPDOWN)),
    "dhcpcd": lambda: make("auto", proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd")),
    "networkd": lambda: make("auto", networkd_link={
        "ADMIN_STATE": "configured", "NETWORK_FILE": "/etc/systemd/network/wl.network"}),
}


@pytest.mark.parametrize("mode", ["dhclient", "networkmanager"])
def test_the_dhclient_the_handoff_started_is_stopped_without_release_and_started_again(mode):
    plan = PLANS[mode]()
    [start] = [s for s in plan.setup if s.kind == "start"]
    steps, line = renewal(plan)
    assert [(s.kind, s.data["argv"], s.data["pidfile"]) for s in steps] == [
        ("stop", start.data["argv"], start.data["pidfile"]),
        ("start", start.data["argv"], start.data["pidfile"])]
    assert start.data["argv"][-1] == "br-wl" and "dhclient on br-wl" in line
    assert "INIT-REBOOT" in line and "\n" not in line


def test_the_dhcpcd_instance_on_the_bridge_is_told_to_rebind():
    plan = PLANS["dhcpcd"]()
    steps, line = renewal(plan)
    assert [(s.kind, s.data) for s in steps] == [("rebind", {"iface": "br-wl"})]
    assert "dhcpcd on br-wl" in line and "rebind" in line and "\n" not in line


def test_a_rebind_signals_only_the_bridges_own_dhcpcd_instance():
    host = FakeSystem(procs={70: ["dhcpcd: [manager] [ip4] [ip6]"], 71: ["dhcpcd: wlan1 [ip4]"],
                             72: ["dhcpcd: br-wl [ip4]"],
                             73: ["dhcpcd: [privileged proxy] br-wl [ip4]"]})
    [step] = renewal(PLANS["dhcpcd"]())[0]
    ah.HostOps(system=host).do(step)
    assert host.signals == [(72, signal.SIGHUP)]
    with pytest.raises(RuntimeError, match="no dhcpcd instance runs on br-wl0"):
        ah.HostOps(system=host).do(ah.Step("rebind", "rebind", {"iface": "br-wl0"}))


@pytest.mark.parametrize("mode", ["static", "keep", "networkd"])
def test_other_managers_are_left_alone(mode):
    plan = PLANS[mode]()
    steps, line = renewal(plan)
    assert steps == []
    assert plan.manager in line and "nothing to renew" in line


def test_no_handoff_record_renews_nothing():
    steps, line = renewal(None)
    assert steps == [] and "no address hand-off" in line


class Ops:
    """Records the steps run through `addr_handoff.execute` (`fail`: the kind that fails)."""

    def __init__(self, log: list[str], fail: str | None = None) -> None:
        self.log, self.fail = log, fail

    def do(self, step: ah.Step) -> None:
        if step.kind == self.fail:
            raise RuntimeError("no live process in the pid file")
        self.log.append("do " + step.kind)

    def undo(self, step: ah.Step) -> None:
        self.log.append("undo " + step.kind)


def renewer(log: list[str], plan=None, fail=None, spawn=None, read=None) -> LeaseRenewal:
    plan = plan or PLANS["dhclient"]()
    return LeaseRenewal("br-wl", None, spawn or (lambda fn: fn()),
                        read=read or (lambda bridge, remote: plan),
                        ops=lambda: Ops(log, fail))


def test_carrier_back_on_the_uplink_restarts_the_bridges_dhclient(caplog):
    log: list[str] = []
    renew = renewer(log)
    events = UplinkEvents("br-wl", "wlan0", None, spawn=lambda fn: fn())
    events.on_reassociated.append(renew.reassociated)
    with caplog.at_level(logging.INFO, logger="wlbridge.app"):
        events.uplink_changed(CARRIER_UP, None)
    assert log == ["do stop", "do start"]
    lines = [r.getMessage() for r in caplog.records if "renew" in r.getMessage()
             or "INIT-REBOOT" in r.getMessage()]
    assert len(lines) == 1 and "dhclient on br-wl" in lines[0], lines


def test_a_re_plugged_uplink_restarts_the_bridges_dhclient(caplog):
    log: list[str] = []
    renew = renewer(log)
    events = UplinkEvents("br-wl", "wlan0", None, spawn=lambda fn: fn(),
                          repair=lambda *_: ([], []))
    events.on_reassociated.append(renew.reassociated)
    events.on_recreated.append(renew.recreated)
    with caplog.at_level(logging.INFO, logger="wlbridge.app"):
        events.uplink_changed(RECREATED, None)
    assert log == ["do stop", "do start"]
    lines = [r.getMessage() for r in caplog.records if "INIT-REBOOT" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("uplink re-created: dhclient on br-wl"), lines


def test_a_client_that_does_not_start_again_is_restarted_as_it_was(caplog):
    log: list[str] = []
    with caplog.at_level(logging.ERROR, logger="wlbridge.app"):
        renewer(log, fail="start").reassociated()       # never raises
    assert log == ["do stop", "undo stop"]               # undo_stop starts it again
    assert "could not renew" in caplog.text


def test_an_unreadable_record_or_ovsdb_away_is_one_error_line(caplog):
    def broken(bridge, remote):
        raise ConnectionRefusedError("ovsdb-server is not running")

    log: list[str] = []
    with caplog.at_level(logging.ERROR, logger="wlbridge.app"):
        renewer(log, read=broken).reassociated()
    assert log == [] and "not renewed (ovsdb-server is not running)" in caplog.text


def test_a_static_host_is_told_and_left_alone(caplog):
    log: list[str] = []
    with caplog.at_level(logging.INFO, logger="wlbridge.app"):
        renewer(log, plan=PLANS["static"]()).reassociated()
    assert log == [] and "nothing to renew" in caplog.text


def test_reassociations_during_a_renewal_make_one_more_after_it():
    log: list[str] = []
    spawned: list = []
    renew = renewer(log, spawn=spawned.append)
    for _ in range(3):
        renew.reassociated()
    assert len(spawned) == 1 and log == []      # one worker; the others wait for it
    spawned[0]()
    assert log == ["do stop", "do start"] * 2
    renew.reassociated()
    assert len(spawned) == 2
