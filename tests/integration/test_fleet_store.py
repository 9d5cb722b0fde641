"""The fleet store for real (issue 26, items 1, 2 and 5): `wlbridge fleet` runs Debian's
ovsdb-server as a standalone store or a 3-member Raft cluster on loopback (own ports, own
directories, stopped by pid), and the controller's client (`wlbridge.host.fleet_store`, the
`ovs` IDL in a thread of its own) writes one host's rows and sees every host's.

* a binding written by one host is seen by another; TLS (ovs-pki certificates) between
  members and from hosts;
* the leader killed: nothing committed is lost, the clients find the new leader by
  themselves and go on writing;
* the store down and back: the client keeps what it was handed and writes it when the store
  returns (a standalone store restarted empty is refilled);
* the commands refuse bad input in one line, exit 2, nothing made.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from harness import free_port, need, wlbridge
from wlbridge.errors import UserError
from wlbridge.host import fleet_server
from wlbridge.host.fleet_store import FleetStore, read_once, set_tls

from topologies.procs import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _ovsdb_tools() -> None:
    need("/usr/sbin/ovsdb-server", "openvswitch-common")
    need("/usr/bin/ovsdb-tool", "openvswitch-common")


class Members:
    """Store members started by `wlbridge fleet start`, stopped by pid at the end."""

    def __init__(self, root: Path, tls: dict | None = None) -> None:
        self.root, self.tls = root, tls
        self.dirs: list[Path] = []
        self.client: list[str] = []
        self.raft: list[str] = []

    def tls_args(self, name: str) -> list[str]:
        if self.tls is None:
            return []
        c = self.tls[name]
        return ["--private-key", c["private_key"], "--certificate", c["certificate"],
                "--ca-cert", c["ca_cert"]]

    def start(self, n: int, cluster: bool = True) -> None:
        kind = "ssl" if self.tls else "tcp"
        for i in range(n):
            d = self.root / f"m{i}"
            listen = f"{kind}:127.0.0.1:{free_port()}"
            args = ["fleet", "start", "--dir", str(d), "--listen", listen,
                    *self.tls_args(f"m{i}")]
            if cluster:
                raft = f"{kind}:127.0.0.1:{free_port()}"
                args += ["--cluster", raft, *(a for r in self.raft[:1] for a in ("--join", r))]
                self.raft.append(raft)
            wlbridge(*args)
            self.dirs.append(d)
            self.client.append(listen)

    @property
    def remote(self) -> str:
        return ",".join(self.client)

    def leader(self) -> int | None:
        for i, d in enumerate(self.dirs):
            if fleet_server.pid_of(str(d)) is None:
                continue
            status = fleet_server.cluster_status(str(d))
            if re.search(r"^Role: leader$", status, re.MULTILINE):
                return i
        return None

    def kill(self, i: int) -> None:
        pid = fleet_server.pid_of(str(self.dirs[i]))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: fleet_server.pid_of(str(self.dirs[i])) is None, 5,
                 what=f"member {i} gone")

    def stop_all(self) -> None:
        for d in self.dirs:
            pid = fleet_server.pid_of(str(d))
            if pid is not None:
                os.kill(pid, signal.SIGTERM)


@pytest.fixture
def members(tmp_path: Path):
    m = Members(tmp_path)
    yield m
    m.stop_all()


class Host:
    """One host's store client in a thread, with the last view it was given."""

    def __init__(self, remote: str, name: str, heartbeat: float = 2.0) -> None:
        self.name = name
        self.hosts: list = []
        self.claims: list = []
        self.store = FleetStore(remote, name, f"br-{name}", "lab", self.on_view,
                                heartbeat=heartbeat)
        self.thread = threading.Thread(target=self.store.run, daemon=True)
        self.thread.start()

    def on_view(self, hosts, claims) -> None:
        self.hosts, self.claims = hosts, claims

    def holds(self, host: str, ip: str, mac: str | None = None) -> bool:
        return any(c.host == host and c.ip == ip and (mac is None or c.mac == mac)
                   for c in self.claims)

    def publish(self, *ips: str, mac: str = "02:00:00:00:77:01") -> None:
        self.store.publish({"station_mac": f"02:5a:00:00:00:{len(self.name):02x}",
                            "conflicts": {}, "bindings": [
                                {"ip": ip, "mac": mac, "guest": "vm", "source": "arp",
                                 "claimed_at": time.time(), "lease_end": None}
                                for ip in ips]})

    def stop(self) -> None:
        self.store.stop()
        self.thread.join(5)


@pytest.fixture
def hosts():
    made: list[Host] = []
    yield made
    for h in made:
        h.stop()


def test_a_binding_written_by_one_host_is_seen_by_the_others_on_a_three_member_cluster(
        members, hosts):
    members.start(3)
    wait_for(lambda: members.leader() is not None, 15, what="a leader elected")
    a, b, c = (Host(members.remote, n, heartbeat=60) for n in "abc")   # no beat meanwhile
    hosts += [a, b, c]
    a.publish("10.0.0.50")
    wait_for(lambda: b.holds("a", "10.0.0.50") and c.holds("a", "10.0.0.50"), 10,
             what="a's binding seen by b and c")
    wait_for(lambda: {h.name for h in c.hosts} == {"a", "b", "c"}, 10,
             what="every host's row in c's view")
    # `wlbridge status --fleet` shows it, and who holds it
    out = wlbridge("status", "--fleet", members.remote).stdout
    assert re.search(r"10\.0\.0\.50\s+02:00:00:00:77:01\s+on a\b", out), out
    # a host's rows follow what it publishes: an address dropped there is gone everywhere;
    # the others, with nothing new of their own, write nothing (times are compared as the
    # store keeps them: no host rewrites its rows on every change it sees)
    c.publish("10.0.0.90")
    wait_for(lambda: b.holds("c", "10.0.0.90"), 10, what="c's binding seen by b")
    written = (b.store.written, c.store.written)
    a.publish("10.0.0.51")
    wait_for(lambda: b.holds("a", "10.0.0.51") and not b.holds("a", "10.0.0.50")
             and c.holds("a", "10.0.0.51"), 10, what="a's new binding replaced the old one")
    assert (b.store.written, c.store.written) == written


def test_the_leader_killed_loses_nothing_committed_and_clients_fail_over(members, hosts):
    members.start(3)
    wait_for(lambda: members.leader() is not None, 15, what="a leader elected")
    leader = members.leader()
    a, b = Host(members.remote, "a"), Host(members.remote, "b")
    hosts += [a, b]
    a.publish("10.0.0.60")
    wait_for(lambda: b.holds("a", "10.0.0.60"), 10, what="the first binding committed")
    members.kill(leader)
    wait_for(lambda: members.leader() not in (None, leader), 15, what="a new leader")
    a.publish("10.0.0.60", "10.0.0.61")
    wait_for(lambda: b.holds("a", "10.0.0.61"), 15, what="a write after the failover")
    assert b.holds("a", "10.0.0.60")
    doc = read_once(members.remote)
    assert {(x["host"], x["ip"]) for x in doc["bindings"]} == {("a", "10.0.0.60"),
                                                               ("a", "10.0.0.61")}


def test_a_store_down_and_back_gets_this_hosts_rows_again(members, hosts, tmp_path):
    members.start(1, cluster=False)
    a, b = Host(members.remote, "a"), Host(members.remote, "b")
    hosts += [a, b]
    a.publish("10.0.0.70")
    wait_for(lambda: b.holds("a", "10.0.0.70"), 10, what="the binding seen")
    d = str(members.dirs[0])
    fleet_server.stop(d)
    a.publish("10.0.0.70", "10.0.0.71")   # learned while the store is away: kept
    Path(d, fleet_server.DB).unlink()      # and the store comes back empty
    wlbridge("fleet", "start", "--dir", d, "--listen", members.client[0])
    wait_for(lambda: b.holds("a", "10.0.0.70") and b.holds("a", "10.0.0.71"), 20,
             what="a's rows written again when the store returned")


def test_tls_between_members_and_from_hosts(tmp_path, hosts):
    pki = tmp_path / "pki"
    names = ["m0", "m1", "m2", "host-a", "host-b"]
    wlbridge("fleet", "pki", "--dir", str(pki), *(a for n in names for a in ("--name", n)))
    certs = fleet_server.pki(str(pki), names)   # made once: the same files again
    m = Members(tmp_path / "members", tls=certs)
    try:
        m.start(3)
        wait_for(lambda: m.leader() is not None, 20, what="a leader elected over TLS")
        c = certs["host-a"]
        set_tls(c["private_key"], c["certificate"], c["ca_cert"])
        a, b = Host(m.remote, "a"), Host(m.remote, "b")
        hosts += [a, b]
        a.publish("10.0.0.80")
        wait_for(lambda: b.holds("a", "10.0.0.80"), 15, what="a binding over ssl:")
        assert all(r.startswith("ssl:") for r in m.client + m.raft)
    finally:
        m.stop_all()


def test_bad_fleet_commands_are_refused_in_one_line_and_make_nothing(tmp_path):
    d = tmp_path / "m"
    for args, says in (
            (["--listen", "tcp:127.0.0.1:99999"], "is not tcp:IP:PORT"),
            (["--listen", "tcp:127.0.0.1:6641", "--join", "tcp:127.0.0.1:6643"],
             "--join needs --cluster"),
            (["--listen", "ssl:127.0.0.1:6641"], "needs --private-key"),
            (["--listen", "tcp:127.0.0.1:6641", "--private-key", "k"], "all three")):
        res = wlbridge("fleet", "start", "--dir", str(d), *args, check=False)
        assert res.returncode == 2 and says in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert not d.exists()
    port = free_port()
    wlbridge("fleet", "start", "--dir", str(d), "--listen", f"tcp:127.0.0.1:{port}")
    try:
        res = wlbridge("fleet", "start", "--dir", str(d), "--listen", f"tcp:127.0.0.1:{port}",
                       check=False)
        assert res.returncode == 2 and "already runs" in res.stderr
    finally:
        fleet_server.stop(str(d))
    res = wlbridge("status", "--fleet", f"tcp:127.0.0.1:{port}", check=False)
    assert res.returncode == 2 and "no fleet store answered" in res.stderr


def test_a_member_cut_off_by_a_partition_loses_nothing_and_catches_up(wl_prefix, tmp_path,
                                                                     hosts):
    """One member in a network namespace of its own, its link cut (a partition) and restored:
    the two others go on (a new leader if it led), the hosts fail over and keep writing, and
    the cut-off member has every binding once it is back."""
    import ipaddress

    from topologies import subnet_for
    from topologies.procs import run

    net = ipaddress.ip_network(f"{subnet_for(wl_prefix).network_address}/30")
    root_ip, ns_ip = str(net.network_address + 1), str(net.network_address + 2)
    ns, link = f"{wl_prefix}-m2", f"{wl_prefix}-m2"
    run(None, ["ip", "netns", "add", ns])
    try:
        run(None, ["ip", "link", "add", link, "type", "veth", "peer", "name", "m2", "netns", ns])
        run(None, ["ip", "addr", "add", f"{root_ip}/30", "dev", link])
        run(None, ["ip", "link", "set", link, "up"])
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ns_ip}/30",
                    "dev", "m2"], ["ip", "link", "set", "m2", "up"]):
            run(ns, cmd)
        m = Members(tmp_path)
        ips = [root_ip, root_ip, ns_ip]
        m.client = [f"tcp:{a}:{free_port()}" for a in ips]
        m.raft = [f"tcp:{a}:{free_port()}" for a in ips]
        m.dirs = [tmp_path / f"m{i}" for i in range(3)]
        try:
            for i in range(3):
                argv = [*fleet_cli(), "fleet", "start", "--dir", str(m.dirs[i]), "--listen",
                        m.client[i], "--cluster", m.raft[i],
                        *(["--join", m.raft[0]] if i else [])]
                run(ns if i == 2 else None, argv, check=True)
            wait_for(lambda: m.leader() is not None and "Servers:" in
                     fleet_server.cluster_status(str(m.dirs[2])) and
                     re.search(r"^Leader: (?!unknown)", fleet_server.cluster_status(
                         str(m.dirs[2])), re.MULTILINE), 20, what="the cut-off member joined")
            a, b = Host(m.remote, "a"), Host(m.remote, "b")
            hosts += [a, b]
            a.publish("10.0.0.60")
            wait_for(lambda: b.holds("a", "10.0.0.60"), 10, what="the first binding")
            run(None, ["ip", "link", "set", link, "down"])          # the partition
            cut_off = f"tcp:{ns_ip}:{m.client[2].rsplit(':', 1)[1]}"
            with pytest.raises(UserError):                           # (it is cut off)
                read_once(cut_off, timeout=1)
            a.publish("10.0.0.60", "10.0.0.61")
            wait_for(lambda: b.holds("a", "10.0.0.61"), 30, what="a write with a member cut off")
            run(None, ["ip", "link", "set", link, "up"])            # healed
            wait_for(lambda: {x["ip"] for x in read_once(cut_off, timeout=2)["bindings"]} ==
                     {"10.0.0.60", "10.0.0.61"}, 30, retry=(Exception,),
                     what="the cut-off member caught up")
        finally:
            m.stop_all()
    finally:
        run(None, ["ip", "link", "del", link], check=False)
        run(None, ["ip", "netns", "del", ns], check=False)


def fleet_cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "wlbridge"]


def test_a_member_that_leaves_is_out_of_the_cluster_and_the_others_go_on(members, hosts):
    members.start(3)
    wait_for(lambda: members.leader() is not None, 15, what="a leader elected")
    out = wlbridge("fleet", "leave", "--dir", str(members.dirs[2])).stdout
    assert "left the cluster" in out
    assert fleet_server.pid_of(str(members.dirs[2])) is None
    assert (members.dirs[2] / "wlbridge.db.left").exists()
    wait_for(lambda: "(self)" in fleet_server.cluster_status(str(members.dirs[0])) and
             fleet_server.cluster_status(str(members.dirs[0])).split("Servers:")[1]
             .count(" at tcp:") == 2, 10, what="two servers left in the cluster")
    a, b = Host(",".join(members.client[:2]), "a"), Host(",".join(members.client[:2]), "b")
    hosts += [a, b]
    a.publish("10.0.0.95")
    wait_for(lambda: b.holds("a", "10.0.0.95"), 10, what="the two go on")
    res = wlbridge("fleet", "status", "--dir", str(members.dirs[2]), check=False)
    assert res.returncode == 2 and "no fleet store runs" in res.stderr
