"""The libvirt network of the bridge: what makes ``virt-install --network network=wlbridge``,
virt-manager's and Cockpit's network lists, and Vagrant's libvirt provider pick wlbridge.

`wlbridge setup` defines (when libvirt is installed: ``virsh`` from libvirt-clients), starts and
autostarts a network (default name ``wlbridge``, ``--libvirt-network``; empty: none) with
``<forward mode='bridge'/>``, the bridge, and ``<virtualport type='openvswitch'/>``, and records
its name in the bridge's ``external_ids:wlbridge-libvirt-network``; `wlbridge teardown` removes
the network recorded there, and only if it still points at that bridge.  A network of that
name that points elsewhere is someone else's: left alone, with a warning.

libvirt is driven through ``virsh`` (its connection: ``$LIBVIRT_DEFAULT_URI``, else libvirt's
default, ``qemu:///system`` for root), the network's XML built here and handed to
``virsh net-define``, never written into /etc by hand.  libvirt failing (installed but its
daemon not running, say) never fails setup or teardown: it is reported as a warning, and
rerunning setup retries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_NAME = "wlbridge"
NETWORK_KEY = "wlbridge-libvirt-network"   # Bridge external_ids: the network setup defined
TIMEOUT = 30.0

Run = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


class LibvirtError(Exception):
    """virsh failed; the message is its error, in one line."""


def network_xml(name: str, bridge: str) -> str:
    net = ET.Element("network")
    ET.SubElement(net, "name").text = name
    ET.SubElement(net, "forward", mode="bridge")
    ET.SubElement(net, "bridge", name=bridge)
    ET.SubElement(net, "virtualport", type="openvswitch")
    return ET.tostring(net, encoding="unicode")


@dataclass(frozen=True)
class Network:
    bridge: str | None
    openvswitch: bool
    active: bool
    autostart: bool


def _virsh(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def installed() -> bool:
    return shutil.which("virsh") is not None


def _check(res: subprocess.CompletedProcess[str], what: str) -> str:
    if res.returncode != 0:
        text = " ".join((res.stderr or res.stdout).replace("error:", " ").split())
        raise LibvirtError(f"{what}: {text or f'virsh exited {res.returncode}'}")
    return res.stdout


def lookup(name: str, run: Run = _virsh) -> Network | None:
    """Network `name` as libvirt has it (None: there is none)."""
    res = run(["net-dumpxml", name])
    if res.returncode != 0 and "not found" in (res.stderr + res.stdout).lower():
        return None
    root = ET.fromstring(_check(res, f"virsh net-dumpxml {name}"))
    br, vport = root.find("bridge"), root.find("virtualport")
    info = dict(line.split(":", 1) for line in _check(run(["net-info", name]),
                                                      f"virsh net-info {name}").splitlines()
                if ":" in line)
    yes = {k.strip().lower(): v.strip().lower() == "yes" for k, v in info.items()}
    return Network(bridge=br.get("name") if br is not None else None,
                   openvswitch=vport is not None and vport.get("type") == "openvswitch",
                   active=yes.get("active", False), autostart=yes.get("autostart", False))


def ensure(name: str, bridge: str, run: Run = _virsh) -> list[str]:
    """Define, start and autostart network `name` for `bridge` (what is in place is left);
    the changes made.  LibvirtError when libvirt refuses or the name is taken."""
    net = lookup(name, run)
    changes = []
    if net is None:
        with tempfile.NamedTemporaryFile("w", suffix=".xml", prefix="wlbridge-net-") as f:
            f.write(network_xml(name, bridge))
            f.flush()
            os.chmod(f.name, 0o644)
            _check(run(["net-define", f.name]), f"virsh net-define {name}")
        changes.append(f"libvirt network {name} defined (bridge {bridge}, Open vSwitch)")
        net = Network(bridge, True, False, False)
    elif net.bridge != bridge or not net.openvswitch:
        raise LibvirtError(f"a libvirt network named {name} exists already, for "
                           f"{net.bridge or 'no bridge'}; left alone (choose another "
                           "--libvirt-network)")
    if not net.active:
        _check(run(["net-start", name]), f"virsh net-start {name}")
        changes.append(f"libvirt network {name} started")
    if not net.autostart:
        _check(run(["net-autostart", name]), f"virsh net-autostart {name}")
        changes.append(f"libvirt network {name} set to autostart")
    return changes


def remove(name: str, bridge: str, run: Run = _virsh) -> list[str]:
    """Stop and undefine network `name` if it is `bridge`'s; the changes made."""
    net = lookup(name, run)
    if net is None:
        return []
    if net.bridge != bridge:
        return [f"libvirt network {name} now points at {net.bridge}: left alone"]
    if net.active:
        _check(run(["net-destroy", name]), f"virsh net-destroy {name}")
    _check(run(["net-undefine", name]), f"virsh net-undefine {name}")
    return [f"libvirt network {name} removed"]


# ---- the hooks of `wlbridge setup` and `teardown` ---------------------------------------
def after_setup(db: Any, bridge: str, name: str, out: Callable[[str], None],
                run: Run = _virsh, available: Callable[[], bool] = installed) -> None:
    """Setup's step: the network for the bridge when libvirt is installed (never fails)."""
    if not name:
        return
    if not available():
        out("  libvirt: not installed (no virsh); no libvirt network defined")
        return
    try:
        changes = ensure(name, bridge, run)
    except (LibvirtError, OSError, subprocess.SubprocessError, ET.ParseError) as exc:
        out(f"  warning: libvirt network {name} not set up: {exc}; rerun setup to retry "
            "(or pass --libvirt-network '' to go without)")
        return
    db.set_external_ids(bridge, {NETWORK_KEY: name})
    for line in changes or [f"libvirt network {name}: already in place"]:
        out(f"  {line}")
    out(f"  VMs: virt-install --network network={name},model=virtio ..., or pick '{name}' "
        "in virt-manager/Cockpit")


def before_teardown(info: Any, run: Run = _virsh,
                    available: Callable[[], bool] = installed) -> list[str]:
    """Teardown's step: remove the network setup recorded on the bridge (never fails)."""
    name = info.external_ids.get(NETWORK_KEY)
    if not name or not available():
        return []
    try:
        return remove(name, info.name, run)
    except (LibvirtError, OSError, subprocess.SubprocessError, ET.ParseError) as exc:
        return [(f"warning: libvirt network {name} not removed: {exc}; remove it with "
                 f"`virsh net-destroy {name}; virsh net-undefine {name}`")]
