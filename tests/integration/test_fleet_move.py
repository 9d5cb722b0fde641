"""Two Wi-Fi hosts sharing one fleet store (issue 26, items 3 and 4), for real: each an OVS
bridge with its own uplink and station MAC behind the same one-MAC AP
(`World.add_station`), each with its own `wlbridge run --fleet ...`, and a standalone
ovsdb-server from `wlbridge fleet start`.

* a guest namespace moved from host A's bridge to host B's (its port deleted on A, added on
  B, as a live migration does) and announced as QEMU does after a migration (a RARP, no
  address in it): B binds its address at once from the store and announces it from B's
  station MAC (the peer's ARP entry follows within 1 s); A's claim goes; a LAN peer pinging
  it every 10 ms loses at most 1 s.  (Both hosts share the root namespace here, which
  forwards: a frame still sent to A's station MAC is routed back onto the LAN and reaches
  the guest through B, so the loss alone would not show a missing announcement; the ARP
  entry does.)
* the fleet-wide guard: another MAC on host B claiming the address a guest on A holds is
  refused on B (counted, shown on B and on A), and A keeps it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Controller, free_port, need, wlbridge
from wlbridge.host import fleet_server

from topologies import make_mac
from topologies.ovs import vsctl
from topologies.procs import wait_for

pytestmark = pytest.mark.integration

RARP = """
import socket, sys
mac = bytes.fromhex(sys.argv[2].replace(':', ''))
frame = (b'\\xff' * 6 + mac + bytes.fromhex('8035') + bytes.fromhex('0001080006040003') + mac
         + bytes(4) + mac + bytes(4) + bytes(18))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(frame)
"""


@pytest.fixture
def store(request, tmp_path: Path):
    """A fleet store from `wlbridge fleet start`: standalone, or (``indirect`` parameter
    "cluster") a 3-member Raft cluster on loopback; stopped by pid after."""
    need("/usr/sbin/ovsdb-server", "openvswitch-common")
    st = Store(tmp_path, 3 if getattr(request, "param", "standalone") == "cluster" else 1)
    yield st
    for d in st.dirs:
        pid = fleet_server.pid_of(str(d))
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


class Store:
    def __init__(self, root: Path, members: int) -> None:
        self.dirs = [root / f"store{i}" for i in range(members)]
        self.client = [f"tcp:127.0.0.1:{free_port()}" for _ in self.dirs]
        self.remote = ",".join(self.client)
        raft = [f"tcp:127.0.0.1:{free_port()}" for _ in self.dirs] if members > 1 else []
        for i, d in enumerate(self.dirs):
            cluster = ["--cluster", raft[i], *(["--join", raft[0]] if i else [])] if raft else []
            wlbridge("fleet", "start", "--dir", str(d), "--listen", self.client[i], *cluster)
        if raft:
            wait_for(lambda: self.leader() is not None, 15, what="a leader elected")

    def stop(self) -> None:
        wlbridge("fleet", "stop", "--dir", str(self.dirs[0]))

    def start(self) -> None:
        wlbridge("fleet", "start", "--dir", str(self.dirs[0]), "--listen", self.client[0])

    def leader(self) -> int | None:
        for i, d in enumerate(self.dirs):
            if fleet_server.pid_of(str(d)) is not None and re.search(
                    r"^Role: leader$", fleet_server.cluster_status(str(d)), re.MULTILINE):
                return i
        return None

    def kill_leader(self) -> int:
        i = self.leader()
        assert i is not None
        os.kill(fleet_server.pid_of(str(self.dirs[i])), signal.SIGKILL)
        wait_for(lambda: fleet_server.pid_of(str(self.dirs[i])) is None, 5, what="killed")
        return i


@pytest.fixture
def two_hosts(make_world, tmp_path, store):
    """(world, host A's controller, host B's controller): A on the world's station, B on a
    second station of the same AP; both on the store."""
    world = make_world(n_guests=2)
    made: list[Controller] = []
    uplink_b = world.add_station(f"{world.prefix}-wl1", make_mac("station", 0xB))
    for name, bridge, uplink in (("a", None, None), ("b", f"{world.prefix}-br2", uplink_b)):
        workdir = tmp_path / f"host-{name}"
        workdir.mkdir()
        ctl = Controller(world, workdir, bridge=bridge, uplink=uplink,
                         extra=("--fleet", store.remote, "--fleet-host", name,
                                "--fleet-gone-after", "6"))
        made.append(ctl)
        ctl.setup("--address-manager", "static")
        ctl.start()
    yield world, made[0], made[1]
    for ctl in reversed(made):
        ctl.close()


def fleet(ctl: Controller) -> dict:
    return ctl.status()["fleet"]


def sees(ctl: Controller, host: str, ip: str) -> bool:
    return any(r["host"] == host and r["ip"] == ip for r in fleet(ctl)["remote"])


def lost_replies(out: str, interval: float) -> float:
    """Seconds of replies missing in a `ping -i interval` output (the longest gap)."""
    seqs = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+)", out)})
    assert seqs, out
    gaps = [b - a - 1 for a, b in zip(seqs, seqs[1:])]
    return max(gaps, default=0) * interval


def test_a_guest_moved_to_another_host_keeps_its_address_and_the_lan_follows(two_hosts):
    world, a, b = two_hosts
    guest, peer = world.guests[0], world.peers[0]
    a.attach(guest)
    assert peer.ping(guest.ip, timeout=3)
    a.wait_bound(guest.ip)
    wait_for(lambda: sees(b, "a", guest.ip), 10, what="B sees A's binding in the store")
    station_b = b.status()["station_mac"]
    assert station_b and station_b != a.status()["station_mac"]

    # the peer pings the guest every 10 ms throughout the move
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", peer.netns, "ping", "-n", "-i", "0.01", "-W", "1", "-w", "6",
         guest.ip], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: peer.run("ip", "neigh", "show", guest.ip).stdout.strip() != "", 3)
        # the move: the port leaves A and appears on B in one OVSDB transaction (the
        # destination of a live migration starts as the source stops), then the guest's
        # announcement, as QEMU sends it: a RARP from its MAC, no address in it
        vsctl("del-port", a.bridge, guest.port, "--", "add-port", b.bridge, guest.port)
        subprocess.run(["ip", "netns", "exec", guest.netns, sys.executable, "-c", RARP,
                        guest.ifname, guest.mac], check=True, timeout=10)
        # B announced it from its station MAC: the peer's cache follows at once (not when
        # its entry goes stale and is probed again, seconds later)
        wait_for(lambda: station_b in peer.run("ip", "neigh", "show", guest.ip).stdout.lower(),
                 1.0, interval=0.02, what="the peer's ARP entry on B's station MAC")
        out, _ = pinger.communicate(timeout=20)
    finally:
        if pinger.poll() is None:
            pinger.kill()
    lost = lost_replies(out, 0.01)
    print(f"replies lost across the move: {lost:.2f} s")
    assert lost <= 1.0, out[-2000:]
    bound = b.wait_bound(guest.ip, port=guest.port)
    assert bound["source"] == "fleet" and bound["mac"] == guest.mac
    assert a.bound(guest.ip) is None
    # and A no longer claims it (its departed claim taken over by B)
    wait_for(lambda: not sees(b, "a", guest.ip), 10, what="A's claim gone from the store")
    assert b.counters().get("refused.fleet-ip-in-use", 0) == 0


def test_an_address_held_on_one_host_is_refused_to_another_mac_on_another_host(two_hosts):
    world, a, b = two_hosts
    owner, thief = world.guests
    a.attach(owner)
    assert owner.ping(world.router.ip, timeout=3)
    a.wait_bound(owner.ip)
    wait_for(lambda: sees(b, "a", owner.ip), 10, what="B sees A's binding")
    b.attach(thief)
    thief.run("ip", "addr", "flush", "dev", thief.ifname)
    thief.set_addr(owner.addr)   # the same address, another MAC, on host B
    assert not thief.ping(world.router.ip, timeout=1)   # its ARP claims the address
    wait_for(lambda: b.counters().get("refused.fleet-ip-in-use", 0) >= 1, 10,
             what="B refuses it")
    assert b.bound(owner.ip) is None
    assert [r["ip"] for r in fleet(b)["refused_here"]] == [owner.ip]
    wait_for(lambda: [r["ip"] for r in fleet(a)["refused_elsewhere"]] == [owner.ip], 10,
             what="A shows B's refusal")
    assert a.bound(owner.ip)["mac"] == owner.mac
    assert world.peers[0].ping(owner.ip, timeout=3)


def test_with_the_store_away_each_host_keeps_working_and_writes_what_it_learned_on_return(
        two_hosts, store):
    world, a, b = two_hosts
    guest, peer = world.guests[0], world.peers[0]
    store.stop()
    a.attach(guest)                      # learned while the store is away
    assert peer.ping(guest.ip, timeout=3)
    a.wait_bound(guest.ip)
    assert not sees(b, "a", guest.ip)
    store.start()                        # the same database back: A's rows follow
    wait_for(lambda: sees(b, "a", guest.ip), 20, what="A's binding written on the return")
    assert a.status()["fleet_store"]["connected"] is True
    assert peer.ping(guest.ip, timeout=3)


def test_a_host_gone_from_the_store_holds_nothing_after_fleet_gone_after(two_hosts):
    world, a, b = two_hosts
    owner, other = world.guests
    a.attach(owner)
    assert owner.ping(world.router.ip, timeout=3)
    wait_for(lambda: sees(b, "a", owner.ip), 10, what="B sees A's binding")
    a.stop(signal.SIGKILL)               # host A dies: its rows stay in the store
    wait_for(lambda: not sees(b, "a", owner.ip), 15, what="A counted gone by B")
    assert [h["name"] for h in fleet(b)["hosts"]] == []
    b.attach(other)                      # its address is free on B now
    other.run("ip", "addr", "flush", "dev", other.ifname)
    other.set_addr(owner.addr)
    other.ping(world.router.ip, timeout=1)
    b.wait_bound(owner.ip, port=other.port)
    assert b.counters().get("refused.fleet-ip-in-use", 0) == 0


@pytest.mark.parametrize("store", ["cluster"], indirect=True)
def test_the_store_leader_killed_the_hosts_fail_over_and_lose_nothing(two_hosts, store):
    world, a, b = two_hosts
    first, second = world.guests
    a.attach(first)
    assert first.ping(world.router.ip, timeout=3)
    wait_for(lambda: sees(b, "a", first.ip), 10, what="B sees A's first binding")
    killed = store.kill_leader()
    wait_for(lambda: store.leader() not in (None, killed), 15, what="a new leader")
    a.attach(second)                     # learned after the failover
    assert second.ping(world.router.ip, timeout=3)
    wait_for(lambda: sees(b, "a", second.ip), 20, what="A's write after the failover")
    assert sees(b, "a", first.ip)        # nothing committed lost
    assert a.status()["fleet_store"]["connected"] and b.status()["fleet_store"]["connected"]
