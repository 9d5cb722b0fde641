"""Removing what a topology created: namespaces, root-namespace links, processes, OVS bridges.

Everything a world creates is named ``<prefix>-...``; root-namespace links also carry the
ifalias ``wlbridge-topology:<prefix>`` (the station uplink may have any name).
"""

from __future__ import annotations

import glob
import ipaddress
import shutil
import tempfile
from pathlib import Path

from pyroute2 import IPRoute, netns

from . import ovs
from .graph import new_prefix, subnet_for
from .procs import kill_pids, wait_for

ALIAS = "wlbridge-topology:"


def alias_for(prefix: str) -> str:
    return ALIAS + prefix


def _owned(prefix: str, name: str) -> bool:
    return name.startswith(prefix + "-")


def list_namespaces(prefix: str) -> list[str]:
    return sorted(n for n in netns.listnetns() if _owned(prefix, n))


def list_root_links(prefix: str) -> list[str]:
    found = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name, alias = link.get("ifname"), link.get("ifalias")
            if _owned(prefix, name) or alias == alias_for(prefix):
                found.append(name)
    return sorted(found)


def kill_namespace_processes(names: list[str]) -> list[int]:
    """Kill every process living in these namespaces; returns their pids."""
    by_ns = netns.ns_pids()
    pids = [pid for name in names for pid in by_ns.get(name, [])]
    kill_pids(pids)
    return pids


def delete_root_links(names: list[str]) -> None:
    with IPRoute() as ipr:
        for name in names:
            idx = ipr.link_lookup(ifname=name)
            if idx:
                try:
                    ipr.link("del", index=idx[0])
                except Exception as exc:  # already gone with its peer's namespace
                    if "No such device" not in str(exc):
                        raise


def delete_namespaces(names: list[str]) -> None:
    existing = set(netns.listnetns())
    for name in names:
        if name in existing:
            netns.remove(name)


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def root_ipv4_addresses() -> list[str]:
    with IPRoute() as ipr:
        return [a.get("IFA_LOCAL") or a.get("IFA_ADDRESS") for a in ipr.get_addr(family=2)]


def root_ipv6_addresses() -> list[str]:
    with IPRoute() as ipr:
        return [a.get("IFA_ADDRESS") or a.get("IFA_LOCAL") for a in ipr.get_addr(family=10)]


def free_prefix(tries: int = 100) -> str:
    """A new random prefix whose names and default subnet are not in use on this machine."""
    used = [ipaddress.ip_address(a) for a in root_ipv4_addresses()]
    spaces = netns.listnetns()
    for _ in range(tries):
        prefix = new_prefix()
        net = subnet_for(prefix)
        if not any(ip in net for ip in used) and not any(_owned(prefix, n) for n in spaces):
            return prefix
    raise RuntimeError("no free prefix/subnet found: leftovers? see cleanup_leftovers()")


def cleanup_leftovers(prefix: str, *, ovs_bridges: bool = True) -> dict[str, list]:
    """Remove everything left by worlds (and test OVS bridges) named with this prefix.

    Only names ``<prefix>-*`` (and root links with this prefix's ifalias) are touched.
    Returns what was removed.
    """
    if not prefix or "-" in prefix:
        raise ValueError(f"bad prefix {prefix!r}")
    spaces = list_namespaces(prefix)
    removed: dict[str, list] = {"processes": kill_namespace_processes(spaces)}
    removed["bridges"] = ovs.delete_bridges(prefix) if ovs_bridges else []
    links = list_root_links(prefix)
    delete_root_links(links)
    delete_namespaces(spaces)
    wait_for(lambda: not list_root_links(prefix), timeout=3)
    removed["links"] = links
    removed["namespaces"] = spaces
    dirs = glob.glob(str(Path(tempfile.gettempdir()) / f"wlbridge-{prefix}-*"))
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    removed["workdirs"] = dirs
    return removed
