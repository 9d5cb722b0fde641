"""Userspace datapath: the host stack ignores what arrives on guest ports' host-side ends.

OVS's netdev datapath reads each guest port (here a veth's root-namespace end) through an
AF_PACKET socket, and the kernel also processed every frame arriving there.  Measured
before the fix, in this emulated LAN: a guest's ``arping`` for the host's address got two
reply MACs, the station MAC (through OVS, from the bridge's internal port) and the veth
end's own MAC (the kernel answering directly, weak host model); the guest kept the
latter, so its pings to the host reached the host through the veth directly while OVS
sent a copy out of the uplink (unknown destination MAC), to the AP.

The controller now puts a clsact qdisc with a drop-all ingress filter (for the host stack
only: OVS's packet socket is fed before tc ingress) on each guest port's host-side end.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess

from harness import ap_foreign, wait_for
from wlbridge.host.hostnet import GUEST_ISOLATION_PRIO

from topologies import tcpdump_lines
from topologies.ovs import vsctl


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def ingress_prefs(dev: str) -> set[int]:
    """Priorities of the tc filters on `dev`'s ingress hook (empty without clsact)."""
    res = subprocess.run(["tc", "-j", "filter", "show", "dev", dev, "ingress"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return set()
    return {f["pref"] for f in json.loads(res.stdout) if "pref" in f}


def has_clsact(dev: str) -> bool:
    res = subprocess.run(["tc", "-j", "qdisc", "show", "dev", dev], capture_output=True,
                         text=True, check=True)
    return any(q["kind"] == "clsact" for q in json.loads(res.stdout or "[]"))


def isolated(dev: str) -> bool:
    return GUEST_ISOLATION_PRIO in ingress_prefs(dev)


def wait_isolated(dev: str, wl) -> None:
    wait_for(lambda: isolated(dev), timeout=10, what=f"the guest-port filter on {dev}\n"
             + wl.logs()[-3000:])


@contextlib.contextmanager
def uplink_capture(world, *bpf: str):
    """tcpdump of what leaves by the station's uplink (towards the AP) while the block runs;
    yields a function returning what it printed.  The block waits for a control packet it
    sent last to be printed: what left before it has been printed by then."""
    proc = tcpdump_lines(world, None, world.uplink, "uplink", "-Q", "out", *bpf)
    try:
        yield proc.output
    finally:
        proc.stop()


def arping_macs(guest, ip: str) -> list[str]:
    res = guest.run("busybox", "arping", "-c", "3", "-w", "4", "-I", "eth0", ip, timeout=15)
    return [m.lower() for m in re.findall(r"\[([0-9a-fA-F:]{17})\]", res.stdout)]


def test_guest_sees_the_host_once_with_the_station_mac(make_world, wlbridge_on):
    world = make_world(n_guests=2)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    host, station_mac = wl.station_ip, world.station.mac.lower()
    for g in (g1, g2):
        wait_isolated(g.port, wl)
    assert not isolated(world.uplink) and not isolated(wl.bridge)

    # ARP for the host: one reply per request, all with the station MAC (before: the veth
    # end's own MAC as well, from the kernel)
    macs = arping_macs(g1, host)
    assert macs == [station_mac] * 3, macs

    # pings to the host: no duplicates, and none leaks to the AP (the echo requests are
    # watched on the uplink: the AP's counters also count the host's and the guests' IPv6
    # router solicitations of their first seconds, which leave by the uplink as they should)
    g1.run("ip", "neigh", "flush", "dev", "eth0")
    with uplink_capture(world, "icmp", "and", "(dst", "host", host, "or", "dst", "host",
                        ip_of(peer) + ")") as seen:
        res = g1.run("ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", host, timeout=20)
        g1.ping(ip_of(peer), count=1)  # the capture's control: this one must leave, last
        wait_for(lambda: f"> {ip_of(peer)}: ICMP echo request" in seen(), timeout=5,
                 what=f"the control ping in the uplink capture: {seen()}")
    leaked = seen().replace(f"> {ip_of(peer)}: ICMP echo request", "")
    assert " 0% packet loss" in res.stdout and "DUP!" not in res.stdout, res.stdout
    assert "echo request" not in leaked, leaked
    neigh = g1.run("ip", "neigh", "show", host, "dev", "eth0").stdout
    assert station_mac in neigh.lower(), neigh

    # guest <-> host, peer and guest still work both ways
    assert world.station.ping(ip_of(g1), src=host, count=2)
    assert g1.ping(ip_of(peer), count=2), wl.logs()
    wl.wait_bound(ip_of(g1), g1.port)
    assert peer.ping(ip_of(g1), count=2)
    assert g1.ping(ip_of(g2), count=2) and g2.ping(ip_of(g1), count=2)
    assert g2.ping(host, count=2)
    assert ap_foreign(world) == 0, world.ap_counters()

    # a link flap (ovs-vswitchd then deletes its ports' "ingress" qdiscs) keeps the filter
    g1.run("ip", "link", "set", "eth0", "down", check=True)
    g1.run("ip", "link", "set", "eth0", "up", check=True)
    wait_for(lambda: g1.ping(host, count=1), timeout=10, what="g1 back")
    assert isolated(g1.port)
    assert arping_macs(g1, host) == [station_mac] * 3


def test_ports_added_later_left_and_after_teardown(make_world, wlbridge_on, wl_prefix):
    world = make_world(n_guests=2)
    g1, g2 = world.guests
    wl = wlbridge_on(world, guests=[g1])
    wait_isolated(g1.port, wl)
    assert not isolated(g2.port)

    # a port added while the controller runs
    wl.attach(g2)
    wait_isolated(g2.port, wl)
    assert arping_macs(g2, wl.station_ip) == [world.station.mac.lower()] * 3

    # an internal port is the host's own interface: left alone
    internal = f"{wl_prefix}-in"
    vsctl("add-port", wl.bridge, internal, "--", "set", "interface", internal,
          "type=internal")
    try:
        wait_for(lambda: subprocess.run(["ip", "link", "show", internal],
                                        capture_output=True, check=False).returncode == 0,
                 what=f"{internal} to appear")
        wait_for(lambda: f"port {internal} (type internal) is not a guest's" in wl.logs(),
                 what="the controller to see the internal port")
        assert not has_clsact(internal)
    finally:
        vsctl("--if-exists", "del-port", wl.bridge, internal)

    # a port leaving the bridge gets its filter back off (it may join another bridge)
    wl.detach(g2)
    wait_for(lambda: not has_clsact(g2.port), timeout=10, what="the filter to go")

    # the filters stay while the controller is stopped (the flows keep forwarding) ...
    assert g1.ping(wl.station_ip, count=2)
    wl.wait_bound(ip_of(g1), g1.port)
    wl.stop()
    assert isolated(g1.port)
    assert g1.ping(wl.station_ip, count=2)
    # ... and teardown removes them from the former ports still there
    wl.close()
    assert not has_clsact(g1.port)
