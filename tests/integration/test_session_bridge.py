"""Session VMs (issue 22, item 2): `wlbridge setup --session-bridge NAME` makes a Linux
bridge qemu-bridge-helper may use, linked into the OVS bridge by one guest port; a real QEMU
started as a non-root user (``nobody``) with ``-netdev bridge,br=NAME`` — the way
``qemu:///session`` and GNOME Boxes attach, through the setuid helper and its ACL file —
gets a lease through the one-MAC AP and is reachable from the LAN peer (IPv4 and IPv6).
Teardown removes the bridge, the veth pair and the ACL line, the user's other lines
byte for byte as they were.

The helper Debian ships is not setuid; the test uses a setuid copy of it in a directory of
its own (removed after), so the machine's helper is never changed.  /etc/qemu/bridge.conf is
the real one (the helper reads no other): the test puts a line of its own there first and
checks it survives; a file the test made is removed after.

Boots a VM: on shared machines run it under ``flock /work/logs/vm.lock``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import ap_foreign, wait_for, wlbridge
from managers import cannot
from wlbridge.host import session_bridge

from topologies import slaac_address
from topologies.guestvm import QEMU, guest_image, leases, qemu_argv
from topologies.wifibed.image import ImageError

pytestmark = pytest.mark.integration

VM_MAC = "52:54:00:5e:02:01"
USER = "nobody"


@pytest.fixture
def acl_file():
    """/etc/qemu/bridge.conf with a line of the user's (the file as it was put back after)."""
    acl = session_bridge.ACL_FILE
    before = acl.read_bytes() if acl.exists() else None
    made_dir = not acl.parent.exists()
    mine = (before or b"") + b"# the user's own\nallow xvuser0\n"
    acl.parent.mkdir(parents=True, exist_ok=True)
    acl.write_bytes(mine)
    try:
        yield acl, mine
    finally:
        if before is None:
            acl.unlink(missing_ok=True)
            if made_dir:
                shutil.rmtree(acl.parent, ignore_errors=True)
        else:
            acl.write_bytes(before)


@pytest.fixture
def setuid_helper():
    helper = next((h for h in session_bridge.HELPERS if os.path.exists(h)), None)
    if helper is None or shutil.which(QEMU) is None:
        cannot("qemu-bridge-helper", "QEMU and its bridge helper are not installed "
               "(make deps: qemu-system-x86)")
    work = Path(tempfile.mkdtemp(prefix="wlbridge-helper-", dir="/tmp"))
    work.chmod(0o755)
    copy = work / "qemu-bridge-helper"
    shutil.copy2(helper, copy)
    os.chown(copy, 0, 0)
    copy.chmod(0o4755)
    try:
        yield copy
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_session_vm_through_qemu_bridge_helper_as_a_user_is_on_the_lan(
        make_world, wlbridge_on, acl_file, setuid_helper):
    try:
        img = guest_image()
    except ImageError as exc:
        cannot("the guest VM", str(exc))
    acl, users = acl_file
    world = make_world(n_guests=0, ipv6=True)
    name = f"{world.prefix}-s"
    wl = wlbridge_on(world, guests=[], setup_extra=("--session-bridge", name))
    port = session_bridge.ovs_port(name)
    text = acl.read_text()
    assert text.startswith(users.decode()) and text.endswith(f"allow {name}\n"), text
    again = wlbridge("setup", "--uplink", world.uplink, "--bridge", wl.bridge, "--datapath",
                     "netdev", "--address-manager", "static", "--session-bridge", name)
    assert f"session bridge {name}: already in place" in again.stdout, again.stdout
    assert acl.read_text() == text
    res = wlbridge("setup", "--uplink", world.uplink, "--bridge", wl.bridge, "--datapath",
                   "netdev", "--address-manager", "static", "--session-bridge",
                   f"{world.prefix}-x", check=False)          # a second one: refused
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res
    assert "already" in res.stderr and "nothing changed" in res.stderr, res.stderr
    assert acl.read_text() == text
    assert not Path(f"/sys/class/net/{world.prefix}-x").exists()

    run_dir = Path(tempfile.mkdtemp(prefix="wlbridge-vm-", dir="/tmp"))
    run_dir.chmod(0o777)
    console = run_dir / "console.log"
    user = pwd.getpwnam(USER)
    argv = qemu_argv(img, mac=VM_MAC, console=console,
                     netdev=f"bridge,br={name},helper={setuid_helper}")
    with open(run_dir / "qemu.log", "wb") as log:
        vm = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, cwd=run_dir, user=user.pw_uid,
                              group=user.pw_gid, extra_groups=[])

    def diag() -> str:
        out = console.read_text(errors="replace") if console.exists() else "(no console)"
        return (f"--- console ---\n{out[-1500:]}\n--- qemu ---\n"
                f"{(run_dir / 'qemu.log').read_text(errors='replace')[-800:]}\n"
                f"--- controller log ---\n{wl.logs()[-3000:]}\n--- status ---\n"
                f"{wl.status()['guests']}")

    try:
        def leased():
            if vm.poll() is not None:
                raise AssertionError(f"QEMU exited {vm.returncode}\n{diag()}")
            return leases(console.read_text(errors="replace")) if console.exists() else None

        lease = wait_for(leased, timeout=90, interval=0.5, what="the VM's lease")[-1]
        bound = wl.wait_bound(lease, port)
        assert (bound["source"], bound["mac"]) == ("dhcp", VM_MAC), bound
        peer = world.peers[0]
        assert wait_for(lambda: peer.ping(lease, count=1), timeout=20), \
            f"the peer cannot reach the VM at {lease}\n{diag()}"
        addr6 = str(slaac_address(world.subnet6, VM_MAC))
        assert wait_for(lambda: peer.ping6(addr6, count=1), timeout=40), \
            f"the peer cannot reach the VM at {addr6}\n{diag()}"
        entry = next(g for g in wl.status()["guests"] if g["port"] == port)
        assert entry["macs"] == [VM_MAC], entry      # nothing of the Linux bridge's own
        assert ap_foreign(world) == 0, diag()
    finally:
        vm.kill()
        vm.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
    wl.close()
    assert acl.read_bytes() == users                  # only our line went
    for link in (name, port, session_bridge.bridge_end(name)):
        assert not Path(f"/sys/class/net/{link}").exists(), link
