"""`wlbridge setup` defines a libvirt network for the bridge, `teardown` removes it (issue 22),
against a real libvirtd (Debian's libvirt-daemon-system, `make deps`).

The machines here have no systemd, so the test starts libvirtd itself, privately: in a mount
namespace of its own where libvirt's configuration directory is a copy and its run, state and
cache directories are empty tmpfs (nothing of another libvirtd on this machine is seen or
touched), its socket in the test's directory, reached through ``$LIBVIRT_DEFAULT_URI``
(``qemu:///system?socket=…``), which ``virsh`` (and so wlbridge) honours.  It is stopped by
its PID; its mounts go with its mount namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import xml.etree.ElementTree as ET

import pytest
from harness import wait_for, wlbridge
from managers import cannot

pytestmark = pytest.mark.integration

PRIVATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt")


@pytest.fixture
def libvirtd(tmp_path, monkeypatch):
    for tool in ("libvirtd", "virsh", "unshare"):
        if shutil.which(tool) is None:
            cannot("libvirtd", f"{tool} is not installed (make deps: libvirt-daemon-system, "
                   "libvirt-clients)")
    base = tmp_path / "libvirt"
    (base / "sock").mkdir(parents=True)
    shutil.copytree("/etc/libvirt", base / "etc", symlinks=True)
    with open(base / "etc" / "libvirtd.conf", "a") as conf:
        conf.write(f'\nunix_sock_dir = "{base}/sock"\nauth_unix_rw = "none"\n'
                   f'auth_unix_ro = "none"\nlog_outputs = "3:file:{base}/libvirtd.log"\n')
    for d in PRIVATE_DIRS:
        os.makedirs(d, exist_ok=True)        # mount points (the package makes them too)
    script = base / "run.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        set -e
        mount --bind {base}/etc /etc/libvirt
        {''.join(f'mount -t tmpfs wlbridge-test {d}; ' for d in PRIVATE_DIRS)}
        exec libvirtd -f /etc/libvirt/libvirtd.conf -p {base}/libvirtd.pid
        """))
    script.chmod(0o755)
    with open(base / "out.log", "wb") as out:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                 str(script)], stdout=out, stderr=subprocess.STDOUT)
    uri = f"qemu:///system?socket={base}/sock/libvirt-sock"
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", uri)

    def up() -> bool:
        if proc.poll() is not None:
            cannot("libvirtd", f"it exited {proc.returncode}: "
                   f"{(base / 'out.log').read_text()[-500:]}")
        return virsh("net-list", "--all").returncode == 0

    try:
        wait_for(up, timeout=30, interval=0.2, what="libvirtd to answer")
        yield uri
    finally:
        proc.send_signal(signal.SIGTERM)     # unshare exec'd the script, which exec'd libvirtd
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def virsh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-q", *args], capture_output=True, text=True, timeout=30,
                          check=False)


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
