"""`wlbridge docker-plugin` with a real dockerd (Debian's docker.io, started by the test: no
iptables, no default bridge, vfs storage, private root, exec root and socket, live-restore),
the emulated LAN, dnsmasq and the controller (issue 23).  The image is made offline (`docker
import` of a static busybox root).  The plugin's socket is /run/docker/plugins/<prefix>.sock
(where dockerd looks), so its driver name is the world's prefix and parallel runs never meet.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import need, wait_for, wlbridge

from topologies.ovs import vsctl
from topologies.runtimes import Docker, DockerPlugin, busybox_tar, close

pytestmark = pytest.mark.integration

HOST_RESOLV = Path("/etc/resolv.conf")
BUSYBOX = "/bin/busybox"



@pytest.fixture
def env(make_world, wlbridge_on):
    need("/usr/sbin/dockerd", "docker.io")
    need(BUSYBOX, "busybox")
    world = make_world(n_guests=0, ipv6=True, dns_option=True, router_option=True)
    wl = wlbridge_on(world, guests=[])
    base = Path(tempfile.mkdtemp(prefix="xct-dk-"))
    docker, plugin = Docker(base), DockerPlugin(wl.bridge, world.prefix, base)
    plugin.start()
    docker.start()
    docker("import", str(busybox_tar(base)), "xct-busybox")
    yield world, wl, docker, plugin
    close(docker, plugin, base)


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
    # `wlbridge status` names them (the plugin asked dockerd after Join)
    url = f"http://127.0.0.1:{wl.status_port}"
    wait_for(lambda: {line.split()[-1] for line in wlbridge("status", "--url", url)
                      .stdout.splitlines() if "  container " in line} == {"c1", "c2"},
             timeout=20, what="the containers named in wlbridge status")

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
