"""The refusals of `wlbridge setup`/`teardown` that need root and OVS, through the real CLI.

Each documented refusal (docs/usage.md; the list is tests/cli_refusals.py's `ROOT_CASES`)
is provoked on an emulated LAN: exit 2, one line on stderr, no traceback, and nothing
changed (the OVS bridges and the uplink's addresses are as before).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import CLI, wlbridge
from pyroute2 import IPRoute
from test_operator import bridges, host_view
from test_ryu_manager import ryu_manager as ryu_manager_fixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_refusals import ROOT_CASES, assert_refused
from wlbridge.cli.bridge_setup import kernel_datapath_available

ryu_manager = ryu_manager_fixture  # the Ryu venv's ryu-manager (built when missing)
Case = Callable[..., tuple[list[str], str]]


def _link(name: str, kind: str) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind=kind)


def _enslave(port: str, master: str) -> None:
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=port)[0],
                 master=ipr.link_lookup(ifname=master)[0])


def no_ovs(lan, prefix, ovs_bridge):
    return (["setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-br",
             "--db", f"unix:/nonexistent/{prefix}.sock", "--timeout", "1"], "Open vSwitch")


def no_uplink(lan, prefix, ovs_bridge):
    return (["setup", "--uplink", f"{prefix}-nope", "--bridge", f"{prefix}-br"],
            f"uplink {prefix}-nope does not exist")


def uplink_in_other_bridge(lan, prefix, ovs_bridge):
    other = ovs_bridge("ob")
    other.add_port(lan.uplink)
    return (["setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-br"],
            f"already belongs to Open vSwitch bridge {other.name}")


def uplink_enslaved(lan, prefix, ovs_bridge):
    _link(f"{prefix}-lb", "bridge")
    _enslave(lan.uplink, f"{prefix}-lb")
    return (["setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-br"],
            f"is enslaved to {prefix}-lb")


def foreign_bridge(lan, prefix, ovs_bridge):
    other = ovs_bridge("fb")
    return (["setup", "--uplink", lan.uplink, "--bridge", other.name],
            "was not created by wlbridge")


def interface_named_like_the_bridge(lan, prefix, ovs_bridge):
    _link(f"{prefix}-dm", "bridge")  # a Linux bridge
    return (["setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-dm"],
            "is not an Open vSwitch bridge")


def set_up_for_another_uplink(lan, prefix, ovs_bridge):
    wlbridge("setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-br",
             "--datapath", "netdev")
    return (["setup", "--uplink", lan.guests[0].port, "--bridge", f"{prefix}-br"],
            f"already set up for uplink {lan.uplink}")


def system_datapath_without_module(lan, prefix, ovs_bridge):
    if kernel_datapath_available():
        pytest.skip("the openvswitch kernel module is loaded here: nothing to refuse")
    return (["setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-br",
             "--datapath", "system"], "needs the openvswitch kernel module")


def packet_in_rate_too_low(lan, prefix, ovs_bridge):
    return (["setup", "--uplink", lan.uplink, "--bridge", f"{prefix}-br",
             "--packet-in-rate", "50"], "at least 100")


def teardown_foreign_bridge(lan, prefix, ovs_bridge):
    other = ovs_bridge("tb")
    return (["teardown", "--bridge", other.name], "was not created by wlbridge")


CASES: dict[tuple[str, str], Case] = {
    ("setup", "Open vSwitch is not running"): no_ovs,
    ("setup", "the uplink does not exist"): no_uplink,
    ("setup", "the uplink already belongs to another OVS bridge"): uplink_in_other_bridge,
    ("setup", "the uplink is enslaved to a Linux bridge or bond"): uplink_enslaved,
    ("setup", "the bridge exists but was not created by wlbridge"): foreign_bridge,
    ("setup", "a non-OVS interface has the bridge's name"): interface_named_like_the_bridge,
    ("setup", "the bridge was set up by wlbridge for another uplink"): set_up_for_another_uplink,
    ("setup", "`--datapath system` without the kernel module"): system_datapath_without_module,
    ("setup", "`--packet-in-rate` between 1 and 99"): packet_in_rate_too_low,
    ("teardown", "the bridge was not created by wlbridge"): teardown_foreign_bridge,
}
# walked with a running controller by test_operator.py::test_full_cycle_leaves_the_host_as_it_was
ELSEWHERE = {("teardown", "the bridge's controller is still running")}


def test_the_walk_covers_the_documented_root_refusals() -> None:
    assert set(CASES) | ELSEWHERE == ROOT_CASES


@pytest.mark.parametrize("refusal", sorted(CASES), ids=lambda r: f"{r[0]}: {r[1]}")
def test_refusal(refusal, lan, wl_prefix, ovs_bridge) -> None:
    argv, what = CASES[refusal](lan, wl_prefix, ovs_bridge)
    def ours() -> tuple:
        return ([b for b in sorted(bridges()) if b.startswith(wl_prefix)],
                host_view(lan.uplink))
    before = ours()
    try:
        assert_refused(wlbridge(*argv, check=False), what)
        assert ours() == before  # nothing changed
    finally:
        wlbridge("teardown", "--bridge", f"{wl_prefix}-br", check=False)


def test_setup_and_teardown_into_a_closed_pipe(lan, wl_prefix) -> None:
    """`wlbridge setup | head -1`: the whole setup is done, quietly, and so is teardown."""
    bridge = f"{wl_prefix}-br"
    cli = " ".join(CLI)
    for command in (f"setup --uplink {lan.uplink} --bridge {bridge} --datapath netdev",
                    f"teardown --bridge {bridge}"):
        script = f"{cli} {command} | head -1; exit ${{PIPESTATUS[0]}}"
        res = subprocess.run(["bash", "-c", script],
                             capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        assert len(res.stdout.splitlines()) == 1
        assert (bridge in bridges()) == command.startswith("setup")


@pytest.mark.parametrize("text,what", [
    ("[wlbridge]\nidel_timeout = 30\n", "(did you mean idle_timeout?)"),
    ("[wlbrige]\nidle_timeout = 30\n", "unknown section [wlbrige] (did you mean wlbridge?)"),
    ("[wlbridge]\nlisten_port = sixteen\n", "listen_port: want a whole number from 1 to 65535"),
    ("[wlbridge]\nstatic_macs = g2=zz:zz:zz:zz:zz:zz\n", "is not port=MAC"),
])
def test_ryu_manager_refuses_a_bad_config_file_in_one_line(ryu_manager, tmp_path, text,
                                                            what) -> None:
    """The same file, the same refusal under `ryu-manager wlbridge_app`: one line, no
    oslo.config internals, no traceback."""
    ini = tmp_path / "wlbridge.ini"
    ini.write_text(text)
    tree = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = f"{tree / 'controller'}:{tree}"  # this tree's wlbridge_app
    res = subprocess.run([str(ryu_manager), "--config-file", str(ini), "--ofp-tcp-listen-port",
                          "0", "wlbridge_app"], capture_output=True, text=True, timeout=60,
                         env=env, cwd=tmp_path, check=False)
    output = res.stdout + res.stderr
    errors = [line for line in output.splitlines() if line.startswith("wlbridge:")]
    assert res.returncode != 0 and len(errors) == 1 and what in errors[0], output
    assert "Traceback" not in output and "LocationInfo" not in output
