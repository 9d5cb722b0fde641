"""Mininet users: `mn --custom topologies/mininet_wifi.py --topo wifilan` with wlbridge as the
remote controller, the positive control without a controller, Mininet's Python API, and
`mn -c` after a crashed run.

Debian's `mininet` runs under Debian's python3 (not the venv): `mn` and the API script
(`mininet_api.py`) are subprocesses.  `mn` loads `mininet_safe.py` after the topology: on a
failure `mn` would otherwise run Mininet's cleanup, which deletes every OVS bridge on the machine.
Each test names its switch from `free_prefix()`; the controller is the real `wlbridge run`.

`mn -c` is Mininet's real cleanup, and broad (every ping, controller and ryu-manager killed,
every OVS bridge and *-ethN link deleted, `rm -f /tmp/*.log`): its test runs it, always, in a
sandbox of its own (`mininet_sandbox.sh`: mount, PID and network namespaces, tmpfs on /tmp and
/run, a private Open vSwitch), with the Mininet run and the controller inside
(`mininet_clean_run.py`); what it plants on the machine first must all survive.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import CLI, cannot, free_port, wait_for

from topologies import OvsBridge, apfilter, free_prefix, subnet_for
from topologies.ovs import list_bridges

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"
CUSTOM = f"{ROOT / 'topologies' / 'mininet_wifi.py'},{HERE / 'mininet_safe.py'}"



def mininet_problem() -> str | None:
    if not shutil.which("mn"):
        return "Mininet is not installed (apt-get install mininet, or make install)"
    res = subprocess.run([SYSTEM_PYTHON, "-c", "import mininet.net, networkx, pyroute2"],
                         capture_output=True, text=True, check=False)
    if res.returncode:
        return f"{SYSTEM_PYTHON} cannot import Mininet's topology needs: {res.stderr.strip()}"
    return None


@pytest.fixture(autouse=True)
def _need_mininet():
    problem = mininet_problem()
    if problem:
        cannot(problem)


def in_system_python(code: str, *args: str) -> str:
    """Python code (the repository on sys.path) under Debian's python3; its output."""
    script = f"import sys; sys.path.insert(0, sys.argv[1]); {code}"
    res = subprocess.run([SYSTEM_PYTHON, "-c", script, str(ROOT), *args], capture_output=True,
                         text=True, check=False)
    return res.stdout.strip()


@pytest.fixture
def names():
    """A switch name and LAN prefix no one else uses; the topology's leftovers removed after."""
    prefix = free_prefix()
    switch = f"{prefix}s1"
    yield switch, prefix
    in_system_python("from topologies.mnlan import cleanup_leftovers; "
                     "cleanup_leftovers(sys.argv[2])", switch)
    if switch in list_bridges():
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", switch], check=False)


def static_guest(prefix: str) -> str:
    """A static address for a guest in the topology's LAN (basic_lan's .51)."""
    net = subnet_for(prefix)
    return f"{net.network_address + 51}/{net.prefixlen}"


def mn_env(switch: str) -> dict:
    return {**os.environ, "WLBRIDGE_CLI": " ".join([*CLI]), "MN_TEST_BRIDGE": switch}


class Wlbridge:
    """`wlbridge run --bridge SWITCH` listening on a free port (started before Mininet, as a
    Mininet user starts a remote controller)."""

    def __init__(self, switch: str, workdir: Path):
        self.switch, self.port, self.status_port = switch, free_port(), free_port()
        self.log = workdir / "controller.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "-v", "run", "--bridge", switch, "--listen-port", str(self.port),
                 "--status-port", str(self.status_port), "--state-dir", str(workdir / "state")],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: "waiting up to" in self.logs() or self.proc.poll() is not None,
                 timeout=30, what="wlbridge run to start")
        assert self.proc.poll() is None, self.logs()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def wlbridge_run(names, tmp_path):
    ctl = Wlbridge(names[0], tmp_path)
    yield ctl
    ctl.stop()


def mn(switch: str, prefix: str, commands: list[str], *, topo: str = "",
       controller: str = "none", timeout: float = 180) -> str:
    """`mn --custom ... --topo wifilan,...` fed CLI commands on stdin; its output."""
    argv = ["mn", "--custom", CUSTOM, "--topo", f"wifilan,switch={switch},prefix={prefix}{topo}",
            "--switch", "ovs,datapath=user,protocols=OpenFlow13", "--controller", controller]
    res = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True,
                         text=True, timeout=timeout, env=mn_env(switch), check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "*** Done" in out, out
    return out


def counters_in(out: str) -> list[dict[str, int]]:
    """Every `ap nft -j list counters ...` answer in mn's output, as packet counts."""
    found = []
    for line in out.splitlines():
        i = line.find('{"nftables"')
        if i >= 0:
            found.append({k: c.packets for k, c in apfilter.parse_counters(line[i:]).items()})
    return found


COUNTERS = "ap " + " ".join(apfilter.list_counters_argv())


def api(args: dict, switch: str, *, hold: bool = False) -> dict | subprocess.Popen:
    """mininet_api.py under Debian's python3: its JSON line (or, with hold, the process)."""
    argv = [SYSTEM_PYTHON, str(HERE / "mininet_api.py"), json.dumps({**args, "hold": hold})]
    if hold:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=mn_env(switch), start_new_session=True)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=mn_env(switch),
                         check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert res.returncode == 0 and lines, res.stdout + res.stderr
    return json.loads(lines[-1])


# ---------------------------------------------------------------- mn, the command line


def test_mn_guests_lease_and_ping_through_the_one_mac_ap(names, wlbridge_run):
    switch, prefix = names
    out = mn(switch, prefix, [
        COUNTERS,
        "g1 dhclient -v -1 g1-eth0",
        "g2 dhclient -v -1 g2-eth0",
        "g1 ping -c1 -W2 peer",
        "pingall",
        COUNTERS,
        f"sh ovs-ofctl -O OpenFlow13 dump-flows {switch}",
        f"sh ovs-vsctl get-controller {switch}",
    ], controller=f"remote,ip=127.0.0.1,port={wlbridge_run.port}")
    assert len(re.findall(r"bound to 10\.231\.\d+\.\d+", out)) == 2, out
    assert "1 packets transmitted, 1 received" in out, out
    assert "*** Results: 0% dropped (12/12 received)" in out, out
    before, after = counters_in(out)
    # Every frame reached the AP with the station MAC; the AP dropped none.
    assert after["from_station"] > before["from_station"]
    assert after["foreign_src"] == before["foreign_src"] == 0
    assert after["foreign_dst"] == before["foreign_dst"] == 0
    assert "cookie=0x574c" in out                 # wlbridge's flows, a cookie per purpose
    assert f"tcp:127.0.0.1:{wlbridge_run.port}" in out
    assert f"created Open vSwitch bridge {switch} over uplink {switch}-wl0" in out
    assert switch not in list_bridges()           # Mininet's exit removed it


def test_mn_positive_control_plain_bridge_fails_at_the_ap(names):
    """No controller: Mininet's own OVS bridge with one NORMAL flow, as a wired LAN would
    have: the guest gets no lease and cannot reach the peer, and the AP counts the guest's
    frames it dropped for their source MAC."""
    switch, prefix = names
    out = mn(switch, prefix, [
        COUNTERS,
        "g1 timeout 8 dhclient -v -1 g1-eth0",
        f"sh ovs-ofctl -O OpenFlow13 dump-flows {switch}",
        f"g1 ip addr add {static_guest(prefix)} dev g1-eth0",   # as a static-address guest
        "g1 ping -c2 -W1 peer",
        COUNTERS,
    ])
    assert "bound to" not in out, out
    assert "actions=NORMAL" in out, out
    assert "2 packets transmitted, 0 received" in out or "100% packet loss" in out, out
    before, after = counters_in(out)
    assert after["foreign_src"] - before["foreign_src"] >= 3, (before, after)
    assert switch not in list_bridges()


# ---------------------------------------------------------------- Mininet's Python API


@pytest.mark.parametrize("dhcp,ipv6", [("dnsmasq", 0), ("isc", 0), ("dnsmasq", 1)])
def test_python_api_guests_lease_and_ping(names, wlbridge_run, dhcp, ipv6):
    switch, prefix = names
    if dhcp == "isc" and not shutil.which("dhcpd"):
        cannot("ISC dhcpd not installed (isc-dhcp-server)")
    got = api({"switch": switch, "prefix": prefix, "port": wlbridge_run.port, "dhcp": dhcp,
               "ipv6": ipv6}, switch)
    assert all(got["leased"].values()), got["leased"]
    leased = sorted((mac, got["leased"][g]) for g, mac in got["guest_macs"].items())
    assert sorted(map(tuple, got["leases"])) == leased      # the server leased to guest MACs
    assert got["loss"] == 0
    assert got["ap"]["foreign_src"] == got["ap"]["foreign_dst"] == 0
    assert got["ap"]["from_station"] > 0
    if ipv6:
        assert all(got["ping6"].values()), got


def test_python_api_positive_control(names):
    switch, prefix = names
    got = api({"switch": switch, "prefix": prefix, "port": None, "dhcp_timeout": 8,
               "static": static_guest(prefix)}, switch)
    assert not any(got["leased"].values())
    assert got["g1_ping_peer"] is False
    assert got["ap"]["foreign_src"] >= 3


# ---------------------------------------------------------------- mn -c


class HostCanaries:
    """What `mn -c` would destroy if it reached the machine: a `ping`, a process named
    `controller` and one with `mininet:` on its command line (`killall`, `pkill -f`), an OVS
    bridge, a `*-eth9` link in the root namespace, and a /tmp/*.log file."""

    def __init__(self, prefix: str, workdir: Path):
        self.prefix, self.workdir = prefix, workdir
        self.bridge, self.link = OvsBridge(f"{prefix}cb"), f"{prefix}c-eth9"
        self.log = Path(f"/tmp/{prefix}-canary.log")
        self.procs: dict[str, subprocess.Popen] = {}

    def plant(self) -> None:
        sleeper = self.workdir / "controller"     # comm "controller": Mininet's killall
        sleeper.symlink_to(shutil.which("sleep"))
        for name, argv in [("ping", ["ping", "-i", "1", "127.0.0.1"]),
                           ("controller", [str(sleeper), "300"]),
                           ("mininet:", ["sh", "-c", f"sleep 300; : mininet:{self.prefix}"])]:
            self.procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                start_new_session=True)
        self.bridge.create()
        subprocess.run(["ip", "link", "add", self.link, "type", "veth", "peer", "name",
                        f"{self.prefix}c-p"], check=True)
        self.log.write_text("mn -c must not remove this\n")

    def damage(self) -> list[str]:
        """What of the canaries is gone."""
        gone = [f"process {n}" for n, p in self.procs.items() if p.poll() is not None]
        gone += [] if self.bridge.exists() else [f"bridge {self.bridge.name}"]
        links = subprocess.run(["ip", "-o", "link", "show", "dev", self.link],
                               capture_output=True, check=False)
        gone += [] if links.returncode == 0 else [f"link {self.link}"]
        return gone + ([] if self.log.exists() else [str(self.log)])

    def remove(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        self.bridge.delete()
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, check=False)
        self.log.unlink(missing_ok=True)


@pytest.fixture
def host_canaries(tmp_path):
    canaries = HostCanaries(free_prefix(), tmp_path)
    try:
        canaries.plant()
        yield canaries
    finally:
        canaries.remove()


def test_mn_clean_leaves_nothing_of_wlbridge(tmp_path, host_canaries):
    """A Mininet run dies (SIGKILL: no teardown); `mn -c --custom topologies/mininet_wifi.py`
    then leaves no process, file, bridge or link of the topology behind.

    `mn -c` is broad (it kills every ping, controller and ryu-manager, deletes every OVS bridge
    and *-ethN link, `rm -f /tmp/*.log`), so all of it, the controller and the Mininet run
    included, runs in a sandbox of its own (mininet_sandbox.sh: mount, PID and network
    namespaces, private /tmp and /run, a private Open vSwitch): the machine's ping, processes,
    bridge, link and log file planted before are all still there after."""
    prefix = free_prefix()
    switch = f"{prefix}s1"
    res = subprocess.run([str(HERE / "mininet_sandbox.sh"), str(tmp_path), sys.executable,
                          str(HERE / "mininet_clean_run.py"), switch, prefix],
                         capture_output=True, text=True, timeout=240, check=False)
    assert not host_canaries.damage(), host_canaries.damage()   # the machine untouched
    sandbox_log = res.stdout + res.stderr + "".join(
        f"\n--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(tmp_path.glob("*.log")))
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert res.returncode == 0 and lines, sandbox_log
    got = json.loads(lines[-1])
    assert got["bridge_before"], got                # the killed run left its bridge ...
    assert any("dnsmasq" in p for p in got["left_before"]), got    # ... and its DHCP server
    assert got["mn_c_rc"] == 0, got["mn_c_output"]
    # mn -c did its broad cleanup in the sandbox
    assert not got["sandbox_ping_alive"] and not got["sandbox_log_left"], got
    assert got["marked"] == "[]" and not got["left"], got
    assert not got["node_pids_alive"], got
    assert switch not in got["bridges"], got
    assert not got["workdirs"], got
    assert not [ln for ln in got["links"] if ln.startswith(f"{switch}-")], got


def leftover_processes(switch: str) -> list[str]:
    """Processes of the topology: marked, or holding its work directory on the command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (f"wlbridge-mininet:{switch}" in cmd
                or f"WLBRIDGE_MININET={switch}".encode() in env):
            found.append(f"{pid} {cmd}")
    return found


def test_cleanup_callback_after_a_crashed_run(names, wlbridge_run):
    """What `mn -c --custom` adds to Mininet's cleanup, run alone (safe on a shared machine):
    after a Mininet run is killed, no DHCP server, radvd or guest DHCP client of the topology
    is left, nor its files."""
    switch, prefix = names
    proc = api({"switch": switch, "prefix": prefix, "port": wlbridge_run.port, "ipv6": 1},
               switch, hold=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("{"):
            break
    assert seen and seen[-1].startswith("{"), "".join(seen)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = leftover_processes(switch)
    assert any("dnsmasq" in p for p in left) and any("dhclient" in p for p in left), left
    in_system_python("from topologies.mnlan import cleanup_leftovers; "
                     "cleanup_leftovers(sys.argv[2])", switch)
    assert wait_for(lambda: not leftover_processes(switch), timeout=10,
                    what=f"no process left: {leftover_processes(switch)}")
    assert not Path(f"/tmp/wlbridge-mininet:{switch}").exists()
