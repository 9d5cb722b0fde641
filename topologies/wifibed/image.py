"""The VM's kernel and initramfs, built from Debian packages and cached between runs.

The kernel is whatever `linux-image-amd64` depends on, fetched with `apt-get download`, unpacked
with `dpkg -x` and indexed with `depmod -b` (the package ships no modules.dep); it is never
installed on this machine.  The initramfs is busybox plus the few modules needed to mount the
host's root filesystem (virtio, 9p, overlay), resolved from modules.dep.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("WLBRIDGE_WIFIBED_CACHE", "/var/cache/wlbridge-wifibed"))
META_PACKAGE = "linux-image-amd64"
#: Modules the initramfs loads (with their dependencies) before mounting the root filesystem.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
BUSYBOX = "/bin/busybox"
#: Where, inside the VM, the writable results share is mounted.
OUT_MOUNT = "/wifibed-out"
#: The job the VM runs, as a path inside the results share.
JOB_NAME = "job.sh"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m || echo "wifibed-initrd: insmod $m failed"; done
fail() { echo "wifibed-initrd: $*"; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose root /lower \
  || fail "cannot mount the host root over 9p"
mount -t tmpfs -o size=3G tmpfs /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot \
  || fail "cannot mount the overlay"
KV=$(uname -r)
mkdir -p /newroot/lib/modules/$KV
mount --bind /lower@KROOT@/lib/modules/$KV /newroot/lib/modules/$KV
mkdir -p /newroot@OUT@
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /newroot@OUT@ \
  || fail "cannot mount the results share"
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /bin/sh @OUT@/@JOB@
"""


class ImageError(Exception):
    """The kernel or initramfs cannot be made (one line, for the user)."""


@dataclass(frozen=True)
class Image:
    version: str        # e.g. "6.1.0-57-amd64"
    kroot: Path         # the unpacked package
    initrd: Path

    @property
    def vmlinuz(self) -> Path:
        return self.kroot / "boot" / f"vmlinuz-{self.version}"


def _out(argv: list[str], cwd: Path | None = None) -> str:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise ImageError(f"{' '.join(argv)} failed: {last}")
    return res.stdout


def kernel_version() -> str:
    """The version `linux-image-amd64` points to, e.g. "6.1.0-57-amd64"."""
    deps = _out(["apt-cache", "depends", META_PACKAGE])
    m = re.search(r"Depends:\s*linux-image-(\S+-amd64)\b", deps)
    if not m:
        raise ImageError(f"cannot tell which kernel {META_PACKAGE} depends on (apt-get update?)")
    return m.group(1)


def fetch_kernel(cache: Path = DEFAULT_CACHE, version: str | None = None) -> Path:
    """The unpacked, depmod-ed kernel package under `cache` (downloaded when missing)."""
    version = version or kernel_version()
    kroot = cache / f"kroot-{version}"
    stamp = kroot / ".complete"
    if stamp.exists():
        return kroot
    cache.mkdir(parents=True, exist_ok=True)
    pkg = f"linux-image-{version}"
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if not debs:
        _out(["apt-get", "download", pkg], cwd=cache)
        debs = sorted(cache.glob(f"{pkg}_*.deb"))
        if not debs:
            raise ImageError(f"apt-get download {pkg} left no .deb in {cache}")
    shutil.rmtree(kroot, ignore_errors=True)
    _out(["dpkg", "-x", str(debs[-1]), str(kroot)])
    _out(["depmod", "-b", str(kroot), version])
    stamp.touch()
    return kroot


def module_order(kroot: Path, version: str, wanted=BOOT_MODULES) -> list[str]:
    """Relative .ko paths to insmod, dependencies first."""
    moddir = kroot / "lib" / "modules" / version
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {re.sub(r"\.ko(\.\w+)?$", "", Path(p).name).replace("-", "_"): p for p in deps}
    order: list[str] = []

    def add(path: str) -> None:
        if path in order:
            return
        for d in reversed(deps[path]):
            add(d)
        order.append(path)

    for name in wanted:
        if name in by_name:           # absent = built into this kernel
            add(by_name[name])
    return order


def build_initrd(kroot: Path, version: str, out: Path) -> Path:
    """The busybox initramfs (rebuilt when missing or older than the kernel; `prepare` names
    it after busybox and the init script, so a change of either makes a new one)."""
    if out.exists() and out.stat().st_mtime >= (kroot / ".complete").stat().st_mtime:
        return out
    work = out.with_name(out.name + ".d")
    busybox_tree(work, kroot, version, BOOT_MODULES, ("lower", "upper", "newroot"))
    init = (INIT.replace("@KROOT@", str(kroot)).replace("@OUT@", OUT_MOUNT)
            .replace("@JOB@", JOB_NAME))
    (work / "init").write_text(init)
    (work / "init").chmod(0o755)
    return pack_initrd(work, out)


def busybox_tree(work: Path, kroot: Path, version: str, modules=BOOT_MODULES,
                 dirs=()) -> None:
    """A fresh initramfs tree in `work`: busybox (with its libraries, if any) in /bin, the
    `modules` with their dependencies in /mods (their insmod order in /mods/order), the usual
    mount points and `dirs`.  The caller adds /init (`pack_initrd` then packs it)."""
    if not Path(BUSYBOX).exists():
        raise ImageError(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    shutil.rmtree(work, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "mods", *dirs):
        (work / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, work / "bin" / "busybox")
    for lib in shared_libraries(Path(BUSYBOX)):     # none for busybox-static
        dest = work / lib.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dest)          # with its mode: the loader must be executable
    names = []
    for rel in module_order(kroot, version, modules):
        src = kroot / "lib" / "modules" / version / rel
        names.append(src.name)
        shutil.copy2(src, work / "mods" / src.name)
    (work / "mods" / "order").write_text("\n".join(names) + "\n")


def pack_initrd(work: Path, out: Path) -> Path:
    """The tree in `work` as a gzipped newc cpio at `out` (atomically); `work` removed."""
    files = subprocess.run(["find", "."], cwd=work, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=work, input=files,
                          capture_output=True, check=False)
    if cpio.returncode != 0:
        raise ImageError(f"cpio failed: {cpio.stderr.decode(errors='replace').strip()}")
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(tmp, "wb", compresslevel=1) as f:
        f.write(cpio.stdout)
    tmp.replace(out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries (and loader) a dynamically linked binary needs, from ldd."""
    res = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if res.returncode != 0:          # "not a dynamic executable"
        return []
    return [Path(m.group(1)) for m in re.finditer(r"(/\S+) \(0x", res.stdout)]


def prepare(cache: Path = DEFAULT_CACHE) -> Image:
    """Kernel and initramfs, from the cache when they are there."""
    version = cached_version(cache) or kernel_version()
    kroot = fetch_kernel(cache, version)
    initrd = build_initrd(kroot, version, cache / f"initrd-{version}-{_initrd_key()}.gz")
    for stale in cache.glob("initrd-*.gz"):
        if stale != initrd:
            stale.unlink(missing_ok=True)
    return Image(version, kroot, initrd)


def _initrd_key() -> str:
    """What the initramfs is made of besides the kernel: busybox (static or not) and init."""
    h = hashlib.sha1(INIT.encode())
    with contextlib.suppress(OSError):
        h.update(Path(BUSYBOX).read_bytes())
    return h.hexdigest()[:12]


def cached_version(cache: Path) -> str | None:
    """The cached kernel, when `linux-image-amd64` still points to it (or apt cannot tell)."""
    have = sorted(p.name[len("kroot-"):] for p in cache.glob("kroot-*")
                  if (p / ".complete").exists())
    if not have:
        return None
    try:
        want = kernel_version()
    except ImageError:
        return have[-1]
    return want if want in have else None
