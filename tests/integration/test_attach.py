"""`wlbridge attach` / `detach` with real namespaces, OVS, dnsmasq and the controller (issue 22).

The emulated LAN (`basic_lan`, IPv4 and IPv6) with wlbridge set up and running, no guests wired
by the topology: each test makes its own namespaces (named with the world's prefix, removed by
the fixtures) and attaches them with the real command, as a user would.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest
from harness import wait_for, wlbridge
from wlbridge.host.attach import guest_mac

from topologies.ovs import vsctl
from topologies.procs import wait_for as poll

pytestmark = pytest.mark.integration

HOST_RESOLV = Path("/etc/resolv.conf")


@pytest.fixture
def env(guestless_lan, tmp_path):
    world, wl, make_ns = guestless_lan

    def netns(suffix: str) -> str:
        return make_ns(suffix, lambda name: wlbridge(
            "detach", f"{world.prefix}{suffix}", "--bridge", wl.bridge, check=False))

    return world, wl, netns, tmp_path / "run"


def attach(wl, run_dir, name: str, *args: str, check: bool = True):
    return wlbridge("attach", name, "--bridge", wl.bridge, "--run-dir", str(run_dir), *args,
                    check=check)


def in_ns(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ns_ping(ns: str, dst: str) -> bool:
    ip = ipaddress.ip_address(dst)
    return in_ns(ns, "ping", f"-{ip.version}", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2",
                 str(ip)).returncode == 0


def ns_ipv4(ns: str) -> str | None:
    out = in_ns(ns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else None


def ports(wl) -> list[str]:
    return vsctl("list-ports", wl.bridge).split()


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines()]


def keeper_pids(name: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"wlbridge.host.guest_dhcp" in args and name.encode() in args:
            pids.append(int(pid))
    return pids


def test_dhcp_attach_is_reachable_both_ways_and_only_the_namespace_gets_dns(env):
    world, wl, netns, run = env
    before = HOST_RESOLV.read_bytes()
    ns, name = netns("n1"), f"{world.prefix}n1"
    port = f"wl-{name}"
    res = attach(wl, run, name, "--netns", ns, "--dhcp", "--lease-timeout", "20")
    ip = ns_ipv4(ns)
    assert ip, res.stdout + res.stderr
    assert f"IPv4 by DHCP: {ip}/" in res.stdout
    peer = world.peers[0]
    assert ns_ping(ns, peer.ip), wl.logs()[-3000:]
    assert peer.ping(ip, count=2)
    bound = wl.wait_bound(ip, port)
    assert bound["source"] == "dhcp"
    ext = vsctl("get", "Interface", port, "external_ids")
    mac = in_ns(ns, "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert mac == guest_mac(name) and f'attached-mac="{mac}"' in ext
    assert f"wlbridge-guest={name}" in ext and bound["mac"] == mac
    resolv = Path(f"/etc/netns/{ns}/resolv.conf").read_text()
    assert "nameserver" in resolv, resolv          # the LAN's DNS, in the namespace's file
    assert HOST_RESOLV.read_bytes() == before      # and never in the host's
    assert len(keeper_pids(name)) == 1

    out = wlbridge("detach", name, "--bridge", wl.bridge)
    assert "removed" in out.stdout
    assert port not in ports(wl) and port not in links()
    assert keeper_pids(name) == []
    assert not Path(f"/etc/netns/{ns}").exists()
    wait_for(lambda: wl.bound(ip) is None, timeout=5, what="the binding to go")
    again = wlbridge("detach", name, "--bridge", wl.bridge)
    assert "not attached" in again.stdout
    assert HOST_RESOLV.read_bytes() == before


def test_static_attach_ipv4_and_ipv6_is_idempotent(env):
    world, wl, netns, run = env
    ns, name = netns("n2"), f"{world.prefix}n2"
    net4 = ipaddress.ip_network(world.graph.graph["subnet"])
    net6 = ipaddress.ip_network(world.graph.graph["subnet6"])
    ip4, ip6 = str(net4.network_address + 60), str(net6.network_address + 0x60)
    args = ("--netns", ns, "--address", f"{ip4}/{net4.prefixlen}", "--address", f"{ip6}/64")
    attach(wl, run, name, *args)
    first = ports(wl)
    again = attach(wl, run, name, *args)
    assert "already attached" in again.stdout
    assert ports(wl) == first and first.count(f"wl-{name}") == 1
    peer = world.peers[0]
    assert ns_ping(ns, peer.ip), wl.logs()[-3000:]
    assert peer.ping(ip4, count=2)
    peer6 = str(ipaddress.ip_interface(world.graph.nodes["peer1"]["addr6"]).ip)
    wait_for(lambda: ns_ping(ns, peer6), timeout=15,
             what="the guest to reach the peer over IPv6")
    assert peer.ping6(ip6, count=2)
    # another mode for the same name is refused, nothing changed
    other = attach(wl, run, name, "--netns", ns, "--dhcp", check=False)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "already attached otherwise" in other.stderr
    assert ports(wl) == first


@pytest.mark.parametrize("mode", ["dhcp", "static"])
def test_a_deleted_namespace_takes_its_port_and_bindings_within_2s(env, mode):
    world, wl, netns, run = env
    ns, name = netns("n3"), f"{world.prefix}n3"
    port = f"wl-{name}"
    net4 = ipaddress.ip_network(world.graph.graph["subnet"])
    if mode == "dhcp":
        attach(wl, run, name, "--netns", ns, "--dhcp", "--lease-timeout", "20")
    else:
        attach(wl, run, name, "--netns", ns, "--address",
               f"{net4.network_address + 70}/{net4.prefixlen}")
    ip = ns_ipv4(ns)
    assert ip and ns_ping(ns, world.peers[0].ip)
    wl.wait_bound(ip, port)
    subprocess.run(["ip", "netns", "del", ns], check=True)
    gone = poll(lambda: port not in ports(wl) and wl.bound(ip) is None, 2.0, 0.05)
    assert gone, (f"{port} still there after 2 s: ports {ports(wl)}, binding {wl.bound(ip)}\n"
                  + "\n".join(line for line in wl.logs().splitlines()
                              if "pyroute2" not in line and "status_server" not in line)[-4000:])
    assert keeper_pids(name) == []
    assert not Path(f"/etc/netns/{ns}").exists()


def test_refusals_exit_2_with_one_line_and_leave_nothing(env):
    world, wl, netns, run = env
    ns = netns("n4")
    name = f"{world.prefix}n4"
    before_ports = ports(wl)
    cases = [
        (("--netns", f"{world.prefix}-nope", "--dhcp"), "no such network namespace"),
        (("--netns", ns, "--address", "10.1.2.300/24"), "not an IPv4 or IPv6 address"),
        (("--netns", ns, "--address", "10.1.2.3"), "want ADDR/PLEN"),
        (("--netns", ns, "--dhcp", "--bridge", f"{world.prefix}-nobr"), "does not exist"),
        # fails half-way (the namespace has a `lo`): every step rolled back
        (("--netns", ns, "--dhcp", "--ifname", "lo"), "rolled back, nothing changed"),
    ]
    for args, expected in cases:
        res = attach(wl, run, name, *args, check=False)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert len(lines) == 1 and expected in lines[0], (args, res.stderr)
        assert ports(wl) == before_ports, args
        assert not {f"wl-{name}", f"wp-{name}"} & set(links()), args
        assert keeper_pids(name) == [], args
        assert not Path(f"/etc/netns/{ns}").exists(), args


def test_teardown_detaches_attached_guests(env):
    world, wl, netns, run = env
    ns, name = netns("n5"), f"{world.prefix}n5"
    attach(wl, run, name, "--netns", ns, "--dhcp", "--lease-timeout", "0")
    assert len(keeper_pids(name)) == 1
    wl.stop()
    out = wlbridge("teardown", "--bridge", wl.bridge)
    wl.is_set_up = False
    assert f"{name}: DHCP client stopped" in out.stdout
    assert keeper_pids(name) == [] and f"wl-{name}" not in links()
    assert not Path(f"/etc/netns/{ns}").exists()
