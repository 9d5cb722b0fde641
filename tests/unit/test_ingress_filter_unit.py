"""Uplink ingress isolation (userspace datapath): status/plan logic, the filters and
eBPF program, and what setup/teardown do with them (with fakes)."""

from __future__ import annotations

import socket
import struct
import sys

import pytest
from hostnet_fakes import FakeDb, FakeNet, opts
from wlbridge.cli import bridge_setup, bridge_teardown
from wlbridge.errors import UserError
from wlbridge.host import hostnet, ovsdb
from wlbridge.host.hostnet import SavedState

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
