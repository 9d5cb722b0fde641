"""`wlbridge install-service`: the shipped units, as installed, say what the docs promise.

The units come from the package (``wlbridge/data``), rendered for the distribution's Open
vSwitch unit and the uplink; `--no-start` writes them into a directory without systemctl.
What is checked: the bridge's DHCP client is not started from ExecStartPre (systemd kills
what ExecStartPre leaves behind), the setup unit keeps its leftover processes on stop,
ordering after Open vSwitch, network-online and the uplink's device, no teardown on stop,
`systemd-analyze verify` accepts them (where it is installed), --uninstall removes them.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from wlbridge.cli import main as cli
from wlbridge.cli import service
from wlbridge.host import preflight

from topologies.procs import wait_for

CLI = [sys.executable, "-m", "wlbridge"]


def parse(text: str) -> configparser.RawConfigParser:
    unit = configparser.RawConfigParser(strict=False, delimiters=("=",))
    unit.optionxform = str          # type: ignore[assignment,method-assign]
    unit.read_string(text)
    return unit


def units(ovs_unit: str = "openvswitch.service", uplink: str = "wlp2s0") -> dict:
    return {name: parse(service.render(service.data_text(name), uplink=uplink, bridge="br-x",
                                       ovs_unit=ovs_unit, wlbridge="/usr/bin/wlbridge",
                                       config="/etc/wlbridge.ini"))
            for name in service.UNITS}


def test_every_value_is_filled_in() -> None:
    for name in service.UNITS:
        text = service.render(service.data_text(name), uplink="wlan0", bridge="br-wl",
                              ovs_unit="openvswitch-switch.service", wlbridge="/usr/bin/wlbridge",
                              config="/etc/wlbridge.ini")
        assert not re.search(r"@[A-Z_]+@", text), name


@pytest.mark.parametrize("ovs_unit", preflight.OVS_UNITS)
def test_setup_runs_after_the_distributions_open_vswitch_and_the_network(ovs_unit: str) -> None:
    setup = units(ovs_unit)["wlbridge-setup.service"]
    after = setup.get("Unit", "After").split()
    assert ovs_unit in setup.get("Unit", "Requires").split() and ovs_unit in after
    assert "network-online.target" in after and "network-online.target" in setup.get(
        "Unit", "Wants").split()
    assert "sys-subsystem-net-devices-wlp2s0.device" in after
    assert setup.get("Unit", "PartOf") == ovs_unit


def test_the_dhcp_client_outlives_setup_and_restarts() -> None:
    """Setup (which starts the bridge's DHCP client) is a oneshot's ExecStart, not an
    ExecStartPre; its leftovers are not killed on stop; nothing tears down on stop."""
    u = units()
    setup, controller = u["wlbridge-setup.service"], u["wlbridge.service"]
    for unit in (setup, controller):
        assert not [k for k in unit["Service"] if k.startswith("ExecStartPre")]
    # a teardown only when the controller is disabled (`systemctl disable --now wlbridge`)
    guard = "systemctl -q is-enabled wlbridge.service || exec "
    assert setup.get("Service", "ExecStop") == (
        f"/bin/sh -c '{guard}/usr/bin/wlbridge teardown --bridge br-x'")
    assert controller.get("Service", "ExecStopPost") == (
        f"/bin/sh -c '{guard}systemctl --no-block stop wlbridge-setup.service'")
    for unit in (setup, controller):
        assert [k for k, v in unit["Service"].items() if "teardown" in v or "stop " in v] \
            == [k for k in ("ExecStop", "ExecStopPost") if k in unit["Service"]]
    assert setup.get("Service", "Type") == "oneshot"
    assert setup.get("Service", "RemainAfterExit") == "yes"
    assert setup.get("Service", "ExecStart") == (
        "/usr/bin/wlbridge setup --uplink wlp2s0 --bridge br-x")
    assert controller.get("Service", "ExecStart") == (
        "/usr/bin/wlbridge run --bridge br-x --config-file /etc/wlbridge.ini")
    assert "wlbridge-setup.service" in controller.get("Unit", "Requires").split()
    assert "wlbridge-setup.service" in controller.get("Unit", "After").split()
    assert controller.get("Install", "WantedBy") == "multi-user.target"


def test_the_bridges_dhcp_client_runs_in_a_scope_of_its_own_under_systemd() -> None:
    """Not in wlbridge-setup.service's cgroup: no stop or restart of a unit kills it."""
    from wlbridge.host.addr_handoff.system import in_scope

    argv = ["dhclient", "-pf", "/var/lib/wlbridge/dhclient.br-wl.pid", "br-wl"]
    scoped = in_scope(argv, True, "/usr/bin/systemd-run")
    assert scoped[:2] == ["/usr/bin/systemd-run", "--scope"]
    assert scoped[scoped.index("--") + 1:] == argv          # the command itself, its pid
    assert in_scope(argv, False, "/usr/bin/systemd-run") == argv   # no systemd: as it is
    assert in_scope(argv, True, None) == argv


def test_a_scope_systemd_refuses_falls_back_to_the_command_alone(tmp_path: Path) -> None:
    from wlbridge.host.addr_handoff.system import spawn_detached

    mark = tmp_path / "ran"
    argv = [sys.executable, "-c", f"open({str(mark)!r}, 'w').write('x')"]
    spawn_detached(argv, ["false", "--", *argv], grace=5.0)      # systemd-run failing
    wait_for(mark.exists, 10, what="the command started without the scope")


def test_device_unit_names_are_escaped_as_systemd_does() -> None:
    assert service.device_unit("wlan0") == "sys-subsystem-net-devices-wlan0.device"
    assert service.device_unit("wl-x") == "sys-subsystem-net-devices-wl\\x2dx.device"
    if shutil.which("systemd-escape"):
        out = subprocess.run(["systemd-escape", "--path", "--suffix=device",
                              "/sys/subsystem/net/devices/wl-x.1"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert service.device_unit("wl-x.1") == out


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60,
                          check=False)


def test_install_writes_units_and_config_and_uninstall_removes_units(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit_dir, conf = tmp_path / "units", tmp_path / "etc" / "wlbridge.ini"
    prefix = tmp_path / "usr"
    res = run("install-service", "--uplink", "wlan0", "--no-start", "--unit-dir",
              str(unit_dir), "--config", str(conf), "--prefix", str(prefix))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in unit_dir.iterdir()) == sorted(service.UNITS)
    man = prefix / "share" / "man" / "man8" / "wlbridge.8"
    completion = prefix / "share" / "bash-completion" / "completions" / "wlbridge"
    assert man.read_text().startswith(".TH WLBRIDGE")
    assert "_shtab_wlbridge_subparsers" in completion.read_text()
    assert conf.read_text() == service.data_text("wlbridge.ini")
    conf.write_text("[wlbridge]\nbridge = br-mine\n")
    res = run("install-service", "--uplink", "wlan0", "--no-start", "--unit-dir",
              str(unit_dir), "--config", str(conf))
    assert res.returncode == 0 and conf.read_text() == "[wlbridge]\nbridge = br-mine\n"
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no",
                                 *(str(unit_dir / n) for n in service.UNITS)],
                                capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stderr
    torn_down = []
    monkeypatch.setattr(service, "teardown", lambda bridge: torn_down.append(bridge) or 0)
    assert cli.main(["install-service", "--uninstall", "--no-start", "--unit-dir",
                     str(unit_dir), "--bridge", "br-q", "--prefix", str(prefix)]) == 0
    assert not list(unit_dir.iterdir()) and torn_down == ["br-q"]
    assert not man.exists() and not completion.exists()
    assert conf.exists()                                    # the config file stays


def test_the_uplink_must_not_be_the_bridge() -> None:
    res = run("install-service", "--uplink", "br-wl", "--print")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "wlbridge install-service: --uplink must name the Wi-Fi interface, not the bridge"]
