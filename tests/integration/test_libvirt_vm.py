"""A real VM under libvirt on the network `wlbridge setup` defined (issue 22, items 1 and
"How it is tested"): a QEMU domain (software emulation, `topologies.guestvm`: a small kernel
and a busybox initramfs with virtio-net and udhcpc) on libvirt network ``wlbridge``, through
the test's own libvirtd (`libvirt_env`).  libvirt plugs its tap into the OVS bridge with its
records (``external_ids:attached-mac``, ``vm-id``): the controller knows the VM's MAC before
its first frame and names the VM (its domain name) in `wlbridge status`.  The VM gets a lease
through the one-MAC AP, is reachable from a LAN peer over IPv4 and IPv6 (SLAAC), and its port
and bindings are gone when it is destroyed.

Boots a VM: on shared machines run it under ``flock /work/logs/vm.lock``.
"""

from __future__ import annotations

import shutil

import pytest
from harness import ap_foreign, wait_for, wlbridge
from libvirt_env import virsh
from managers import cannot

from topologies import slaac_address
from topologies.guestvm import QEMU, domain_xml, guest_image, leases
from topologies.ovs import vsctl
from topologies.wifibed.image import ImageError

pytestmark = pytest.mark.integration

VM_MAC = "52:54:00:5e:01:01"


def image():
    if shutil.which(QEMU) is None:
        cannot("QEMU", f"{QEMU} is not installed (make deps: qemu-system-x86)")
    try:
        return guest_image()
    except ImageError as exc:
        cannot("the guest VM", str(exc))


def vm_entry(wl) -> dict | None:
    return next((g for g in wl.status()["guests"] if VM_MAC in (g.get("macs") or [])), None)


def test_a_libvirt_domain_on_the_wlbridge_network_is_a_named_guest_on_the_lan(
        libvirtd, make_world, wlbridge_on, tmp_path):
    img = image()
    world = make_world(n_guests=0, ipv6=True)
    wl = wlbridge_on(world, guests=[])        # setup defines libvirt network "wlbridge"
    name = f"{world.prefix}-vm"
    console = tmp_path / "console.log"
    xml = tmp_path / "domain.xml"
    xml.write_text(domain_xml(name, img, mac=VM_MAC, network="wlbridge", console=console))

    def diag() -> str:
        text = console.read_text(errors="replace") if console.exists() else "(no console)"
        return (f"--- console ---\n{text[-1500:]}\n--- controller log ---\n"
                f"{wl.logs()[-3000:]}\n--- status ---\n{wl.status()['guests']}\n"
                f"--- dnsmasq ---\n{world.dnsmasq_log()[-800:]}")

    res = virsh("define", str(xml))
    assert res.returncode == 0, res.stderr
    try:
        res = virsh("start", name)
        assert res.returncode == 0, res.stderr
        # libvirt's records: the VM's MAC is a guest, announced, and the VM named by its domain
        entry = wait_for(lambda: vm_entry(wl), timeout=30,
                         what="the VM's port in status")
        assert (entry["mac"], entry["mac_source"]) == (VM_MAC, "libvirt"), entry
        assert entry["vm"] == name and entry["vm_id"], entry
        port = entry["port"]
        # DHCP through the one-MAC AP
        lease = wait_for(lambda: leases(console.read_text(errors="replace"))
                         if console.exists() else None, timeout=90, what="the VM's lease",
                         interval=0.5)[-1]
        bound = wl.wait_bound(lease, port)
        assert (bound["source"], bound["mac"]) == ("dhcp", VM_MAC), bound
        peer = world.peers[0]
        assert wait_for(lambda: peer.ping(lease, count=1), timeout=20), \
            f"the peer cannot reach the VM at {lease}\n{diag()}"
        # IPv6: SLAAC from the LAN router's adverts
        addr6 = str(slaac_address(world.subnet6, VM_MAC))
        assert wait_for(lambda: peer.ping6(addr6, count=1), timeout=40), \
            f"the peer cannot reach the VM at {addr6}\n{diag()}"
        text = wlbridge("status", "--url", f"http://127.0.0.1:{wl.status_port}").stdout
        row = next(line for line in text.splitlines() if line.startswith(port))
        assert row.endswith(f"VM {name}"), text
        assert ap_foreign(world) == 0, diag()

        # destroyed: its port leaves the bridge, its guest and bindings the controller
        assert virsh("destroy", name).returncode == 0
        wait_for(lambda: vm_entry(wl) is None, timeout=10, what="the VM's guest gone")
        assert wl.bound(lease) is None and wl.bound(addr6) is None
        assert port not in vsctl("list-ports", wl.bridge).split()
    finally:
        virsh("destroy", name)
        virsh("undefine", name)
