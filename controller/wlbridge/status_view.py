"""A view of the core's state: the status document (data only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wlbridge.flows.pipeline import BROADCAST
from wlbridge.model.state import Model, Port
from wlbridge.proto.groupmsg import WELL_KNOWN, group_mac


def status_view(model: Model, ports: Mapping[int, Port], unconfirmed: list[dict],
                switch: dict[str, Any], settings: dict[str, Any], counters: Mapping[str, int],
                now: float) -> dict[str, Any]:
    """The core's state as `wlbridge status` shows it (JSON-able): the model, the switch's
    ports, the records still waiting for theirs (`Parked.unconfirmed`), the switch
    (``dpid``, ``connected``, ``generation``) and the settings shown (``uplink`` name,
    ``dhcp_mode``, ``idle_timeout``)."""
    uplink = ports.get(model.uplink) if model.uplink is not None else None
    guests = []
    for g in sorted(model.guests.values(), key=lambda g: g.port_no):
        ips = [model.bindings[ip] for ip in sorted(g.ips) if ip in model.bindings]
        guests.append({
            "port": g.name, "port_no": g.port_no, "mac": g.mac, "mac_source": g.mac_source,
            "macs": list(g.macs), "confirmed": True,
            "ips": [_address(b.ip, b.source, b.learned_at, b.expires, b.lease, now, b.mac)
                    for b in ips],
        })
    # saved (or parked) records still waiting for the switch to show their port
    for rec in unconfirmed:
        guests.append({
            "port": rec["port"], "port_no": None, "mac": rec["mac"],
            "mac_source": rec["mac_source"], "macs": rec.get("macs", [rec["mac"]]),
            "confirmed": False,
            "ips": [_address(b["ip"], b["source"], b["learned_at"], b["expires"], b["lease"],
                             now, b["mac"]) for b in sorted(rec["ips"], key=lambda b: b["ip"])],
        })
    dpid = switch["dpid"]
    return {
        "dpid": None if dpid is None else f"{dpid:016x}",
        "connected": switch["connected"],
        "generation": switch["generation"],
        "uplink": {"name": settings["uplink"], "port_no": model.uplink,
                   "present": uplink is not None, "up": bool(uplink and uplink.up)},
        "station_mac": model.station_mac,
        "host_ips": sorted(model.host_ips),
        "dhcp_mode": settings["dhcp_mode"],
        "idle_timeout": settings["idle_timeout"],
        "guests": guests,
        "groups": group_view(model, now),
        "fleet": fleet_view(model, now),
        "counters": dict(sorted(counters.items())),
    }


def fleet_view(model: Model, now: float) -> dict[str, Any]:
    """The fleet store's view (empty without a store): the other live hosts, the addresses
    they hold, those refused here because another host holds them, and those another host
    refused because a guest here holds them."""
    refused_elsewhere = [{"ip": ip, "host": h.name, "says": says}
                         for h in sorted(model.fleet_hosts.values(), key=lambda h: h.name)
                         for ip, says in h.conflicts if ip in model.bindings]
    return {
        "hosts": [{"name": h.name, "station_mac": h.station_mac,
                   "last_seen_ago": round(now - h.last_seen, 1)}
                  for h in sorted(model.fleet_hosts.values(), key=lambda h: h.name)],
        "remote": [{"ip": c.ip, "mac": c.mac, "host": c.host, "guest": c.guest}
                   for c in sorted(model.remote.values(), key=lambda c: c.ip)],
        "refused_here": [{"ip": c.ip, "mac": c.mac, "holder": c.holder,
                          "holder_mac": c.holder_mac, "at": c.at}
                         for c in model.conflicts.values()],
        "refused_elsewhere": refused_elsewhere,
    }


def group_view(model: Model, now: float) -> list[dict[str, Any]]:
    """Every group whose AP-unicast copies are restored: those guests joined (with their
    member ports and when each membership ends), the well-known groups and the host's
    subnet broadcasts (to every port, ``always``)."""
    names = {g.port_no: g.name for g in model.guests.values()}
    out = [{"group": g, "mac": _group_mac(g), "always": True, "members": []}
           for g in sorted(set(WELL_KNOWN) | model.host_broadcasts)]
    for group, members in sorted(model.groups.items()):
        out.append({"group": group, "mac": _group_mac(group), "always": False, "members": [
            {"port": names.get(p, str(p)), "port_no": p, "expires": end,
             "expires_in": round(end - now)} for p, end in sorted(members.items())]})
    return out


def _group_mac(group: str) -> str:
    return group_mac(group) if ":" in group or 224 <= int(group.split(".")[0]) < 240 \
        else BROADCAST


def _address(ip: str, source: str, learned_at: float, expires: float | None,
             lease: int | None, now: float, mac: str) -> dict[str, Any]:
    return {"ip": ip, "mac": mac, "source": source, "learned_at": learned_at,
            "expires": expires, "lease": lease,
            "expires_in": None if expires is None else round(expires - now)}

