"""The plain data wlbridge reads from and writes to OVSDB: read-only snapshots
(`BridgeInfo` and its parts), specs for `wlbridge.host.ovsdb.Ovsdb.create_bridge`, and
the ``external_ids`` keys wlbridge uses.  Re-exported by `wlbridge.host.ovsdb`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_KEY = "wlbridge-role"        # Interface external_ids: "uplink" marks the uplink
ROLE_UPLINK = "uplink"
OWNER_KEY = "wlbridge-uplink"     # Bridge external_ids: set on bridges wlbridge created
SAVED_KEY = "wlbridge-saved"      # Bridge external_ids: JSON of what setup moved


@dataclass(frozen=True)
class InterfaceInfo:
    name: str
    type: str
    external_ids: dict[str, str]
    ofport: int | None
    error: str | None


@dataclass(frozen=True)
class PortInfo:
    name: str
    interfaces: tuple[InterfaceInfo, ...]


@dataclass(frozen=True)
class ControllerInfo:
    target: str
    connection_mode: str | None
    rate_limit: int | None
    burst_limit: int | None
    is_connected: bool


@dataclass(frozen=True)
class BridgeInfo:
    """A read-only snapshot of one bridge."""

    name: str
    datapath_type: str
    protocols: tuple[str, ...]
    fail_mode: str | None
    controllers: tuple[ControllerInfo, ...]
    other_config: dict[str, str]
    external_ids: dict[str, str]
    ports: tuple[PortInfo, ...]

    @property
    def uplink(self) -> str | None:
        """Name of the interface marked ``external_ids:wlbridge-role=uplink``."""
        for port in self.ports:
            for iface in port.interfaces:
                if iface.external_ids.get(ROLE_KEY) == ROLE_UPLINK:
                    return iface.name
        return None

    @property
    def managed(self) -> bool:
        """True when wlbridge created this bridge."""
        return OWNER_KEY in self.external_ids

    def interface(self, name: str) -> InterfaceInfo | None:
        for port in self.ports:
            for iface in port.interfaces:
                if iface.name == name:
                    return iface
        return None


@dataclass
class PortSpec:
    """A port with one interface of the same name."""

    name: str
    type: str = ""
    iface_external_ids: dict[str, str] = field(default_factory=dict)
    ofport_request: int | None = None   # keep an OpenFlow port number (re-plugging a port)


@dataclass
class BridgeSpec:
    """Everything `Ovsdb.create_bridge` sets in one transaction."""

    name: str
    datapath_type: str = ""
    protocols: tuple[str, ...] = ("OpenFlow13",)
    fail_mode: str | None = "secure"
    controller: str | None = None
    connection_mode: str | None = None
    rate_limit: int | None = None
    burst_limit: int | None = None
    other_config: dict[str, str] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)
    ports: list[PortSpec] = field(default_factory=list)
