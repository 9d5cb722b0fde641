"""Another network (issue 24 item 4) on the emulated LANs: two LANs (different subnets,
routers, dnsmasq servers), the station moved from the first to the second and back
(`World.move_station`: its link's AP end moves to the other AP, as a laptop joining another
network loses and regains its carrier).  Guests attached with ``wlbridge attach --dhcp``
get an address of each LAN in turn, `wlbridge status` names the LAN, and a capture on each
LAN shows no frame carrying a guest address of the LAN the station came from.

The host's own address on the bridge is set by the test as its DHCP client would (the new
LAN's address, a default route through the bridge: in a routing table of its own, so that
the machine's real default route is untouched; `host.lan_watch` reads every table)."""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path

import pytest
from harness import wait_for, wlbridge

from topologies import Capture, free_prefix, second_lan

pytestmark = pytest.mark.integration


def in_ns(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ns_ipv4(ns: str) -> str | None:
    out = in_ns(ns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else None


def ip_of(addr: str) -> str:
    return addr.split("/")[0]


def host_on(world, bridge: str, table: int) -> None:
    """The host's address and default route on the bridge, for `world`'s LAN (what its DHCP
    client would set)."""
    station = ipaddress.ip_interface(world.graph.nodes["station"]["addr"] or
                                     f"{world.subnet.network_address + 2}/{world.subnet.prefixlen}")
    subprocess.run(["ip", "-4", "addr", "flush", "dev", bridge], check=True)
    subprocess.run(["ip", "addr", "add", str(station), "dev", bridge], check=True)
    subprocess.run(["ip", "route", "replace", "default", "via", ip_of(world.router.addr),
                    "dev", bridge, "table", str(table)], check=True)


def lan_of(wl) -> str | None:
    lan = wl.status().get("lan")
    return lan["subnet"] if lan and lan.get("confirmed") else None


def senders(capture: Capture) -> set[str]:
    """Every IPv4 address a captured frame carried as its sender (ARP or IPv4 source)."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP

    out = set()
    for pkt in capture.peek():
        if ARP in pkt:
            out.add(pkt[ARP].psrc)
        if IP in pkt:
            out.add(pkt[IP].src)
    return out


def test_the_station_moves_to_another_lan_and_back(make_world, wlbridge_on, tmp_path):
    lan_a = make_world(n_guests=0, router_option=True)
    lan_b = make_world(second_lan(free_prefix(), router_option=True))
    wl = wlbridge_on(lan_a, guests=[])
    table = 20000 + int(Path(f"/sys/class/net/{wl.bridge}/ifindex").read_text())
    host_on(lan_a, wl.bridge, table)
    run_dir = tmp_path / "run"
    guests = [f"{lan_a.prefix}-n{i}" for i in (1, 2)]
    try:
        for name in guests:
            subprocess.run(["ip", "netns", "add", name], check=True)
            wlbridge("attach", name, "--bridge", wl.bridge, "--run-dir", str(run_dir),
                     "--netns", name, "--dhcp", "--lease-timeout", "20")
        wait_for(lambda: lan_of(wl) == str(lan_a.subnet), timeout=20, what="the first LAN known")

        def addresses_in(world) -> list[str] | None:
            got = [ns_ipv4(n) for n in guests]
            return got if all(a and ipaddress.ip_address(a) in world.subnet for a in got) \
                else None

        def move(home, away) -> list[str]:
            """The station from `home`'s LAN to `away`'s: the guests' `home` addresses never
            reach `away`'s LAN; their addresses there."""
            old = wait_for(lambda: addresses_in(home), timeout=30,
                           what=f"the guests' addresses in {home.subnet}")
            capture = Capture(away, away.router.netns, away.router.ifname, f"lan-{away.prefix}")
            start = time.monotonic()
            lan_a.move_station(away)
            host_on(away, wl.bridge, table)
            wait_for(lambda: lan_of(wl) == str(away.subnet), timeout=30,
                     what=f"the LAN {away.subnet} known")
            known = time.monotonic() - start
            new = wait_for(lambda: addresses_in(away), timeout=30,
                           what=f"the guests' addresses in {away.subnet}")
            print(f"moved to {away.subnet}: LAN known after {known:.2f} s, guests re-leased "
                  f"after {time.monotonic() - start:.2f} s")
            for name in guests:   # the barrier: the guests reach the new LAN's router
                assert in_ns(name, "ping", "-c", "2", "-i", "0.2", "-W", "2",
                             ip_of(away.router.addr)).returncode == 0, wl.logs()[-3000:]
            wait_for(lambda: set(new) & senders(capture), timeout=5,
                     what="the guests' new addresses in the capture")
            leaked = set(old) & senders(capture)
            assert not leaked, f"old-LAN addresses on {away.subnet}: {leaked}"
            return new

        move(lan_a, lan_b)
        status = wl.status()
        assert status["lan"]["changes"] == 1
        assert {b["ip"] for g in status["guests"] for b in g["ips"]} <= \
            {a for a in (ns_ipv4(n) for n in guests) if a} | {
                b["ip"] for g in status["guests"] for b in g["ips"] if ":" in b["ip"]}
        move(lan_b, lan_a)
        assert wl.status()["lan"]["changes"] == 2
    finally:
        for name in guests:
            wlbridge("detach", name, "--bridge", wl.bridge, check=False)
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "route", "flush", "table", str(table)], check=False,
                       capture_output=True)
