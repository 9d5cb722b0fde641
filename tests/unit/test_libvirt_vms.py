"""libvirt's records of its VMs' interfaces (issue 22, item 1): read from the bridge's
interfaces on a port's first event, the MAC and the domain (its name from ``virsh domname``,
else its UUID) handed on."""

from __future__ import annotations

import subprocess

from test_port_isolation_unit import FakeHostNet, bridge
from wlbridge.host import ovsdb
from wlbridge.host.libvirt_vms import DomainNames, VmPort, vm_ports
from wlbridge.host.port_isolation import GuestPortIsolation

UUID = "0d9bd2a4-6a5e-4a4f-8a39-5e2c3f0b9c11"
LIBVIRT_IDS = {"attached-mac": "52:54:00:AB:CD:EF", "vm-id": UUID, "iface-id": "i-1",
               "iface-status": "active"}


def vm_iface(name: str, ids: dict) -> ovsdb.InterfaceInfo:
    return ovsdb.InterfaceInfo(name, "", dict(ids), 7, None)


def test_only_interfaces_with_libvirts_mac_are_vms():
    found = vm_ports({"vnet0": LIBVIRT_IDS, "veth1": {"wlbridge-guest": "c1"},
                      "vnet1": {"attached-mac": "not-a-mac"},
                      # `wlbridge attach` / a container plugin writes attached-mac too: no VM
                      "wl-c2": {"wlbridge-guest": "c2", "attached-mac": "02:11:22:33:44:55"}})
    assert found == {"vnet0": VmPort("vnet0", "52:54:00:ab:cd:ef", UUID, "i-1", "active")}


def fake_virsh(answers: dict):
    calls = []

    def run(args):
        calls.append(args)
        out = answers.get(args[-1])
        return subprocess.CompletedProcess(args, 0 if out else 1, out or "", "" if out else
                                           "error: failed to get domain")
    return run, calls


def test_a_domain_is_named_by_libvirt_else_by_its_uuid():
    run, calls = fake_virsh({UUID: "vm-one\n"})
    names = DomainNames(run, available=lambda: True)
    assert names.name(UUID) == "vm-one" and names.name(UUID) == "vm-one"
    assert calls == [["domname", UUID]]                 # kept once found
    assert names.name("other-uuid") == "other-uuid"     # libvirt does not know it
    assert names.name(None) is None
    assert DomainNames(run, available=lambda: False).name(UUID) == UUID
    (vm,) = names.named(vm_ports({"vnet0": LIBVIRT_IDS}))
    assert (vm.port, vm.name, vm.source) == ("vnet0", "vm-one", "libvirt")


def test_the_isolation_worker_hands_the_records_on_each_new_port_even_a_reused_name():
    """On the kernel datapath too (nothing is isolated there), and again for a name that
    left and came back (another VM's tap)."""
    seen = []
    info = bridge(vm_iface("vnet0", LIBVIRT_IDS), datapath="system")
    iso = GuestPortIsolation("br-wl", "wlan0", "unix:db", bridge_info=lambda b, r: info,
                             hostnet_factory=lambda: FakeHostNet({"vnet0"}),
                             load_program=lambda: -7, on_interfaces=seen.append)
    iso.apply([("vnet0", True), ("wlan0", True)])
    assert seen == [{"vnet0": LIBVIRT_IDS}]              # not the uplink, not the bridge
    iso.apply([("vnet0", True)])                          # known: no new read
    assert len(seen) == 1
    other = {**LIBVIRT_IDS, "attached-mac": "52:54:00:00:00:02", "vm-id": "u2"}
    info = bridge(vm_iface("vnet0", other), datapath="system")
    iso.apply([("vnet0", False)])
    iso.apply([("vnet0", True)])
    assert seen[-1] == {"vnet0": other}
