"""The `wlbridge-cni` CNI plugin with real namespaces, OVS, dnsmasq, the controller (issue 23):
driven as the spec says (CNI_* environment, configuration on stdin), then through Podman's CNI
backend (Debian 12's podman 4.3, a private storage root, configuration directory and
containers.conf; an image made offline by `podman import` of a static busybox root).

gVisor (this test machine's sandbox) refuses runc's setrlimit; there Podman runs with
a runtime wrapper that drops the OCI spec's rlimits (`topologies.runtimes.RUNC_WRAPPER`), nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from harness import need, wait_for, wlbridge
from wlbridge.cli.cni import guest_name
from wlbridge.host.attach import guest_mac, port_name

from topologies.ovs import vsctl
from topologies.runtimes import Podman

pytestmark = pytest.mark.integration

HOST_RESOLV = Path("/etc/resolv.conf")
CNI_PATH = "/usr/lib/cni"
BUSYBOX = "/bin/busybox"



@pytest.fixture
def env(guestless_lan):
    world, wl, make_ns = guestless_lan

    def netns(suffix: str) -> str:
        return make_ns(suffix, lambda name: cni(
            "DEL", {"type": "wlbridge", "bridge": wl.bridge}, name, f"/run/netns/{name}"))

    return world, wl, netns


def conf(bridge: str, **more) -> dict:
    return {"cniVersion": "1.0.0", "name": "wl", "type": "wlbridge", "bridge": bridge,
            "ipam": {"type": "dhcp"}, "leaseTimeout": 20, **more}


def cni(command: str, config: dict | None, container: str, netns: str, ifname: str = "eth0",
        args: str = "") -> tuple[int, dict | None]:
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": CNI_PATH, "CNI_ARGS": args}
    proc = subprocess.run([sys.executable, "-m", "wlbridge.cli.cni"],
                          input=json.dumps(config).encode() if config is not None else b"",
                          env=env, capture_output=True, timeout=60, check=False)
    out = proc.stdout.decode().strip()
    return proc.returncode, (json.loads(out) if out else None)


def in_ns(ns_path: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={ns_path}", "--", *argv], capture_output=True,
                          text=True, timeout=20, check=False)


def ns_ping(ns_path: str, dst: str) -> bool:
    ip = ipaddress.ip_address(dst)
    return in_ns(ns_path, "ping", f"-{ip.version}", "-n", "-q", "-c", "2", "-i", "0.2", "-W",
                 "2", str(ip)).returncode == 0


def ports(wl) -> list[str]:
    return vsctl("list-ports", wl.bridge).split()


def status_row(wl, port: str) -> str:
    """The port's first row in `wlbridge status`."""
    text = wlbridge("status", "--url", f"http://127.0.0.1:{wl.status_port}").stdout
    return next((line for line in text.splitlines() if line.startswith(port)), text)


def leased_macs(world) -> set[str]:
    return {lease.mac for lease in world.leases()}


def test_cni_add_check_del_by_the_spec(env):
    world, wl, netns = env
    before = HOST_RESOLV.read_bytes()
    need(CNI_PATH + "/static", "containernetworking-plugins")
    ns = netns("c1")
    path, cid = f"/run/netns/{ns}", f"{world.prefix}c1" + "0" * 20
    name = guest_name(cid, "eth0")

    rc, ver = cni("VERSION", None, "", "")
    assert rc == 0 and "1.0.0" in ver["supportedVersions"]

    rc, res = cni("ADD", conf(wl.bridge), cid, path,
                  args="IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0")
    assert rc == 0, res
    ip = res["ips"][0]["address"].split("/")[0]
    assert status_row(wl, port_name(name)).endswith("container shop/web-0")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(world.graph.graph["subnet"])
    assert res["interfaces"][0]["mac"] == guest_mac(name)
    assert res["routes"] and res["ips"][0]["gateway"]
    assert guest_mac(name) in leased_macs(world)
    peer = world.peers[0]
    assert ns_ping(path, peer.ip), wl.logs()[-3000:]
    assert peer.ping(ip, count=2)
    wl.wait_bound(ip, port_name(name))
    peer6 = str(ipaddress.ip_interface(world.graph.nodes["peer1"]["addr6"]).ip)
    wait_for(lambda: ns_ping(path, peer6), timeout=20, what="IPv6 (SLAAC) to the peer")
    ext = vsctl("get", "Interface", port_name(name), "external_ids")
    assert f"wlbridge-cni=\"{cid}/eth0\"" in ext or f"wlbridge-cni={cid}/eth0" in ext

    assert cni("CHECK", conf(wl.bridge), cid, path) == (0, None)
    rc, err = cni("ADD", conf(wl.bridge), cid, path)          # a duplicate endpoint
    assert rc == 1 and err["code"] == 100 and "already" in err["msg"], err
    assert port_name(name) in ports(wl)                        # the first one untouched
    assert ns_ping(path, peer.ip)

    assert cni("DEL", conf(wl.bridge), cid, path) == (0, None)
    assert port_name(name) not in ports(wl)
    wait_for(lambda: guest_mac(name) not in leased_macs(world), timeout=20,
             what="the lease to be released")
    rc, err = cni("CHECK", conf(wl.bridge), cid, path)
    assert rc == 1 and err["code"] == 3
    assert cni("DEL", conf(wl.bridge), cid, path) == (0, None)   # DEL again: nothing to do
    assert cni("DEL", conf(wl.bridge), cid, "") == (0, None)     # netns gone: still fine
    assert HOST_RESOLV.read_bytes() == before


def test_cni_static_ipam_is_delegated_and_checked_against_the_lan(env):
    world, wl, netns = env
    need(CNI_PATH + "/static", "containernetworking-plugins")
    net4 = ipaddress.ip_network(world.graph.graph["subnet"])
    ns = netns("s1")
    path, cid = f"/run/netns/{ns}", f"{world.prefix}s1" + "0" * 20
    addr = f"{net4.network_address + 80}/{net4.prefixlen}"
    static = conf(wl.bridge, ipam={"type": "static", "addresses": [{"address": addr}]})
    rc, res = cni("ADD", static, cid, path)
    assert rc == 0, res
    assert res["ips"][0]["address"] == addr
    assert ns_ping(path, world.peers[0].ip)
    assert cni("DEL", static, cid, path) == (0, None)
    assert port_name(guest_name(cid, "eth0")) not in ports(wl)

    outside = conf(wl.bridge, ipam={"type": "static",
                                    "addresses": [{"address": "10.250.0.5/24"}]})
    rc, err = cni("ADD", outside, cid, path)
    assert rc == 1 and "outside the LAN" in err["msg"], err
    assert port_name(guest_name(cid, "eth0")) not in ports(wl)
    assert len(in_ns(path, "ip", "-o", "link").stdout.splitlines()) == 1      # lo only


def test_cni_refuses_a_missing_bridge_a_stopped_controller_bad_input(env):
    world, wl, netns = env
    ns = netns("e1")
    path, cid = f"/run/netns/{ns}", f"{world.prefix}e1" + "0" * 20
    before = ports(wl)
    rc, err = cni("ADD", conf(f"{world.prefix}-nobr"), cid, path)
    assert rc == 1 and err["code"] == 100 and "does not exist" in err["msg"], err
    rc, err = cni("ADD", {**conf(wl.bridge), "cniVersion": "9.9.9"}, cid, path)
    assert rc == 1 and err["code"] == 1
    proc = subprocess.run([sys.executable, "-m", "wlbridge.cli.cni"], input=b"{nope",
                          env={**os.environ, "CNI_COMMAND": "ADD"}, capture_output=True,
                          check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 6
    wl.stop()
    rc, err = cni("ADD", conf(wl.bridge), cid, path)
    assert rc == 1 and "no controller is connected" in err["msg"], err
    assert ports(wl) == before
    assert len(in_ns(path, "ip", "-o", "link").stdout.splitlines()) == 1


# ---- through Podman ---------------------------------------------------------------------
@pytest.fixture
def podman():
    if shutil.which("podman") is None:
        need("/usr/bin/podman", "podman")
    need(BUSYBOX, "busybox")
    pm = Podman(Path(tempfile.mkdtemp(prefix="xct-pm-")), CNI_PATH)  # a short runroot
    pm.start()
    yield pm, pm.base
    pm.close()


def test_podman_cni_container_gets_a_lease_and_is_removed_cleanly(env, podman):
    world, wl, _ = env
    pm, base = podman
    before = HOST_RESOLV.read_bytes()
    netconf = {"cniVersion": "0.4.0", "name": "wl", "plugins": [conf(wl.bridge)]}
    (base / "cni" / "wl.conflist").write_text(json.dumps(netconf))
    cid = pm("run", "-d", "--name", "xct-web", "--network", "wl", "localhost/xct-busybox",
             "sleep", "600").stdout.strip()
    pid = pm("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
    path = f"/proc/{pid}/ns/net"
    name = guest_name(cid, "eth0")
    out = in_ns(path, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.split()
    ip = out[out.index("inet") + 1].split("/")[0]
    assert guest_mac(name) in leased_macs(world)
    peer = world.peers[0]
    assert ns_ping(path, peer.ip), wl.logs()[-3000:]
    assert peer.ping(ip, count=2)
    assert port_name(name) in ports(wl)
    assert status_row(wl, port_name(name)).endswith("container xct-web")   # K8S_POD_NAME

    pm("rm", "-f", "-t", "0", cid)
    assert port_name(name) not in ports(wl)
    wait_for(lambda: guest_mac(name) not in leased_macs(world), timeout=20,
             what="the lease to be released")
    assert HOST_RESOLV.read_bytes() == before
