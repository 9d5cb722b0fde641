"""A tiny guest VM for the tests: a kernel and a busybox initramfs that brings up its virtio
NIC by DHCP (busybox udhcpc) and IPv6 SLAAC (the kernel's), then idles, answering pings.

The kernel is the Wi-Fi test bed's (`topologies.wifibed.image.fetch_kernel`: Debian's, cached
in the same directory, never installed here); the initramfs is built with the same helpers
(`busybox_tree`, `pack_initrd`), with virtio-net instead of 9p and an init of its own.  No
disk, no root filesystem: the VM lives in its initramfs (64-128 MB of memory is plenty).

    image = guest_image()                        # built once, then cached
    xml = domain_xml("vm1", image, mac="52:54:00:…", network="wlbridge")   # libvirt
    argv = qemu_argv(image, mac=..., netdev="bridge,id=n0,br=wlvm0")      # plain QEMU

Its console (serial) prints ``guestvm: up`` when its init runs and ``guestvm: lease <ip>``
for each DHCP lease.  Boot a VM only under ``flock /work/logs/vm.lock`` on shared machines.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .wifibed.image import (
    BUSYBOX,
    DEFAULT_CACHE,
    busybox_tree,
    cached_version,
    fetch_kernel,
    kernel_version,
    pack_initrd,
)

QEMU = "qemu-system-x86_64"
#: Modules the init loads (with their dependencies): the virtio NIC and its PCI transport.
MODULES = ("virtio_pci", "virtio_net")
MEMORY_MB = 128
UP_LINE = "guestvm: up"
LEASE_LINE = "guestvm: lease"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m || echo "guestvm: insmod $m failed"; done
echo 1 > /proc/sys/net/ipv6/conf/default/accept_ra
ip link set lo up
n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
ip link set eth0 up
hostname guestvm
echo "guestvm: up, kernel $(uname -r), t=$(cut -d' ' -f1 /proc/uptime)s"
udhcpc -i eth0 -s /udhcpc.sh -b -t 30 -T 1 -A 1 -x hostname:guestvm
while true; do sleep 3600; done
"""

UDHCPC = r"""#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "guestvm: lease $ip" > /dev/console ;;
esac
exit 0
"""


@dataclass(frozen=True)
class GuestImage:
    vmlinuz: Path
    initrd: Path


def guest_image(cache: Path = DEFAULT_CACHE) -> GuestImage:
    """The kernel (the test bed's, fetched once) and this VM's initramfs (built once per
    kernel, busybox and init)."""
    version = cached_version(cache) or kernel_version()
    kroot = fetch_kernel(cache, version)
    key = hashlib.sha1((INIT + UDHCPC).encode() + Path(BUSYBOX).read_bytes()).hexdigest()[:12]
    out = cache / f"guestvm-initrd-{version}-{key}.gz"
    if not out.exists():
        work = out.with_name(f"{out.name}.{os.getpid()}.d")
        busybox_tree(work, kroot, version, MODULES, ("etc",))
        for name, text in (("init", INIT), ("udhcpc.sh", UDHCPC)):
            (work / name).write_text(text)
            (work / name).chmod(0o755)
        pack_initrd(work, out)
        for stale in cache.glob("guestvm-initrd-*.gz"):
            if stale != out:
                stale.unlink(missing_ok=True)
    return GuestImage(kroot / "boot" / f"vmlinuz-{version}", out)


CMDLINE = "console=ttyS0 panic=-1 quiet loglevel=4"


def domain_xml(name: str, image: GuestImage, *, mac: str, network: str, console: Path,
               memory_mb: int = MEMORY_MB) -> str:
    """A libvirt domain (QEMU, software emulation) on libvirt network `network`, its serial
    console written to `console`.  Checksum and segmentation offloads are off on the NIC:
    the userspace datapath forwards frames as the guest wrote them."""
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = str(memory_mb)
    ET.SubElement(dom, "vcpu").text = "1"
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "kernel").text = str(image.vmlinuz)
    ET.SubElement(os_, "initrd").text = str(image.initrd)
    ET.SubElement(os_, "cmdline").text = CMDLINE
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_crash").text = "destroy"
    dev = ET.SubElement(dom, "devices")
    iface = ET.SubElement(dev, "interface", type="network")
    ET.SubElement(iface, "source", network=network)
    ET.SubElement(iface, "mac", address=mac)
    ET.SubElement(iface, "model", type="virtio")
    drv = ET.SubElement(iface, "driver", name="qemu")
    off = {k: "off" for k in ("csum", "tso4", "tso6", "ecn", "ufo")}
    ET.SubElement(drv, "host", **off)
    ET.SubElement(drv, "guest", **off)
    serial = ET.SubElement(dev, "serial", type="file")
    ET.SubElement(serial, "source", path=str(console))
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(dev, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def qemu_argv(image: GuestImage, *, mac: str, netdev: str, console: Path,
              memory_mb: int = MEMORY_MB) -> list[str]:
    """QEMU itself (no libvirt) with one virtio NIC on `netdev` (e.g. ``bridge,br=wlvm0``:
    through qemu-bridge-helper, as ``qemu:///session`` and GNOME Boxes attach)."""
    return [
        QEMU, "-accel", "tcg", "-m", str(memory_mb), "-smp", "1", "-nographic",
        "-no-reboot", "-kernel", str(image.vmlinuz), "-initrd", str(image.initrd),
        "-append", CMDLINE, "-netdev", f"{netdev},id=n0",
        "-device", (f"virtio-net-pci,netdev=n0,mac={mac},csum=off,guest_csum=off,"
                    "guest_tso4=off,guest_tso6=off,host_tso4=off,host_tso6=off"),
        "-serial", f"file:{console}", "-monitor", "none", "-display", "none",
    ]


def leases(console_text: str) -> list[str]:
    """The addresses the VM said it leased, in order."""
    return [line.split()[2] for line in console_text.splitlines()
            if line.startswith(LEASE_LINE) and len(line.split()) > 2]
