"""A guest's DHCP lease is released whatever the timing (issue 23: the lease leak of fast
`docker run`/`rm` cycles), proven by the DHCP server's lease file (dnsmasq removes a lease on
DHCPRELEASE, which names the lease by its client id).

The namespace is attached without addressing, then its lease is taken by one exchange and kept
(as the Docker plugin's IPAM does at RequestAddress), then:

* the guest's DHCP keeper is started and stopped at once, before its client re-bound that
  lease (a container removed right after it started): the keeper must still release it;
* the one-shot release (the plugin's DeleteEndpoint when no keeper ran: the lease asked for
  again and given back at once) must reach the server;
* a guest detached right after its lease (a CNI DEL right after ADD, `podman run`/`rm`): the
  DHCPRELEASE, unicast, waits in the kernel for the server's MAC; the port and veth removed
  at once would drop it.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest
from harness import wait_for, wlbridge
from wlbridge.host import guest_dhcp
from wlbridge.host.attach import guest_mac

pytestmark = pytest.mark.integration


@pytest.fixture
def guest(guestless_lan, tmp_path):
    world, wl, make_ns = guestless_lan
    name = f"{world.prefix}r1"
    ns = make_ns("r1", lambda _: wlbridge("detach", name, "--bridge", wl.bridge, check=False))
    wlbridge("attach", name, "--bridge", wl.bridge, "--netns", ns, "--run-dir",
             str(tmp_path / "run"))
    return world, name, f"/run/netns/{ns}", str(tmp_path / "run")


def lease_of(world, mac: str):
    return next((lease for lease in world.leases() if lease.mac == mac), None)


def take_lease(world, name: str, path: str, run_dir: str) -> str:
    got = guest_dhcp.lease_once(path, "eth0", name, run_dir, 20)
    assert got is not None, world.dnsmasq_log()[-2000:]
    lease = lease_of(world, guest_mac(name))
    assert lease is not None and lease.ip == got[0]
    assert lease.client_id.endswith(guest_mac(name))      # 01:<MAC>: the client id
    return got[0]


def test_a_keeper_stopped_before_its_client_bound_releases_the_lease(guest):
    world, name, path, run_dir = guest
    ip = take_lease(world, name, path, run_dir)
    log = Path(run_dir) / f"{name}.dhcp.log"
    dnsmasq = next(p for p in world.processes.procs if p.name == "dnsmasq")
    dnsmasq.signal(signal.SIGSTOP)       # the server holds the lease but answers nothing yet
    try:
        pid = guest_dhcp.start(name, path, "eth0", None, run_dir, keep=ip)
        wait_for(lambda: "discover" in log.read_text(), timeout=10, what="the client's DISCOVER")
        stopper = threading.Thread(target=guest_dhcp.stop, args=(pid, name))
        stopper.start()                  # before the client bound: it cannot release
        wait_for(lambda: "giving it back" in log.read_text(), timeout=10,
                 what="the keeper to give the lease back: " + log.read_text())
    finally:
        dnsmasq.signal(signal.SIGCONT)
    stopper.join(30)
    assert not stopper.is_alive()
    wait_for(lambda: lease_of(world, guest_mac(name)) is None, timeout=15,
             what="the lease released: " + log.read_text())


def test_a_lease_no_keeper_held_is_given_back(guest):
    world, name, path, run_dir = guest
    ip = take_lease(world, name, path, run_dir)
    guest_dhcp.lease_once(path, "eth0", name, run_dir, 20, request=ip, release=True)
    wait_for(lambda: lease_of(world, guest_mac(name)) is None, timeout=15,
             what="the lease given back: "
             + (Path(run_dir) / f"{name}.dhcp.log").read_text())



def test_a_guest_detached_right_after_its_lease_releases_it(guestless_lan, tmp_path):
    world, wl, make_ns = guestless_lan
    name = f"{world.prefix}r2"
    ns = make_ns("r2", lambda _: wlbridge("detach", name, "--bridge", wl.bridge, check=False))
    for _ in range(3):
        out = wlbridge("attach", name, "--bridge", wl.bridge, "--netns", ns, "--dhcp",
                       "--lease-timeout", "20", "--run-dir", str(tmp_path / "run")).stdout
        assert "IPv4 by DHCP" in out, out
        assert lease_of(world, guest_mac(name)) is not None
        wlbridge("detach", name, "--bridge", wl.bridge)     # the veth goes at once
        wait_for(lambda: lease_of(world, guest_mac(name)) is None, timeout=10,
                 what="the lease released: "
                 + (tmp_path / "run" / f"{name}.dhcp.log").read_text())


def test_a_release_waiting_for_the_servers_mac_is_not_dropped(guest):
    """udhcpc runs its deconfig right after sending the release; flushing the address then
    drops the release while the kernel still holds it for ARP (the guest never talked to the
    server by unicast).  The server's namespace ignores ARP until the release is seen held."""
    world, name, path, run_dir = guest
    server = next(p for p in world.processes.procs if p.name == "dnsmasq").netns
    sysctl = ["ip", "netns", "exec", server, "sysctl", "-q", "-w"]

    def neigh() -> str:
        return subprocess.run(["nsenter", f"--net={path}", "--", "ip", "neigh", "show", "dev",
                               "eth0"], capture_output=True, text=True, check=False).stdout

    pid = guest_dhcp.start(name, path, "eth0", None, run_dir)
    wait_for(lambda: lease_of(world, guest_mac(name)), timeout=20, what="the keeper's lease")
    wait_for(lambda: (Path(run_dir) / f"{name}.bound").exists(), timeout=10,
             what="the client bound")
    subprocess.run(["nsenter", f"--net={path}", "--", "ip", "neigh", "flush", "dev", "eth0"],
                   check=True)
    subprocess.run([*sysctl, "net.ipv4.conf.all.arp_ignore=8"], check=True)
    try:
        stopper = threading.Thread(target=guest_dhcp.stop, args=(pid, name))
        stopper.start()
        wait_for(lambda: "INCOMPLETE" in neigh(), timeout=5,
                 what="the release held for the server's MAC: " + neigh())
    finally:
        subprocess.run([*sysctl, "net.ipv4.conf.all.arp_ignore=0"], check=True)
    stopper.join(20)
    wait_for(lambda: lease_of(world, guest_mac(name)) is None, timeout=10,
             what="the lease released: " + (Path(run_dir) / f"{name}.dhcp.log").read_text())
