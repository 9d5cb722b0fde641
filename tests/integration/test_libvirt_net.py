"""`wlbridge setup` defines a libvirt network for the bridge, `teardown` removes it (issue 22),
against a real libvirtd (Debian's libvirt-daemon-system, `make deps`).

libvirtd is the test's own, private one (`libvirt_env`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from harness import wlbridge
from libvirt_env import virsh

pytestmark = pytest.mark.integration


def networks() -> dict[str, tuple[str, str]]:
    """name -> (state, autostart) from `virsh net-list --all`."""
    rows = [line.split() for line in virsh("net-list", "--all").stdout.splitlines()]
    return {r[0]: (r[1], r[2]) for r in rows if len(r) >= 3}


def test_setup_defines_and_autostarts_the_network_and_teardown_removes_it(
        libvirtd, make_world, wlbridge_on):
    world = make_world(n_guests=0)
    name = f"{world.prefix}-net"
    wl = wlbridge_on(world, guests=[], start=False, setup_extra=("--libvirt-network", name))
    assert networks()[name] == ("active", "yes")
    xml = ET.fromstring(virsh("net-dumpxml", name).stdout)
    assert xml.find("forward").get("mode") == "bridge"
    assert xml.find("bridge").get("name") == wl.bridge
    assert xml.find("virtualport").get("type") == "openvswitch"
    # setup again: the network is left as it is
    again = wlbridge("setup", "--uplink", world.uplink, "--bridge", wl.bridge,
                     "--datapath", "netdev", "--libvirt-network", name)
    assert f"libvirt network {name}: already in place" in again.stdout
    assert networks()[name] == ("active", "yes")

    out = wlbridge("teardown", "--bridge", wl.bridge)
    wl.is_set_up = False
    assert f"libvirt network {name} removed" in out.stdout
    assert name not in networks()


def test_a_network_of_that_name_for_another_bridge_is_left_alone(
        libvirtd, make_world, wlbridge_on, tmp_path):
    world = make_world(n_guests=0)
    name = f"{world.prefix}-net"
    other = tmp_path / "other.xml"
    other.write_text(f"<network><name>{name}</name><forward mode='bridge'/>"
                     f"<bridge name='{world.prefix}-x'/><virtualport type='openvswitch'/>"
                     "</network>")
    assert virsh("net-define", str(other)).returncode == 0
    try:
        wl = wlbridge_on(world, guests=[], start=False)   # default network name: not ours
        assert "wlbridge" in networks()                    # the default name was free
        res = wlbridge("setup", "--uplink", world.uplink, "--bridge", wl.bridge,
                       "--datapath", "netdev", "--libvirt-network", name)
        assert f"warning: libvirt network {name} not set up" in res.stdout
        assert networks()[name] == ("inactive", "no")
        wlbridge("teardown", "--bridge", wl.bridge)
        wl.is_set_up = False
        assert name in networks() and "wlbridge" not in networks()
    finally:
        virsh("net-undefine", name)


def test_setup_with_an_empty_name_defines_nothing(libvirtd, make_world, wlbridge_on):
    world = make_world(n_guests=0)
    before = networks()
    wlbridge_on(world, guests=[], start=False, setup_extra=("--libvirt-network", ""))
    assert networks() == before
