"""Fakes of `HostNet` and `Ovsdb` (and a few builders) for setup/teardown unit tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wlbridge.app import switch_link
from wlbridge.cli import bridge_setup
from wlbridge.host import hostnet, ovsdb
from wlbridge.host.hostnet import Address, Route, SavedState

MAC = "02:aa:bb:cc:dd:01"


def state(uplink: str = "wlan0") -> SavedState:
    return SavedState(uplink=uplink, mac=MAC, allmulticast=False,
                      addresses=[Address(4, "192.168.1.5", 24, "192.168.1.255", label=uplink)],
                      routes=[Route(4, None, 0, "192.168.1.1", proto=16)])


class FakeNet:
    def __init__(self, links: dict[str, dict[str, Any]]) -> None:
        self.links = links
        self.calls: list[tuple[Any, ...]] = []

    def link_index(self, name: str) -> int | None:
        return list(self.links).index(name) + 1 if name in self.links else None

    def master(self, name: str) -> tuple[str, str] | None:
        return self.links[name].get("master")

    def snapshot(self, name: str) -> SavedState:
        self.calls.append(("snapshot", name))
        ipv6 = self.links[name].get("ipv6")      # the link's IPv6 RA sysctls, if IPv6 is on
        return replace(state(name), uplink_ra=dict(ipv6) if ipv6 else None)

    def set_ipv6_conf(self, name: str, values: dict[str, str]) -> list[str]:
        self.calls.append(("ipv6", name, dict(values)))
        conf = self.links[name].setdefault("ipv6", {})
        changed = {k: v for k, v in values.items() if conf.get(k) != v}
        conf.update(changed)
        return [f"IPv6 {changed} on {name}"] if changed else []

    def move_ra_leftovers(self, src: str, dst: str | None) -> list[str]:
        self.calls.append(("ra_leftovers", src, dst))
        return []

    def get_tx_checksum(self, name: str) -> dict[str, bool] | None:
        return None

    def wait_for_link(self, name: str, timeout: float = 0) -> int:
        return self.link_index(name) or 0

    def get_mac(self, name: str) -> str:
        return self.links[name].get("mac", MAC)

    def flags(self, name: str) -> int:
        return hostnet.IFF_UP

    def get_allmulticast(self, name: str) -> bool:
        return self.links[name].get("allmulti", False)

    def set_allmulticast(self, name: str, on: bool) -> None:
        self.calls.append(("allmulti", name, on))
        self.links[name]["allmulti"] = on

    def move(self, st: SavedState, src: str, dst: str, nodad: bool = False) -> list[str]:
        self.calls.append(("move", src, dst))
        return self.links[dst].pop("pending", [])

    # uplink ingress: "absent", "ours", "foreign", "ingress"; "refuse": isolate_uplink fails
    def ingress_status(self, name: str) -> str:
        status = self.links[name].get("ingress", "absent")
        return "absent" if status == "refuse" else status

    def isolate_uplink(self, name: str) -> list[str]:
        self.calls.append(("isolate", name))
        status = self.links[name].get("ingress", "absent")
        if status == "refuse":
            raise hostnet.IsolationError("the kernel refused both filters")
        self.links[name]["ingress"] = "ours"
        return [] if status == "ours" else [f"filter added to {name}"]

    def release_uplink(self, name: str) -> list[str]:
        self.calls.append(("release", name))
        return [f"filter removed from {name}"] if self.links[name].pop("ingress", None) else []


def bridge(name: str = "br-wl", uplink: str | None = "wlan0", managed: bool = True,
           saved: str | None = None, controller: str | None = None) -> ovsdb.BridgeInfo:
    ports = [ovsdb.PortInfo(name, (ovsdb.InterfaceInfo(name, "internal", {}, 65534, None),))]
    if uplink:
        ports.append(ovsdb.PortInfo(uplink, (ovsdb.InterfaceInfo(
            uplink, "", {ovsdb.ROLE_KEY: ovsdb.ROLE_UPLINK}, 1, None),)))
    ext = {}
    if managed:
        ext = {ovsdb.OWNER_KEY: uplink or "wlan0",
               ovsdb.SAVED_KEY: saved if saved is not None else state().to_json()}
    ctl = ovsdb.ControllerInfo(controller or switch_link.passive_target(name), "out-of-band",
                               1000, 250, False)
    return ovsdb.BridgeInfo(name, "netdev", ("OpenFlow13",), "secure", (ctl,),
                            {"hwaddr": MAC}, ext, tuple(ports))


class FakeDb:
    def __init__(self, bridges: list[ovsdb.BridgeInfo] = (), iface_error: str | None = None,
                 net: FakeNet | None = None) -> None:
        self.bridges = {b.name: b for b in bridges}
        self.net = net
        self.iface_error = iface_error
        self.calls: list[tuple[Any, ...]] = []

    def port_bridge(self, port: str) -> str | None:
        return next((b.name for b in self.bridges.values()
                     if any(p.name == port for p in b.ports)), None)

    def bridge_info(self, name: str) -> ovsdb.BridgeInfo | None:
        return self.bridges.get(name)

    def create_bridge(self, spec: ovsdb.BridgeSpec) -> None:
        self.calls.append(("create", spec))
        if self.net is not None:     # ovs-vswitchd creates the internal port
            self.net.links[spec.name] = {"pending": ["address moved"]}
        self.bridges[spec.name] = bridge(spec.name, spec.ports[0].name,
                                         saved=spec.external_ids[ovsdb.SAVED_KEY])

    def wait_interface(self, name: str, timeout: float = 0) -> ovsdb.InterfaceInfo:
        err = self.iface_error
        return ovsdb.InterfaceInfo(name, "", {}, -1 if err else 1, err)

    def set_controller(self, bridge: str, target: str | None, connection_mode: str | None = None,
                       rate_limit: int | None = None, burst_limit: int | None = None) -> None:
        self.calls.append(("set_controller", bridge, target))
        ctl = ovsdb.ControllerInfo(target, connection_mode, rate_limit, burst_limit, False)
        self.bridges[bridge] = replace(self.bridges[bridge], controllers=(ctl,) if target else ())

    def delete_bridge(self, name: str) -> bool:
        self.calls.append(("delete", name))
        return self.bridges.pop(name, None) is not None


def opts(**kw: Any) -> bridge_setup.SetupOptions:
    return bridge_setup.SetupOptions(uplink=kw.pop("uplink", "wlan0"), **kw)
