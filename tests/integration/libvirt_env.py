"""A private libvirtd for the tests (issue 22), started by the test without systemd.

The machines here have no systemd, so `libvirtd` starts libvirtd itself, privately: in a
mount namespace of its own where libvirt's configuration directory is a copy and its run,
state and cache directories are empty tmpfs (nothing of another libvirtd on this machine is
seen or touched), its socket in the test's directory, reached through ``$LIBVIRT_DEFAULT_URI``
(``qemu:///system?socket=…``), which ``virsh`` (and so wlbridge, its controller too) honours.
Its QEMU driver runs domains as root, without a security driver, cgroups or virtlogd (none of
which a machine without systemd provides).  It is stopped by its PID; its mounts go with its
mount namespace.

The fixture is registered by conftest.py; tests import `virsh` from here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap

import pytest
from harness import wait_for
from managers import cannot

PRIVATE_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt")
QEMU_CONF = """
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
"""


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
    with open(base / "etc" / "qemu.conf", "a") as conf:
        conf.write(QEMU_CONF)
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
