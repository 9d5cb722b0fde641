"""Container runtimes for the integration tests and benchmarks (issue 23): a private dockerd,
`wlbridge docker-plugin` on a per-test socket, an offline busybox image."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from harness import wait_for

BUSYBOX = "/bin/busybox"
PLUGIN_DIR = Path("/run/docker/plugins")


def busybox_tar(base: Path) -> Path:
    """A tar of a static busybox root (for `docker import` / `podman import`)."""
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for tool in ("sh", "sleep", "ip", "ping", "cat"):
        (rootfs / "bin" / tool).symlink_to("busybox")
    for d in ("etc", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir()
    tar = base / "bb.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


class Docker:
    def __init__(self, base: Path) -> None:
        self.base, self.proc = base, None
        self.sock = base / "d.sock"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--storage-driver=vfs", "--live-restore", "--data-root", str(self.base / "data"),
             "--exec-root", str(self.base / "exec"), "-H", f"unix://{self.sock}",
             "--pidfile", str(self.base / "d.pid")],
            stdout=open(self.base / "dockerd.log", "ab"),  # noqa: SIM115 - the daemon's
            stderr=subprocess.STDOUT)
        wait_for(lambda: self("version", check=False).returncode == 0, timeout=60,
                 what="dockerd to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __call__(self, *args: str, check: bool = True, timeout: float = 120
                 ) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}\n"
                                 + (self.base / "dockerd.log").read_text()[-1000:]
                                 + (self.base / "plugin.log").read_text()[-3000:])
        return proc


class DockerPlugin:
    def __init__(self, bridge: str, name: str, base: Path) -> None:
        self.bridge, self.base, self.proc = bridge, base, None
        self.docker_sock = base / "d.sock"      # the test's dockerd (`Docker`), asked for names
        self.sock = PLUGIN_DIR / f"{name}.sock"
        self.log = base / "plugin.log"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wlbridge", "-v", "docker-plugin", "--bridge", self.bridge,
             "--socket", str(self.sock), "--state", str(self.base / "plugin.json"),
             "--run-dir", str(self.base / "run"), "--docker-host",
             f"unix://{self.docker_sock}"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        wait_for(self.sock.exists, timeout=20, what="the plugin's socket")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def close(docker: Docker, plugin: DockerPlugin, base: Path) -> None:
    """Remove the containers and networks, stop dockerd and the plugin, remove their files."""
    docker("rm", "-f", "-v", *docker("ps", "-aq").stdout.split(), check=False)
    docker("network", "prune", "-f", check=False)
    docker.stop()
    plugin.stop()
    if plugin.sock.exists():
        plugin.sock.unlink()
    subprocess.run(["umount", "-R", str(base / "exec")], check=False, capture_output=True)
    subprocess.run(["umount", "-R", str(base / "data")], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
