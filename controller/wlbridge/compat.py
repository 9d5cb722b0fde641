"""The one place that knows whether we run on os-ken or on Ryu.

os-ken (OpenStack's maintained fork) and Ryu 4.34 share the same API under
different package names.  Everything else imports framework modules from here.
Only the pure parts (OpenFlow 1.3 protocol classes, the packet library) are
exported at module level; the controller runtime is loaded by `runtime()`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from wlbridge import fastaddr

try:  # pragma: no cover - which branch runs depends on the installation
    import os_ken as _framework

    FRAMEWORK = "os_ken"
except ImportError:  # pragma: no cover
    import ryu as _framework  # noqa: F401

    FRAMEWORK = "ryu"


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{FRAMEWORK}.{name}")


ofp = _load("ofproto.ofproto_v1_3")
parser = _load("ofproto.ofproto_v1_3_parser")
ether_types = _load("lib.packet.ether_types")
packet = _load("lib.packet.packet")
ethernet = _load("lib.packet.ethernet")
arp = _load("lib.packet.arp")
ipv4 = _load("lib.packet.ipv4")
ipv6 = _load("lib.packet.ipv6")
udp = _load("lib.packet.udp")
ipv6 = _load("lib.packet.ipv6")
icmpv6 = _load("lib.packet.icmpv6")
dhcp = _load("lib.packet.dhcp")
dhcp6 = _load("lib.packet.dhcp6")  # Ryu 4.34 has it too (ryu.lib.packet.dhcp6, since 2016)
vlan = _load("lib.packet.vlan")
packet_utils = _load("lib.packet.packet_utils")
addrconv = _load("lib.addrconv")

# Address text conversion without netaddr for the usual cases (same results): see fastaddr.
fastaddr.install(addrconv)


def runtime() -> dict[str, ModuleType]:
    """Controller runtime modules (only the app shell may call this)."""
    return {
        "app_manager": _load("base.app_manager"),
        "ofp_event": _load("controller.ofp_event"),
        "handler": _load("controller.handler"),
        "hub": _load("lib.hub"),
        "cfg": _load("cfg"),
    }
