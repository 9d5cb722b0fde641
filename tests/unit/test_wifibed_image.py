"""The test bed's host side without booting anything: module order, the guest job, the
reason the VM cannot start, and that tests/wifi stays out of ordinary pytest runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from topologies.wifibed import image, vm

ROOT = Path(__file__).resolve().parents[2]


def fake_kernel(tmp_path: Path, deps: dict[str, list[str]]) -> Path:
    moddir = tmp_path / "lib" / "modules" / "9.9-amd64"
    moddir.mkdir(parents=True)
    (moddir / "modules.dep").write_text(
        "".join(f"{m}: {' '.join(d)}\n" for m, d in deps.items()))
    return tmp_path


def test_boot_modules_come_after_their_dependencies(tmp_path):
    k = "kernel/"
    kroot = fake_kernel(tmp_path, {
        k + "fs/9p/9p.ko": [k + "fs/netfs/netfs.ko", k + "net/9p/9pnet.ko"],
        k + "net/9p/9pnet_virtio.ko": [k + "drivers/virtio/virtio_ring.ko", k + "net/9p/9pnet.ko"],
        k + "net/9p/9pnet.ko": [], k + "fs/netfs/netfs.ko": [],
        k + "drivers/virtio/virtio_ring.ko": [], k + "fs/overlayfs/overlay.ko": [],
        k + "drivers/unrelated.ko": [],
    })
    order = [Path(p).stem for p in image.module_order(kroot, "9.9-amd64")]
    assert sorted(order) == sorted(["9p", "9pnet", "netfs", "9pnet_virtio", "virtio_ring",
                                    "overlay"])       # virtio_pci: built in, so absent
    for mod, dep in (("9p", "9pnet"), ("9p", "netfs"), ("9pnet_virtio", "virtio_ring")):
        assert order.index(dep) < order.index(mod)


def test_guest_job_records_the_status_and_powers_off():
    job = vm.guest_job("false", {"A": "it's"}, "/some dir")
    assert "export A='it'\"'\"'s'" in job
    assert "cd '/some dir'" in job
    status = job.index(f"echo $? > {image.OUT_MOUNT}/{vm.RC_FILE}")
    assert job.index("false") < status < job.index("echo o > /proc/sysrq-trigger", status)


def test_a_missing_tool_is_one_line(monkeypatch):
    monkeypatch.setattr(vm.os, "geteuid", lambda: 0)
    monkeypatch.setattr(vm.shutil, "which", lambda t: None if t == vm.QEMU else "/bin/" + t)
    problem = vm.problem()
    assert problem and "\n" not in problem and vm.QEMU in problem


def test_the_wifi_suite_is_not_collected_outside_the_bed():
    res = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "tests/wifi"],
                         cwd=ROOT, capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}/controller:{ROOT}"})
    assert "test_wifi" not in res.stdout
