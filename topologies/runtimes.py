"""Container runtimes for the integration tests and benchmarks (issue 23): a private dockerd,
`wlbridge docker-plugin` on a per-test socket, Podman with the CNI backend and the
`wlbridge` CNI plugin, an offline busybox image.  Shared by tests/integration (the emulated
LAN), bench/ and tests/wifi (the Wi-Fi test bed VM).

gVisor (this test machine's sandbox) refuses runc's setrlimit; there Podman runs with a
runtime wrapper that drops the OCI spec's rlimits (`RUNC_WRAPPER`), nothing else."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .procs import wait_for

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
    """A private dockerd under `base` (data root, exec root, socket): no iptables and no
    default bridge; or, with `netns` (a namespace the caller made), Docker's own default:
    the NAT bridge docker0 and its iptables rules, all inside that namespace (the host's
    iptables untouched; `nsenter`, not `ip netns exec`, which would hide the cgroups)."""

    def __init__(self, base: Path, netns: str | None = None) -> None:
        self.base, self.proc, self.netns = base, None, netns
        self.sock = base / "d.sock"

    def start(self) -> None:
        isolated = (["nsenter", f"--net=/run/netns/{self.netns}", "--", "dockerd"]
                    if self.netns else
                    ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none"])
        self.proc = subprocess.Popen(
            [*isolated,
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
            plugin_log = self.base / "plugin.log"
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}\n"
                                 + (self.base / "dockerd.log").read_text()[-1000:]
                                 + (plugin_log.read_text()[-3000:] if plugin_log.exists()
                                    else ""))
        return proc


class DockerPlugin:
    def __init__(self, bridge: str, name: str, base: Path,
                 lease_timeout: float | None = None) -> None:
        self.bridge, self.base, self.proc = bridge, base, None
        self.lease_timeout = lease_timeout      # None: the plugin's default
        self.docker_sock = base / "d.sock"      # the test's dockerd (`Docker`), asked for names
        self.sock = PLUGIN_DIR / f"{name}.sock"
        self.log = base / "plugin.log"

    def start(self) -> None:
        self.sock.parent.mkdir(parents=True, exist_ok=True)
        more = ([] if self.lease_timeout is None
                else ["--lease-timeout", f"{self.lease_timeout:g}"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wlbridge", "-v", "docker-plugin", "--bridge", self.bridge,
             "--socket", str(self.sock), "--state", str(self.base / "plugin.json"),
             "--run-dir", str(self.base / "run"), "--docker-host",
             f"unix://{self.docker_sock}", *more],
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


RUNC_WRAPPER = """#!{python}
import json, os, sys
args = sys.argv[1:]
if "create" in args or "run" in args:
    bundle = args[args.index("--bundle") + 1] if "--bundle" in args else "."
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        spec = json.load(f)
    spec.get("process", {{}}).pop("rlimits", None)
    with open(path, "w") as f:
        json.dump(spec, f)
os.execvp("runc", ["runc", *args])
"""

PLUGIN = """#!/bin/sh
PYTHONPATH={pythonpath} exec {python} -m wlbridge.cli.cni "$@"
"""


def gvisor() -> bool:
    try:
        return "runsc" in Path("/etc/hosts").read_text()
    except OSError:
        return False


class Podman:
    """Podman 4.3 with the CNI backend, everything private under `base`: storage root, run
    root, CNI configuration directory (``base/cni``, where a test writes its network) and
    containers.conf; the `wlbridge` CNI plugin beside the standard ones of `cni_path`; the
    image ``localhost/xct-busybox`` (`start`).  ``storage_driver``: Podman's (None: its
    configured default)."""

    def __init__(self, base: Path, cni_path: str, storage_driver: str | None = None) -> None:
        self.base = base
        (base / "cni").mkdir(parents=True)
        (base / "plugins").mkdir()
        plugin = base / "plugins" / "wlbridge"
        plugin.write_text(PLUGIN.format(python=sys.executable,
                                        pythonpath=os.environ.get("PYTHONPATH", "")))
        plugin.chmod(0o755)
        (base / "containers.conf").write_text(
            f'[network]\ncni_plugin_dirs = ["{base / "plugins"}", "{cni_path}"]\n'
            f'network_config_dir = "{base / "cni"}"\n')
        self.argv = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--network-backend", "cni", "--cni-config-dir", str(base / "cni")]
        if storage_driver is not None:
            self.argv += ["--storage-driver", storage_driver]
        if gvisor():
            wrapper = base / "runc-wrap"
            wrapper.write_text(RUNC_WRAPPER.format(python=sys.executable))
            wrapper.chmod(0o755)
            self.argv += ["--runtime", str(wrapper)]
        self.env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120
                 ) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.argv, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {proc.stderr}")
        return proc

    def start(self) -> None:
        self("import", str(busybox_tar(self.base)), "localhost/xct-busybox")

    def close(self) -> None:
        self("rm", "-a", "-f", "-t", "0", check=False)
        self("system", "reset", "--force", check=False)
        shutil.rmtree(self.base, ignore_errors=True)
