"""containerd's `ctr run --cni` with the `wlbridge` CNI plugin (issue 23: the containerd
recipe of docs/containers.md, tried with Debian 12's containerd 1.6).

The test starts its own containerd (private root, state and sockets, the CRI plugin off).
`ctr run --cni` reads CNI configurations from /etc/cni/net.d and plugins from /opt/cni/bin,
fixed paths: the test runs ctr in a mount namespace of its own where both are private tmpfs
mounts holding the test's configuration and plugin only (the host's files are not touched).
The container's root is a static busybox tree (``--rootfs``, no image, no registry).  ctr
runs in the foreground: when the task ends, it calls the plugin's DEL itself.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from harness import need, wait_for, wlbridge
from wlbridge.cli.cni import guest_name
from wlbridge.host.attach import guest_mac, port_name

from topologies.ovs import vsctl
from topologies.runtimes import PLUGIN, RUNC_WRAPPER, busybox_tar, gvisor

pytestmark = pytest.mark.integration

CNI_PATH = "/usr/lib/cni"


@pytest.fixture
def containerd():
    need("/usr/bin/containerd", "containerd")
    need("/usr/bin/ctr", "containerd")
    need("/bin/busybox", "busybox")
    base = Path(tempfile.mkdtemp(prefix="xct-ctr-"))
    config = base / "config.toml"
    config.write_text(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                      'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                      f'[grpc]\n  address = "{base}/c.sock"\n'
                      f'[ttrpc]\n  address = "{base}/c.ttrpc.sock"\n')
    log = open(base / "containerd.log", "ab")  # noqa: SIM115 - the daemon's, closed below
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    sock = str(base / "c.sock")
    wait_for(lambda: subprocess.run(["ctr", "-a", sock, "version"], capture_output=True,
                                    check=False).returncode == 0, timeout=30,
             what="containerd to answer")
    yield base, sock
    subprocess.run(["ctr", "-a", sock, "task", "kill", "-s", "SIGKILL", "xc1"],
                   capture_output=True, check=False)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    subprocess.run(["umount", "-R", str(base / "state")], capture_output=True, check=False)
    shutil.rmtree(base, ignore_errors=True)


def ctr_run_cni(base: Path, sock: str, bridge: str, cid: str) -> subprocess.Popen:
    """`ctr run --rm --cni` in the foreground, in a mount namespace where /etc/cni/net.d and
    /opt/cni/bin hold only our configuration and plugins."""
    (base / "net.d").mkdir()
    (base / "net.d" / "10-wl.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "wl",
         "plugins": [{"type": "wlbridge", "bridge": bridge, "ipam": {"type": "dhcp"},
                      "leaseTimeout": 20}]}))
    plugin = base / "wlbridge"
    plugin.write_text(PLUGIN.format(python=sys.executable,
                                    pythonpath=":".join(p for p in sys.path if p)))
    plugin.chmod(0o755)
    rootfs = busybox_tar(base).parent / "rootfs"
    runc = []
    if gvisor():
        wrapper = base / "runc-wrap"
        wrapper.write_text(RUNC_WRAPPER.format(python=sys.executable))
        wrapper.chmod(0o755)
        runc = ["--runc-binary", str(wrapper)]
    script = (f"set -e; mount -t tmpfs xct-cni /etc/cni/net.d 2>/dev/null || "
              f"{{ mkdir -p /etc/cni/net.d; mount -t tmpfs xct-cni /etc/cni/net.d; }}; "
              f"cp {base}/net.d/10-wl.conflist /etc/cni/net.d/; "
              f"mount -t tmpfs xct-opt /opt; mkdir -p /opt/cni/bin; "
              f"cp {plugin} /opt/cni/bin/wlbridge; "
              f"exec ctr -a {sock} run --rm --cni {' '.join(runc)} --rootfs {rootfs} {cid} "
              "/bin/sleep 600")
    return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=open(base / "ctr.log", "ab"),
                            stderr=subprocess.STDOUT)


def test_ctr_run_cni_container_is_on_the_lan_and_leaves_nothing(guestless_lan, containerd):
    world, wl, _ = guestless_lan
    base, sock = containerd
    run = ctr_run_cni(base, sock, wl.bridge, "xc1")
    name = guest_name("default-xc1", "eth0")     # ctr's CNI id: namespace-container
    port = port_name(name)
    try:
        wait_for(lambda: port in vsctl("list-ports", wl.bridge).split() or run.poll(),
                 timeout=60, what="the container's port")
        assert run.poll() is None, (base / "ctr.log").read_text()
        lease = wait_for(lambda: next((x for x in world.leases()
                                       if x.mac == guest_mac(name)), None),
                         timeout=20, what="the container's lease")
        peer = world.peers[0]
        assert peer.ping(lease.ip, count=2), wl.logs()[-2000:]
        text = wlbridge("status", "--url", f"http://127.0.0.1:{wl.status_port}").stdout
        assert any(line.startswith(port) and line.endswith(f"container {name}")
                   for line in text.splitlines()), text
    finally:
        subprocess.run(["ctr", "-a", sock, "task", "kill", "-s", "SIGKILL", "xc1"],
                       capture_output=True, check=False)
        run.wait(60)
    wait_for(lambda: port not in vsctl("list-ports", wl.bridge).split(), timeout=20,
             what="the port gone (ctr's CNI DEL)")
    wait_for(lambda: guest_mac(name) not in {x.mac for x in world.leases()}, timeout=20,
             what="the lease released")
