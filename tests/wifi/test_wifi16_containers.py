"""Containers on the Wi-Fi LAN over a real station (issue 23, "in the Wi-Fi test bed too"): one
container per runtime, with the kernel datapath and a real AP.

* Docker: dockerd (Debian's docker.io, `--iptables=false --bridge=none`, vfs storage on a tmpfs)
  and `wlbridge docker-plugin` (driver and IPAM driver `wlbridge`); one container on a
  `-d wlbridge --ipam-driver wlbridge` network.
* Podman (CNI backend) with the `wlbridge` CNI config (IPAM `dhcp`); one container.

Each: leased by the LAN's dnsmasq through the AP (the lease file keyed on the container's MAC),
reaches the LAN peer and is reached from it over IPv4 and IPv6 (SLAAC from the LAN's radvd),
named in `wlbridge status`; after `rm` no port is left on the bridge and the lease is released
(gone from dnsmasq's lease file).  The runtimes are those of `topologies.runtimes`, as the
emulated LAN's tests/integration/test_docker_plugin.py and test_cni.py start them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import BRIDGE
from wlbridge.cli.cni import guest_name
from wlbridge.host.attach import guest_mac, port_name

from topologies.dhcp import parse_leases
from topologies.procs import wait_for
from topologies.runtimes import Docker, DockerPlugin, Podman, busybox_tar, close
from topologies.wifibed.bed import PEER_IP, SRV_IP6, sh
from topologies.wifibed.product import wlbridge_cli

CNI_PATH = "/usr/lib/cni"
#: Seconds a container's DHCP exchange may take: the bed is an emulated CPU (TCG); Docker
#: gives a plugin call 30 s.
DOCKER_LEASE_TIMEOUT = 25
CNI_LEASE_TIMEOUT = 90


@pytest.fixture(scope="module")
def base(bed, wlbridge):
    """A tmpfs for the runtimes' storage (the VM's root is an overlay: no overlay on top of it),
    the cgroup2 hierarchy runc needs and the /dev/shm Podman keeps its locks in (the VM's job
    mounts neither)."""
    for tool, pkg in (("dockerd", "docker.io"), ("podman", "podman")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed ({pkg})")
    cgroup = Path("/sys/fs/cgroup")
    if not (cgroup / "cgroup.controllers").exists():
        sh("mount", "-t", "cgroup2", "cgroup2", str(cgroup))
    shm = Path("/dev/shm")
    if not os.path.ismount(shm):
        shm.mkdir(exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", str(shm))
    where = Path(tempfile.mkdtemp(prefix="wf-ct-"))
    sh("mount", "-t", "tmpfs", "-o", "size=1G", "tmpfs", str(where))
    yield where
    subprocess.run(["umount", "-R", str(where)], check=False, capture_output=True)


def in_ns(ns_path: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={ns_path}", "--", *argv], capture_output=True,
                          text=True, timeout=30, check=False)


def ns_ping(ns_path: str, dst: str) -> bool:
    ip = ipaddress.ip_address(dst)
    return in_ns(ns_path, "ping", f"-{ip.version}", "-n", "-q", "-c", "1", "-W", "2",
                 str(ip)).returncode == 0


def addr(ns_path: str, family: str) -> str | None:
    """eth0's IPv4 address, or its global IPv6 address once DAD is done."""
    argv = ["ip", f"-{family}", "-o", "addr", "show", "dev", "eth0"]
    if family == "6":
        argv += ["scope", "global", "-tentative"]
    words = in_ns(ns_path, *argv).stdout.split()
    key = "inet" if family == "4" else "inet6"
    return words[words.index(key) + 1].split("/")[0] if key in words else None


def mac_in(ns_path: str) -> str:
    words = in_ns(ns_path, "ip", "-o", "link", "show", "dev", "eth0").stdout.split()
    return words[words.index("link/ether") + 1]


def leased(bed) -> dict[str, str]:
    """The LAN's dnsmasq lease file: MAC -> address."""
    path = bed.logs / "dnsmasq" / "leases"
    return {le.mac: le.ip for le in parse_leases(path.read_text() if path.exists() else "")}


def ports() -> set[str]:
    return set(sh("ovs-vsctl", "--timeout=30", "list-ports", BRIDGE).split())


def named_in_status(name: str) -> bool:
    return any(line.rstrip().endswith(f"container {name}")
               for line in wlbridge_cli("status").splitlines())


def on_the_lan(bed, ns_path: str, mac: str) -> str:
    """The checks both runtimes share; the container's IPv4 address."""
    ip = addr(ns_path, "4")
    assert ip, in_ns(ns_path, "ip", "addr").stdout
    assert wait_for(lambda: leased(bed).get(mac), 20) == ip, leased(bed)
    assert wait_for(lambda: ns_ping(ns_path, PEER_IP), 30), "the container cannot reach the peer"
    assert wait_for(lambda: bed.peer_ping(ip), 30), "the LAN peer cannot reach the container"
    ip6 = wait_for(lambda: addr(ns_path, "6"), 60)
    assert ip6, "the container has no SLAAC address"
    assert wait_for(lambda: ns_ping(ns_path, SRV_IP6), 30), "no IPv6 to the LAN"
    assert wait_for(lambda: bed.peer_ping(ip6), 30), f"the LAN peer cannot reach {ip6}"
    return ip


def test_a_docker_container_is_leased_reachable_named_and_leaves_nothing(bed, wlbridge, base):
    where = base / "docker"
    where.mkdir()
    docker = Docker(where)
    plugin = DockerPlugin(BRIDGE, "wlbridge", where, lease_timeout=DOCKER_LEASE_TIMEOUT)
    before = ports()
    try:
        plugin.start()
        docker.start()
        docker("import", str(busybox_tar(where)), "wf-busybox", timeout=300)
        docker("network", "create", "-d", "wlbridge", "--ipam-driver", "wlbridge", "wl")
        docker("run", "-d", "--name", "wf-c1", "--network", "wl", "--sysctl",
               "net.ipv6.conf.all.disable_ipv6=0", "wf-busybox", "sleep", "900", timeout=300)
        pid = docker("inspect", "-f", "{{.State.Pid}}", "wf-c1").stdout.strip()
        ns_path = f"/proc/{pid}/ns/net"
        mac = mac_in(ns_path)
        on_the_lan(bed, ns_path, mac)
        assert len(ports() - before) == 1, ports()
        wait_for(lambda: named_in_status("wf-c1"), 30, what="wf-c1 named in wlbridge status")

        docker("rm", "-f", "wf-c1", timeout=300)
        wait_for(lambda: ports() == before, 30, what="the container's port to go")
        wait_for(lambda: mac not in leased(bed), 30, what="the lease to be released")
        docker("network", "rm", "wl")
        state = json.loads((where / "plugin.json").read_text())
        assert state["endpoints"] == {} and state["networks"] == {}, state
    finally:
        close(docker, plugin, where)


def test_a_podman_cni_container_is_leased_reachable_named_and_leaves_nothing(bed, wlbridge,
                                                                              base):
    pm = Podman(base / "podman", CNI_PATH, storage_driver="vfs")
    before = ports()
    try:
        pm.start()
        conf = {"cniVersion": "0.4.0", "name": "wl", "plugins": [
            {"type": "wlbridge", "bridge": BRIDGE, "ipam": {"type": "dhcp"},
             "leaseTimeout": CNI_LEASE_TIMEOUT}]}
        (pm.base / "cni" / "wl.conflist").write_text(json.dumps(conf))
        cid = pm("run", "-d", "--name", "wf-p1", "--network", "wl", "--sysctl",
                 "net.ipv6.conf.all.disable_ipv6=0", "localhost/xct-busybox", "sleep", "900",
                 timeout=300).stdout.strip()
        pid = pm("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        name = guest_name(cid, "eth0")
        mac = guest_mac(name)
        ns_path = f"/proc/{pid}/ns/net"
        assert mac_in(ns_path) == mac
        on_the_lan(bed, ns_path, mac)
        assert ports() - before == {port_name(name)}, ports()
        wait_for(lambda: named_in_status("wf-p1"), 30, what="wf-p1 named in wlbridge status")

        pm("rm", "-f", "-t", "0", cid, timeout=300)
        wait_for(lambda: ports() == before, 30, what="the container's port to go")
        wait_for(lambda: mac not in leased(bed), 30, what="the lease to be released")
    finally:
        pm.close()
