"""Booting the test bed VM: QEMU (software emulation) runs one job script and powers off.

The VM sees this machine's root filesystem read-only (its writes land in a tmpfs overlay), so
everything installed here (Open vSwitch, hostapd, wpa_supplicant, the project's venv) is there
too; it has no network card.  The job is a shell script written into the results directory,
which the VM mounts writable at `image.OUT_MOUNT`; the job leaves its exit status in `rc`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .image import JOB_NAME, OUT_MOUNT, Image

QEMU = "qemu-system-x86_64"
#: Programs the bed uses, on this machine (the VM runs this machine's root filesystem).
GUEST_TOOLS = ("hostapd", "hostapd_cli", "wpa_supplicant", "wpa_cli", "iw", "radvd",
               "dnsmasq", "dhclient", "busybox", "tcpdump", "ovsdb-server", "ovs-vswitchd",
               "ovs-vsctl", "ip", "ping", "iperf3", "modprobe", "openssl")
HOST_TOOLS = (QEMU, "apt-get", "apt-cache", "dpkg", "depmod", "cpio")
RC_FILE = "rc"
CONSOLE_LOG = "console.log"


def problem() -> str | None:
    """Why the VM cannot start here (one line), or None."""
    if sys.platform != "linux":
        return "the Wi-Fi test bed needs Linux"
    if os.geteuid() != 0:
        return "the Wi-Fi test bed needs root (QEMU shares / with the VM; run: sudo make test-wifi)"
    missing = [t for t in HOST_TOOLS + GUEST_TOOLS if not shutil.which(t)]
    if missing:
        return f"the Wi-Fi test bed is missing {' '.join(missing)} (run: make install wifi-deps)"
    return None


def guest_job(commands: str, env: dict[str, str], cwd: str) -> str:
    """The script the VM runs as PID 1: a private /run, then `commands` in `cwd`, then off.

    (/tmp stays the overlay's: the host's files show through, writes stay in the VM.)
    """
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    return f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
{exports}mount -t tmpfs tmpfs /run; mkdir -p /run/lock /run/netns /run/openvswitch
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts 2>/dev/null
ip link set lo up
dmesg -n 1
echo "wifibed: guest up, kernel $(uname -r), t=$(cut -d' ' -f1 /proc/uptime)s"
cd {shlex.quote(cwd)} || {{ echo 97 > {OUT_MOUNT}/{RC_FILE}; echo o > /proc/sysrq-trigger; }}
(
{commands}
)
echo $? > {OUT_MOUNT}/{RC_FILE}
sync
echo "wifibed: job done, t=$(cut -d' ' -f1 /proc/uptime)s"
echo o > /proc/sysrq-trigger
sleep 30
"""


def qemu_argv(image: Image, out: Path, *, memory_mb: int = 2048, cpus: int = 2) -> list[str]:
    return [
        QEMU, "-accel", "tcg,thread=multi", "-cpu", "max", "-m", str(memory_mb),
        "-smp", str(cpus), "-nographic", "-no-reboot", "-nic", "none",
        "-kernel", str(image.vmlinuz), "-initrd", str(image.initrd),
        "-append", "console=ttyS0 panic=-1 quiet loglevel=4",
        "-virtfs", "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={out},mount_tag=out,security_model=none",
        "-serial", "stdio", "-monitor", "none",
    ]


def run(image: Image, out: Path, job: str, *, timeout: float, echo=sys.stdout) -> int:
    """Boot the VM on `job`; the job's exit status, or 124 (timeout) / 125 (no status)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RC_FILE).unlink(missing_ok=True)
    (out / JOB_NAME).write_text(job)
    deadline = time.monotonic() + timeout
    with open(out / CONSOLE_LOG, "wb") as console:
        proc = subprocess.Popen(qemu_argv(image, out), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        timed_out = False
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                timed_out = True
                break
            chunk = _read(proc.stdout, 0.2)
            if chunk:
                console.write(chunk)
                if echo is not None:
                    echo.write(chunk.decode(errors="replace").replace("\r", ""))
                    echo.flush()
        rest = proc.stdout.read() or b""
        console.write(rest)
        if echo is not None:
            echo.write(rest.decode(errors="replace").replace("\r", ""))
        proc.wait()
    if timed_out:
        return 124
    try:
        return int((out / RC_FILE).read_text().strip())
    except (OSError, ValueError):
        return 125


def _read(stream, wait: float) -> bytes:
    import select

    ready, _, _ = select.select([stream], [], [], wait)
    if not ready:
        return b""
    try:
        return stream.read() or b""
    except BlockingIOError:
        return b""
