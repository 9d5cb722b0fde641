"""`wlbridge docker-plugin` with a real dockerd (Debian's docker.io, started by the test: no
iptables, no default bridge, vfs storage, private root, exec root and socket, live-restore),
the emulated LAN, dnsmasq and the controller (issue 23).  The image is made offline (`docker
import` of a static busybox root).  The plugin's socket is /run/docker/plugins/<prefix>.sock
(where dockerd looks), so its driver name is the world's prefix and parallel runs never meet.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from harness import wait_for

from topologies.ovs import vsctl

pytestmark = pytest.mark.integration

HOST_RESOLV = Path("/etc/resolv.conf")
BUSYBOX = "/bin/busybox"
PLUGIN_DIR = Path("/run/docker/plugins")


def need(path: str, what: str) -> None:
    if not os.path.exists(path):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} ({path}) is missing under CI: `make deps` installs it")
        pytest.skip(f"{what} ({path}) is not installed (`make deps`)")


class Docker:
    def __init__(self, base: Path) -> None:
        self.base, self.proc = base, None
        self.sock = base / "d.sock"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--storage-driver=vfs", "--live-restore", "--data-root", str(self.base / "data"),
             "--exec-root", str(self.base / "exec"), "-H", f"unix://{self.sock}",
             "--pidfile", str(self.base / "d.pid")],
            stdout=open(self.base / "dockerd.log", "ab"),  # noqa: SIM115 - the daemon's
            stderr=subprocess.STDOUT)
        wait_for(lambda: self("version", check=False).returncode == 0, timeout=60,
                 what="dockerd to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __call__(self, *args: str, check: bool = True, timeout: float = 120
                 ) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}\n"
                                 + (self.base / "dockerd.log").read_text()[-1000:]
                                 + (self.base / "plugin.log").read_text()[-3000:])
        return proc


class Plugin:
    def __init__(self, bridge: str, name: str, base: Path) -> None:
        self.bridge, self.base, self.proc = bridge, base, None
        self.sock = PLUGIN_DIR / f"{name}.sock"
        self.log = base / "plugin.log"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wlbridge", "-v", "docker-plugin", "--bridge", self.bridge,
             "--socket", str(self.sock), "--state", str(self.base / "plugin.json"),
             "--run-dir", str(self.base / "run")],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        wait_for(self.sock.exists, timeout=20, what="the plugin's socket")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def env(make_world, wlbridge_on):
    need("/usr/sbin/dockerd", "docker.io")
    need(BUSYBOX, "busybox")
    world = make_world(n_guests=0, ipv6=True, dns_option=True, router_option=True)
    wl = wlbridge_on(world, guests=[])
    base = Path(tempfile.mkdtemp(prefix="xct-dk-"))
    docker, plugin = Docker(base), Plugin(wl.bridge, world.prefix, base)
    plugin.start()
    docker.start()
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for tool in ("sh", "sleep", "ip", "ping", "cat"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    for d in ("etc", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir()
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(base / "bb.tar"), "."], check=True)
    docker("import", str(base / "bb.tar"), "xct-busybox")
    yield world, wl, docker, plugin
    docker("rm", "-f", "-v", *docker("ps", "-aq").stdout.split(), check=False)
    docker("network", "prune", "-f", check=False)
    docker.stop()
    plugin.stop()
    if plugin.sock.exists():
        plugin.sock.unlink()
    subprocess.run(["umount", "-R", str(base / "exec")], check=False, capture_output=True)
    subprocess.run(["umount", "-R", str(base / "data")], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def pid_of(docker: Docker, name: str) -> str:
    return docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()


def in_ns(pid: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv],
                          capture_output=True, text=True, timeout=20, check=False)


def ns_ping(pid: str, dst: str) -> bool:
    ip = ipaddress.ip_address(dst)
    return in_ns(pid, "ping", f"-{ip.version}", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2",
                 str(ip)).returncode == 0


def ipv4(pid: str) -> str:
    out = in_ns(pid, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.split()
    assert "inet" in out, in_ns(pid, "ip", "addr").stdout
    return out[out.index("inet") + 1].split("/")[0]


def mac(pid: str) -> str:
    out = in_ns(pid, "ip", "-o", "link", "show", "dev", "eth0").stdout.split()
    return out[out.index("link/ether") + 1]


def guest_ports(wl) -> list[str]:
    return [p for p in vsctl("list-ports", wl.bridge).split() if p.startswith("wl-")]


def leased(world) -> dict[str, str]:
    return {lease.mac: lease.ip for lease in world.leases()}


def test_docker_containers_lease_reach_and_leave_nothing(env):
    world, wl, docker, plugin = env
    before = HOST_RESOLV.read_bytes()
    driver = world.prefix
    docker("network", "create", "-d", driver, "--ipam-driver", driver, "wl")
    for name in ("c1", "c2"):
        docker("run", "-d", "--name", name, "--network", "wl", "--sysctl",
               "net.ipv6.conf.all.disable_ipv6=0", "xct-busybox", "sleep", "600")
    pids = {name: pid_of(docker, name) for name in ("c1", "c2")}
    ips = {name: ipv4(pid) for name, pid in pids.items()}
    macs = {name: mac(pid) for name, pid in pids.items()}
    assert len(set(ips.values())) == 2
    for name in pids:
        assert leased(world).get(macs[name]) == ips[name]      # the DHCP server's lease
    peer = world.peers[0]
    peer6 = str(ipaddress.ip_interface(world.graph.nodes["peer1"]["addr6"]).ip)
    for name, pid in pids.items():
        assert ns_ping(pid, peer.ip), wl.logs()[-3000:] + plugin.log.read_text()[-2000:]
        assert peer.ping(ips[name], count=2)
        wait_for(lambda pid=pid: ns_ping(pid, peer6), timeout=20, what="IPv6 to the peer")
    assert ns_ping(pids["c1"], ips["c2"]) and ns_ping(pids["c2"], ips["c1"])
    assert len(guest_ports(wl)) == 2

    # dockerd restarts (live-restore keeps the containers), then the plugin does
    docker.stop()
    docker.start()
    assert ns_ping(pids["c1"], peer.ip) and peer.ping(ips["c2"], count=2)
    plugin.stop()
    plugin.start()

    docker("rm", "-f", "c1", "c2")
    wait_for(lambda: guest_ports(wl) == [], timeout=20, what="the ports to go")
    wait_for(lambda: not set(macs.values()) & set(leased(world)), timeout=20,
             what="the leases to be released")
    docker("network", "rm", "wl")
    state = json.loads((plugin.base / "plugin.json").read_text())
    assert state["endpoints"] == {} and state["networks"] == {}
    assert HOST_RESOLV.read_bytes() == before


def test_docker_static_ip_and_refusals(env):
    world, wl, docker, _ = env
    driver = world.prefix
    net4 = ipaddress.ip_network(world.graph.graph["subnet"])
    # dockerd takes --ip only on a network with a configured subnet: the LAN's
    docker("network", "create", "-d", driver, "--ipam-driver", driver, "--subnet", str(net4),
           "wl")
    static = str(net4.network_address + 90)
    docker("run", "-d", "--name", "s1", "--network", "wl", "--ip", static, "xct-busybox",
           "sleep", "600")
    pid = pid_of(docker, "s1")
    assert ipv4(pid) == static
    assert ns_ping(pid, world.peers[0].ip)
    bad = docker("run", "-d", "--name", "s2", "--network", "wl", "--ip", "10.250.0.9",
                 "xct-busybox", "sleep", "600", check=False)
    assert bad.returncode != 0 and "10.250.0.9" in bad.stderr, bad.stderr
    assert len(guest_ports(wl)) == 1
    bad = docker("network", "create", "-d", driver, "--ipam-driver", driver,
                 "--subnet", "10.250.0.0/24", "wl2", check=False)
    assert bad.returncode != 0 and "outside the LAN" in bad.stderr, bad.stderr
    docker("rm", "-f", "s1", "s2")
    wait_for(lambda: guest_ports(wl) == [], timeout=20, what="the port to go")
    wl.stop()
    bad = docker("run", "-d", "--name", "s3", "--network", "wl", "xct-busybox", "sleep", "1",
                 check=False)
    assert bad.returncode != 0 and "no controller is running" in bad.stderr, bad.stderr
    assert guest_ports(wl) == []
