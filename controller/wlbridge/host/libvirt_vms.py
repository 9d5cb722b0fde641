"""libvirt's records of its VMs on the bridge: which VM (domain) a port is, and its MAC.

When libvirt plugs a VM's interface into an Open vSwitch bridge (a network with
``<virtualport type='openvswitch'/>``, such as the one `wlbridge setup` defines,
`wlbridge.host.libvirt_net`), it adds the port and writes on its Interface row, in the same
transaction, ``external_ids``:

* ``attached-mac`` — the MAC of the VM's interface (as in the domain XML);
* ``vm-id`` — the domain's UUID;
* ``iface-id`` — the interface's ``<virtualport><parameters interfaceid=…/>``;
* ``iface-status`` — ``active``.

`vm_ports` reads those from the bridge's interfaces (read by the isolation worker,
`wlbridge.host.port_isolation`); `DomainNames` turns a UUID into the domain's name with
``virsh domname`` (libvirt's connection: ``$LIBVIRT_DEFAULT_URI`` or libvirt's default), and
falls back to the UUID when libvirt cannot say (not installed, its daemon down, the domain
gone).  The controller gives the MAC to the core as *announced* (`Core.guest_announced`):
learned before the VM's first frame, not configured, so a VM's nested guests still pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from wlbridge.host.attach import GUEST_KEY

ATTACHED_MAC = "attached-mac"
VM_ID = "vm-id"
IFACE_ID = "iface-id"
IFACE_STATUS = "iface-status"
OURS = GUEST_KEY   # a port `wlbridge attach` or a container plugin made (no VM)
SOURCE = "libvirt"   # the announcement's source, as the core counts and shows it
TIMEOUT = 10.0

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

Run = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class VmPort:
    """A port libvirt plugged for a VM."""

    port: str           # the OVS port / interface name (the VM's tap, e.g. vnet0)
    mac: str            # attached-mac, lower case
    vm_id: str | None   # the domain's UUID
    iface_id: str | None = None
    status: str | None = None
    name: str | None = None   # the domain's name (its UUID when libvirt cannot tell)
    source: str = SOURCE


def vm_ports(interfaces: Mapping[str, Mapping[str, str]]) -> dict[str, VmPort]:
    """The interfaces (name -> external_ids) libvirt wrote a valid ``attached-mac`` on (not
    those `wlbridge attach` and the container plugins made: they write ``attached-mac`` too,
    beside ``wlbridge-guest``, and are no VM)."""
    out = {}
    for name, ids in interfaces.items():
        mac = str(ids.get(ATTACHED_MAC, "")).strip().lower()
        if not _MAC.match(mac) or OURS in ids:
            continue
        out[name] = VmPort(name, mac, ids.get(VM_ID) or None, ids.get(IFACE_ID) or None,
                           ids.get(IFACE_STATUS) or None)
    return out


def _virsh(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


class DomainNames:
    """Domain UUID -> name (``virsh domname``), names found kept (a domain's name changes
    only while it is shut off, when its port is gone)."""

    def __init__(self, run: Run = _virsh,
                 available: Callable[[], bool] = lambda: shutil.which("virsh") is not None
                 ) -> None:
        self._run = run
        self._available = available
        self._names: dict[str, str] = {}

    def name(self, uuid: str | None) -> str | None:
        """The domain's name; its UUID when libvirt cannot tell; None without a UUID."""
        if not uuid:
            return None
        if uuid in self._names:
            return self._names[uuid]
        if not self._available():
            return uuid
        try:
            res = self._run(["domname", uuid])
        except (OSError, subprocess.SubprocessError):
            return uuid
        name = res.stdout.strip() if res.returncode == 0 else ""
        if not name:
            return uuid
        self._names[uuid] = name
        return name

    def named(self, vms: Mapping[str, VmPort]) -> list[VmPort]:
        """`vms` with their domain names, by port name."""
        return [replace(vm, name=self.name(vm.vm_id)) for _, vm in sorted(vms.items())]
