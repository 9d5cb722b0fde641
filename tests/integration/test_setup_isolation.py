"""`wlbridge setup` / `teardown` against the real Open vSwitch and kernel: the uplink's
ingress isolation (tc clsact qdisc and filters) on the userspace datapath, including
foreign qdiscs, crashes half-way and kernels without eBPF.  The station is the one of
test_setup_teardown.py (see `setup_station`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration  # conftest skips (fails under CI) without root or OVS

from setup_station import (
    Lan,
    assert_isolated,
    assert_same,
    has_ingress_qdisc,
    host_state,
    ingress_filters,
    sh,
    station,
    vsctl_get,
    vswitchd_settled,
)
from wlbridge.host import hostnet, ingress_filter


@pytest.fixture
def lan() -> Iterator[Lan]:
    with station() as lan:
        yield lan


class Crash(BaseException):
    """The process dies here (not an error setup could catch)."""


@pytest.mark.parametrize("then", ["teardown", "setup"])
def test_crash_between_ingress_qdisc_and_filter(lan: Lan, monkeypatch: pytest.MonkeyPatch,
                                                then: str) -> None:
    before = host_state(lan)

    def crash(kind: str) -> list:
        raise Crash

    # the filter requests are built after the qdisc is added, right before they are sent
    monkeypatch.setattr(ingress_filter, "isolation_requests", crash)
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
    vswitchd_settled(lan.uplink)
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
    vswitchd_settled(lan.uplink)                      # a reconfiguration, waited for
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
