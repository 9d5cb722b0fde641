"""Booting the test bed VM: QEMU (software emulation) runs one job script and powers off.

The VM sees this machine's root filesystem read-only (its writes land in a tmpfs overlay), so
everything installed here (Open vSwitch, hostapd, wpa_supplicant, the project's venv) is there
too; it has no network card.  The job is a shell script written into the results directory,
which the VM mounts writable at `image.OUT_MOUNT`; the job leaves its exit status in `rc`.

Sleep (issue 24 item 3): the VM has ACPI S3 (``-global PIIX4_PM.disable_s3=0``) and a QMP
socket; while it runs, `Waker` asks QEMU its state and wakes a suspended VM (QMP
``system_wakeup``) after the seconds the job wrote into `SUSPEND_FOR` in the results
directory (default `SLEEP_DEFAULT`), so a test can suspend the VM to RAM (``echo mem >
/sys/power/state``) and be resumed as a laptop's lid is opened.
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
QMP_SOCKET = "qmp.sock"
SUSPEND_FOR = "suspend-for"  # seconds a suspended VM sleeps (written by the job)
SLEEP_DEFAULT = 5.0


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
        "-global", "PIIX4_PM.disable_s3=0",
        "-qmp", f"unix:{out / QMP_SOCKET},server=on,wait=off",
    ]


class Waker:
    """Wakes the VM from suspend-to-RAM (see the module docstring): `poll` is called from
    the console loop; it asks QEMU's state over QMP at most every `every` seconds."""

    def __init__(self, out: Path, every: float = 0.3) -> None:
        self.out, self.every = out, every
        self.sock = None
        self.buf = b""
        self.next_at = 0.0
        self.suspended_at: float | None = None
        self.wakeups = 0

    def poll(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.every
        try:
            status = self._ask("query-status").get("status")
        except (OSError, ValueError):
            self.close()
            return
        if status != "suspended":
            self.suspended_at = None
            return
        if self.suspended_at is None:
            self.suspended_at = now
            print(f"wifibed: the VM is suspended; waking it in {self._sleep_for():g} s",
                  file=sys.stderr, flush=True)
        if now - self.suspended_at >= self._sleep_for():
            reply = self._ask_raw("system_wakeup")
            print(f"wifibed: system_wakeup: {reply}", file=sys.stderr, flush=True)
            self.wakeups += 1
            self.suspended_at = None

    def _sleep_for(self) -> float:
        try:
            return float((self.out / SUSPEND_FOR).read_text().strip())
        except (OSError, ValueError):
            return SLEEP_DEFAULT

    def _ask(self, command: str) -> dict:
        import socket

        if self.sock is None:
            path = self.out / QMP_SOCKET
            if not path.exists():
                raise OSError("no QMP socket yet")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(2.0)
            self.sock.connect(str(path))
            self._reply()                                   # the greeting
            self.sock.sendall(b'{"execute": "qmp_capabilities"}\n')
            self._reply()
        return self._ask_raw(command).get("return") or {}

    def _ask_raw(self, command: str) -> dict:
        import json

        self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        return self._reply()

    def _reply(self) -> dict:
        """The next message that is not an event."""
        import json

        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise OSError("QMP closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""


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
        waker = Waker(out)
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                timed_out = True
                break
            waker.poll(time.monotonic())
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
        waker.close()
    (out / QMP_SOCKET).unlink(missing_ok=True)
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
