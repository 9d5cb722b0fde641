"""Every refusal of the CLI that needs no root: the real command, one line, exit 2.

Each case runs ``python -m wlbridge ...`` as a user would and checks exit status 2,
exactly one line on stderr saying what is wrong, and no traceback.  The root-only
refusals (setup, teardown) are walked by tests/integration/test_cli_refusals_root.py;
`test_every_documented_refusal_is_walked` checks that together they cover every
refusal docs/usage.md lists.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_refusals import FEATURE_CASES, ROOT_CASES, assert_refused, documented_refusals
from wlbridge.app.status_server import serve
from wlbridge.cli import common
from wlbridge.cli import main as cli

CLI = [sys.executable, "-m", "wlbridge"]


def wlbridge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60,
                          check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ini(tmp_path: Path):
    def write(text: str) -> str:
        path = tmp_path / f"wlbridge{len(list(tmp_path.glob('*.ini')))}.ini"
        path.write_text(text)
        return str(path)
    return write


def snapshot(bridge: str = "br-wl", guests: int = 0) -> dict:
    return {"bridge": bridge, "connected": True, "uplink": {"name": "wlan0", "up": True},
            "guests": [{"port": f"vnet{i}", "mac": "52:54:00:00:00:01",
                        "ips": [{"ip": "192.0.2.1", "source": "arp", "expires": None}]}
                       for i in range(guests)],
            "counters": {}}


@pytest.fixture
def controller() -> Iterator:
    """A status endpoint (the real server) answering for a made-up bridge."""
    servers = []

    def start(bridge: str = "br-wl", guests: int = 0, flows: int = 0) -> str:
        flow = {"cookie": 0x574C010001000000, "table_id": 0, "priority": 0, "match": {},
                "instructions": [], "packet_count": 0}
        server = serve("127.0.0.1", 0, lambda: snapshot(bridge, guests),
                       {"/flows": lambda: [flow] * flows})
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# ---- run: flags and config file -----------------------------------------------------
# (refusal documented in docs/usage.md, command line, what the one line must say)
def run_cases(tmp: Path, ini) -> dict[str, tuple[list[str], str]]:
    base = ["run", "--uplink", "x", "--state-dir", str(tmp / "state"), "--status-port", "0",
            "--listen-port", str(free_port())]
    return {
        "a flag with a bad value": (
            base + ["--idle-timeout", "2"], "--idle-timeout: want a whole number, at least 5"),
        "a port out of range": (
            base + ["--status-port", "99999"], "want a whole number from 0 to 65535"),
        "the config file is missing": (
            base + ["--config-file", str(tmp / "missing.ini")], "not found"),
        "a config file that is not INI": (
            base + ["--config-file", ini("listen_port: 1\n[wlbridge\n")], "line"),
        "an unknown section": (
            base + ["--config-file", ini("[wlbrige]\nidle_timeout = 30\n")],
            "unknown section [wlbrige] (did you mean wlbridge?)"),
        "an unknown option": (
            base + ["--config-file", ini("[wlbridge]\nidel_timeout = 30\n")],
            "unknown option idel_timeout in [wlbridge] (did you mean idle_timeout?)"),
        "an unknown option in [DEFAULT]": (
            base + ["--config-file", ini("[DEFAULT]\nofp_tcp_listen_prt = 1\n")],
            "(did you mean ofp_tcp_listen_port?)"),
        "a value of the wrong type": (
            base + ["--config-file", ini("[wlbridge]\nlisten_port = sixteen\n")],
            "listen_port: want a whole number from 1 to 65535, got 'sixteen'"),
        "a value out of range or not one of the choices": (
            base + ["--config-file", ini("[wlbridge]\ndhcp_mode = sometimes\n")],
            "dhcp_mode: want one of broadcast, client-id, got 'sometimes'"),
        "a malformed `static_macs` entry": (
            base + ["--config-file", ini("[wlbridge]\nstatic_macs = g2=zz:zz:zz:zz:zz:zz\n")],
            "static_macs: entry 'g2=zz:zz:zz:zz:zz:zz' is not port=MAC"),
        "a group MAC in `static_macs`": (
            base + ["--static-macs", "vm=01:00:5e:00:00:01"], "is not a unicast MAC"),
        "the state directory cannot be created or written": (
            ["run", "--uplink", "x", "--status-port", "0", "--listen-port", str(free_port()),
             "--state-dir", ini("") + "/sub"], "not writable"),
    }


RUN_CASES = list(run_cases(Path("/nonexistent"), lambda text: "x"))


@pytest.mark.parametrize("refusal", RUN_CASES)
def test_run_refuses(refusal: str, tmp_path: Path, ini) -> None:
    argv, what = run_cases(tmp_path, ini)[refusal]
    assert_refused(wlbridge(*argv), what)
    assert not (tmp_path / "state").exists()  # nothing created


def test_run_refuses_a_taken_port(tmp_path: Path) -> None:
    for flag in ("--status-port", "--listen-port"):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = str(taken.getsockname()[1])
            ports = {"--status-port": str(free_port()), "--listen-port": str(free_port()),
                     flag: port}
            res = wlbridge("run", "--uplink", "x", "--state-dir", str(tmp_path / "state"),
                           *[x for kv in ports.items() for x in kv])
        assert_refused(res, port)
        assert flag in res.stderr or flag[2:].replace("-", "_") in res.stderr  # how to fix
    assert not (tmp_path / "state").exists()


# ---- status and flows ---------------------------------------------------------------
def test_status_and_flows_without_a_controller() -> None:
    for command in ("status", "flows"):
        res = wlbridge(command, "--url", f"http://127.0.0.1:{free_port()}")
        assert_refused(res, "the controller is not running")


def test_status_and_flows_refuse_another_bridges_controller(controller) -> None:
    url = controller("br-other")
    for command in ("status", "flows"):
        res = wlbridge(command, "--url", url, "--bridge", "br-wl")
        assert_refused(res, "serves bridge br-other, not br-wl")
        ok = wlbridge(command, "--url", url, "--bridge", "br-other")
        assert ok.returncode == 0 and "br-other" in ok.stdout.splitlines()[0], ok


def test_output_into_a_closed_pipe_is_dropped_quietly(controller) -> None:
    """`wlbridge status | head -1`: no traceback, no complaint, the command's own status."""
    url = controller(guests=5000, flows=5000)
    for command in ("status", "flows"):
        proc = subprocess.Popen(CLI + [command, "--url", url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        proc.stdout.close()  # like `head -1` exiting
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0 and err == "", err
        assert first.startswith(b"bridge")


# ---- argument errors, root, demo ----------------------------------------------------
@pytest.mark.parametrize("argv,what", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
    (["status", "--jsn"], "unrecognized arguments: --jsn"),
    (["setup"], "the following arguments are required: --uplink"),
    (["setup", "--uplink", "wlan0", "--packet-in-rate", "many"], "invalid int value"),
    (["demo", "--guests", "9"], "--guests: want 1 to 8 guests, got 9"),
    (["demo", "--guests", "0"], "--guests: want 1 to 8 guests, got 0"),
])
def test_bad_arguments_are_one_line(argv: list[str], what: str) -> None:
    assert_refused(wlbridge(*argv), what)


@pytest.mark.parametrize("argv", [
    ["setup", "--uplink", "wlan0"], ["teardown"], ["demo"]])
def test_root_commands_refuse_other_users(argv: list[str], monkeypatch, capsys) -> None:
    # in-process: root running the tests cannot hand the venv to another user
    monkeypatch.setattr(common, "geteuid", lambda: 1000)
    res = subprocess.CompletedProcess(argv, cli.main(argv), *capsys.readouterr())
    assert_refused(res, "must be run as root")


def test_every_documented_refusal_is_walked() -> None:
    """docs/usage.md's refusal tables name no refusal that no test runs, and the other way
    round: the tests above (no root) and the integration walk (root) cover them all."""
    walked = ({("run", r) for r in RUN_CASES} | set(ROOT_CASES) | set(UNIT_CASES)
              | set(FEATURE_CASES))
    assert documented_refusals() == walked
    root = Path(__file__).resolve().parents[2]
    for where in FEATURE_CASES.values():  # the tests named there exist
        path, _, name = where.partition("::")
        assert f"def {name}(" in (root / path).read_text(), where


# refusals walked by the tests above other than `test_run_refuses`
UNIT_CASES = {
    ("run", "the status or OpenFlow port is taken"),
    ("status", "the controller is not running"),
    ("status", "the controller at `--url` serves another bridge than `--bridge`"),
    ("setup", "not root"), ("teardown", "not root"), ("demo", "not root"),
    ("demo", "`--guests` outside 1–8"),
    ("wlbridge", "an unknown command, option or malformed argument"),
}
