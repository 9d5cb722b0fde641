"""`ryu-manager wlbridge_app` on Ryu 4.34 / Python 3.9 (issue #5).

The test runs the real `ryu-manager` from `.venv-ryu/` (built by `.ci/ryu-venv.sh` when missing)
against an OVS netdev bridge of its own: an "uplink" veth whose peer sits in a namespace, and a
"guest" veth.  It waits for wlbridge's flows (cookies 0x574c...) and for ``/status`` to report
``"framework": "ryu"`` and a connected switch, then stops ryu-manager with SIGTERM and expects a
clean exit (status 0, state saved by the app's ``close()``) within a few seconds; the same for
SIGINT (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from harness import in_ci
from tls_pki import assert_tls_listener, make_pki

from topologies.procs import WaitTimeout, wait_for

BUILD_TIMEOUT = 900  # first build only (pip downloads); afterwards the script is a quick no-op
# the first test's fixture may build .venv-ryu: beyond pytest-timeout's default (setup.cfg)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(BUILD_TIMEOUT + 300)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "ryu-venv.sh"
VENV = Path(os.environ.get("RYU_VENV", ROOT / ".venv-ryu"))
RYU_MANAGER = VENV / "bin" / "ryu-manager"
WAIT = 20.0  # seconds for flows and /status once ryu-manager runs
STOP_TIMEOUT = 5.0  # seconds ryu-manager may take to exit after SIGTERM

REFLECT = 0x574C02  # cookie magic "WL" + Purpose.REFLECT
GUEST_PORT = 0x574C06  # cookie magic "WL" + Purpose.GUEST_PORT


def run(*cmd: str, check: bool = True, timeout: float = 30) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(what: str, fn, timeout: float, proc: subprocess.Popen, log: Path):
    """`wait_for` fn() (its exceptions count as "not yet"); fail with ryu-manager's log when
    time runs out, at once when ryu-manager exits."""
    def ready():
        if proc.poll() is not None:
            pytest.fail(f"ryu-manager exited ({proc.returncode}) while waiting for {what}:\n"
                        f"{tail(log)}")
        return fn()

    try:
        return wait_for(ready, timeout, 0.2, what=what, retry=(Exception,))
    except WaitTimeout as exc:
        pytest.fail(f"{exc}:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def ryu_manager() -> Path:
    """ryu-manager from .venv-ryu, built by the script when missing or out of date."""
    try:
        proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT, check=False)
        problem = None if proc.returncode == 0 else (
            f".ci/ryu-venv.sh failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
            f"{proc.stderr[-3000:]}")
    except subprocess.TimeoutExpired:
        problem = f".ci/ryu-venv.sh did not finish in {BUILD_TIMEOUT}s"
    if problem is None and not os.access(RYU_MANAGER, os.X_OK):
        problem = f"{RYU_MANAGER} missing after .ci/ryu-venv.sh"
    if problem:
        if in_ci():
            pytest.fail(f"CI is set but the Ryu venv cannot be built: {problem}", pytrace=False)
        pytest.skip(problem)
    return RYU_MANAGER


class Rig:
    """An OVS netdev bridge with an uplink veth (peer in a namespace) and a guest veth."""

    def __init__(self) -> None:
        self.name = "wr" + secrets.token_hex(2)
        self.bridge = self.name
        self.ns = f"{self.name}-ns"
        self.uplink, self.uplink_peer = f"{self.name}-up", f"{self.name}-upp"
        self.guest, self.guest_peer = f"{self.name}-g0", f"{self.name}-g0p"

    def build(self) -> Rig:
        run("ip", "netns", "add", self.ns)
        for port, peer in ((self.uplink, self.uplink_peer), (self.guest, self.guest_peer)):
            run("ip", "link", "add", port, "type", "veth", "peer", "name", peer)
            run("ip", "link", "set", peer, "netns", self.ns)
            run("ethtool", "-K", port, "tx", "off")
            run("ip", "netns", "exec", self.ns, "ethtool", "-K", peer, "tx", "off")
            run("ip", "link", "set", port, "up")
            run("ip", "-n", self.ns, "link", "set", peer, "up")
        run("ovs-vsctl", "--timeout=10", "add-br", self.bridge,
            "--", "set", "bridge", self.bridge, "datapath_type=netdev", "fail_mode=secure",
            "protocols=OpenFlow13", "other-config:disable-in-band=true",
            "--", "add-port", self.bridge, self.uplink,
            "--", "add-port", self.bridge, self.guest)
        return self

    def set_controller(self, port: int) -> None:
        # a short backoff: OVS reconnects within a second once ryu-manager listens
        run("ovs-vsctl", "--timeout=10",
            "--", "--id=@c", "create", "Controller", f"target=\"tcp:127.0.0.1:{port}\"",
            "max_backoff=1000",
            "--", "set", "bridge", self.bridge, "controller=@c")

    def ofport(self, ifname: str) -> int:
        return int(run("ovs-vsctl", "--timeout=10", "get", "Interface", ifname, "ofport"))

    def mac(self, ifname: str) -> str:
        return Path(f"/sys/class/net/{ifname}/address").read_text().strip().lower()

    def flows(self) -> list[tuple[int, str]]:
        """(cookie, line) of every flow on the bridge."""
        out = run("ovs-ofctl", "-O", "OpenFlow13", "--no-names", "dump-flows", self.bridge)
        found = []
        for line in out.splitlines():
            m = re.search(r"cookie=(0x[0-9a-f]+)", line)
            if m:
                found.append((int(m.group(1), 16), line.strip()))
        return found

    def teardown(self) -> None:
        run("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", self.bridge, check=False)
        for port in (self.uplink, self.guest):  # deleting one end removes the peer too
            if Path(f"/sys/class/net/{port}").exists():
                run("ip", "link", "del", port, check=False)
        run("ip", "netns", "del", self.ns, check=False)


@pytest.fixture
def rig():
    r = Rig()
    try:
        yield r.build()
    finally:
        r.teardown()


def stop(proc: subprocess.Popen) -> None:
    """Last-resort cleanup: make sure the process is gone."""
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_ryu_manager_runs_wlbridge_app(ryu_manager: Path, rig: Rig, tmp_path: Path,
                                       stop_signal: int) -> None:
    proc, of_port, status_port, log, state_dir = start_ryu(
        ryu_manager, rig, tmp_path, "--ofp-listen-host", "127.0.0.1",
        extra_conf="ovsdb = unix:/var/run/openvswitch/db.sock\n")
    try:
        rig.set_controller(of_port)
        uplink_no, guest_no = rig.ofport(rig.uplink), rig.ofport(rig.guest)
        uplink_mac = rig.mac(rig.uplink)

        def wlbridge_flows():
            flows = rig.flows()
            reflect = [line for cookie, line in flows
                       if cookie >> 40 == REFLECT and f"in_port={uplink_no}" in line
                       and f"dl_src={uplink_mac}" in line and "actions=drop" in line]
            guest = [line for cookie, line in flows
                     if cookie >> 40 == GUEST_PORT and cookie & 0xFFFFFF == guest_no
                     and f"in_port={guest_no}" in line and "CONTROLLER" in line]
            return (reflect, guest) if reflect and guest else None

        until("wlbridge flows on the bridge", wlbridge_flows, WAIT, proc, log)
        assert all(c >> 48 == 0x574C for c, _ in rig.flows()), rig.flows()

        # the host's own address on the bridge's internal port (pyroute2 under eventlet); a /32
        # in a test range adds no route
        host_ip = f"10.231.1.{secrets.randbelow(250) + 1}"
        run("ip", "link", "set", rig.bridge, "up")
        run("ip", "addr", "add", f"{host_ip}/32", "dev", rig.bridge)

        def status():
            url = f"http://127.0.0.1:{status_port}/status"
            with urllib.request.urlopen(url, timeout=2) as resp:
                snap = json.load(resp)
            # (the bridge's IPv6 link-local address may be reported before the IPv4 one)
            return snap if snap.get("connected") and host_ip in snap.get("host_ips", ()) else None

        snap = until("/status with connected true", status, WAIT, proc, log)
        assert [ip for ip in snap["host_ips"] if ":" not in ip] == [host_ip]  # (+ IPv6 ones)
        assert snap["framework"] == "ryu"
        assert snap["bridge"] == rig.bridge
        assert snap["uplink"]["name"] == rig.uplink and snap["uplink"]["port_no"] == uplink_no
        assert snap["station_mac"] == uplink_mac
        assert [g["port_no"] for g in snap["guests"]] == [guest_no]
        # the flow-statistics round trip through the switch (`wlbridge flows`)
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/flows", timeout=5) as resp:
            switch_flows = json.load(resp)
        assert any(f["cookie"] >> 40 == REFLECT for f in switch_flows), switch_flows

        proc.send_signal(stop_signal)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ryu-manager still running {STOP_TIMEOUT}s after signal {stop_signal}:\n"
                        f"{tail(log)}")
        assert code == 0, f"ryu-manager exited with {code} after signal {stop_signal}:\n{tail(log)}"
        text = log.read_text(errors="replace")
        assert "wlbridge stopped" in text, f"close() did not run:\n{tail(log)}"
        assert "Traceback" not in text, tail(log, 80)
        assert list(state_dir.iterdir()), "no state saved in the state directory"
        # fail_mode=secure: the flows stay in place without the controller
        assert any(c >> 40 == REFLECT for c, _ in rig.flows())
    finally:
        stop(proc)


def start_ryu(ryu_manager: Path, rig: Rig, tmp_path: Path, *args: str, extra_conf: str = ""):
    """ryu-manager running wlbridge_app for `rig` (its own ports, state and log)."""
    of_port, status_port = free_port(), free_port()
    state_dir = tmp_path / "state"
    conf = tmp_path / "wlbridge.conf"
    conf.write_text(
        "[wlbridge]\n"
        f"bridge = {rig.bridge}\n"
        f"uplink = {rig.uplink}\n"
        f"state_dir = {state_dir}\n"
        f"status_port = {status_port}\n" + extra_conf)
    log = tmp_path / "ryu-manager.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(ryu_manager), "--config-file", str(conf), "--ofp-tcp-listen-port", str(of_port),
             *args, "wlbridge_app"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=tmp_path,
            # (only signal.signal runs between fork and exec: no lock a thread could hold)
            preexec_fn=_ctrl_c_as_in_a_terminal)  # noqa: PLW1509
    return proc, of_port, status_port, log, state_dir


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT's default action in the child, as for a command started from a terminal: a
    test suite started in the background (``make test &``) ignores SIGINT, children inherit
    that, and a Python started with SIGINT ignored (rightly) keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def get_status(status_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=2) as resp:
        return json.load(resp)


def connected_metric(status_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    found = re.search(r"^wlbridge_switch_connected (\S+)$", text, re.MULTILINE)
    return float(found.group(1))


def listening(port: int) -> set[str]:
    out = run("ss", "-Hltn", f"sport = :{port}")
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def test_ryu_manager_listens_on_loopback_and_notices_a_lost_switch(
        ryu_manager: Path, rig: Rig, tmp_path: Path) -> None:
    # no --ofp-listen-host: Ryu's own default would be 0.0.0.0
    proc, of_port, status_port, log, _ = start_ryu(ryu_manager, rig, tmp_path)
    try:
        rig.set_controller(of_port)
        snap = until("/status with connected true",
                        lambda: (s := get_status(status_port))["connected"] and s,
                        WAIT, proc, log)
        assert listening(of_port) == {"127.0.0.1"}, run("ss", "-Hltn")
        generation = snap["generation"]

        # a second ryu-manager for the same bridge (its own state directory and ports)
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        second, *_, second_log, second_state = start_ryu(ryu_manager, rig, second_dir)
        try:
            code = second.wait(timeout=30)
        finally:
            stop(second)
        text = second_log.read_text(errors="replace")
        assert code != 0 and f"(pid {proc.pid}) is already running for bridge {rig.bridge}" \
            in text, text
        assert "Traceback" not in text and not (second_state / f"{rig.bridge}.json").exists()

        run("ovs-vsctl", "--timeout=10", "del-controller", rig.bridge)
        until("/status with connected false",
                 lambda: not get_status(status_port)["connected"], 15, proc, log)
        assert connected_metric(status_port) == 0
        assert "disconnected" in log.read_text(errors="replace")

        rig.set_controller(of_port)  # back: a resync under a new generation
        until("the switch to reconnect",
                 lambda: (s := get_status(status_port))["connected"]
                 and s["generation"] > generation, WAIT, proc, log)
        assert connected_metric(status_port) == 1

        run("ovs-vsctl", "--timeout=10", "del-br", rig.bridge)
        until("/status with connected false after del-br",
                 lambda: not get_status(status_port)["connected"], 15, proc, log)
        assert "Traceback" not in log.read_text(errors="replace"), tail(log, 80)
    finally:
        stop(proc)


def test_ryu_manager_refuses_a_wildcard_listen_host_without_tls(
        ryu_manager: Path, rig: Rig, tmp_path: Path) -> None:
    proc, of_port, _, log, state_dir = start_ryu(ryu_manager, rig, tmp_path,
                                                 "--ofp-listen-host", "0.0.0.0")
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ryu-manager listens on 0.0.0.0 without TLS:\n{tail(log)}")
    finally:
        stop(proc)
    text = log.read_text(errors="replace")
    assert code != 0
    assert "refusing to listen for OpenFlow on 0.0.0.0 without TLS" in text, text
    assert "Traceback" not in text, text
    assert not listening(of_port)
    assert not (state_dir / f"{rig.bridge}.json").exists()


def test_ryu_manager_tls_listener_serves_every_reconnection(ryu_manager: Path, rig: Rig,
                                                            tmp_path: Path) -> None:
    """A non-loopback address with TLS is allowed; Ryu 4.34's own TLS server would serve one
    connection only (`wlbridge.app.ryu_tls`)."""
    pki = make_pki(tmp_path)
    proc, of_port, _, log, _ = start_ryu(
        ryu_manager, rig, tmp_path, "--ofp-listen-host", "0.0.0.0",
        extra_conf=(f"tls_private_key = {pki['ctl-key']}\ntls_certificate = {pki['ctl']}\n"
                    f"tls_ca_cert = {pki['ca']}\n"))
    try:
        until("the TLS listener", lambda: listening(of_port) == {"0.0.0.0"}, WAIT, proc, log)
        assert f"OpenFlow ssl:0.0.0.0:{of_port}" in log.read_text(errors="replace")
        assert_tls_listener(of_port, pki)
        assert proc.poll() is None
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "TLS handshake with" in text, text
    finally:
        stop(proc)


def test_ryu_manager_connects_to_a_listening_bridge(ryu_manager: Path, rig: Rig,
                                                    tmp_path: Path) -> None:
    """The connection model `wlbridge setup` configures (issue 13): the bridge listens on its
    root-only Unix socket (``punix:``) and the app connects to it, under ryu-manager too;
    a restarted ryu-manager is connected again without waiting for Open vSwitch's backoff."""
    target = f"punix:/var/run/openvswitch/{rig.bridge}.controller"
    run("ovs-vsctl", "--timeout=10", "set-controller", rig.bridge, target)
    status_port = free_port()
    conf = tmp_path / "wlbridge.conf"
    conf.write_text(
        "[wlbridge]\n"
        f"bridge = {rig.bridge}\n"
        f"uplink = {rig.uplink}\n"
        f"state_dir = {tmp_path / 'state'}\n"
        f"status_port = {status_port}\n")
    log = tmp_path / "ryu-manager.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}

    def status():
        url = f"http://127.0.0.1:{status_port}/status"
        with urllib.request.urlopen(url, timeout=2) as resp:
            snap = json.load(resp)
        return snap if snap.get("connected") else None

    for round_ in range(2):   # a start, then a restart
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(ryu_manager), "--config-file", str(conf), "--ofp-tcp-listen-port",
                 str(free_port()), "wlbridge_app"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=tmp_path)
        try:
            snap = until(f"/status connected (round {round_})", status, WAIT, proc, log)
            assert snap["framework"] == "ryu"
            assert snap["uplink"]["name"] == rig.uplink
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=STOP_TIMEOUT) == 0, tail(log)
        finally:
            stop(proc)
    text = log.read_text(errors="replace")
    assert text.count(f"connected to the bridge at unix:/var/run/openvswitch/{rig.bridge}"
                      ".controller") == 2, tail(log, 80)
    assert "Traceback" not in text, tail(log, 80)
