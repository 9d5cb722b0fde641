"""The hand-off in `wlbridge status`: who manages the host's address, when its lease ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wlbridge.host.addr_handoff.plan import HANDOFF_KEY, Plan

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address


def status_fields(plan_json: str | None, bridge_addresses: Sequence[Address],
                  now: float) -> dict[str, Any]:
    """``address_manager`` and ``lease_ends`` (epoch seconds, None when nothing expires)
    for `wlbridge status`, from the bridge's hand-off record and its current addresses
    (a DHCP client sets the kernel lifetime to its lease: no lease file needs parsing)."""
    manager = "unknown (set up before address hand-off existed)"
    if plan_json:
        try:
            manager = Plan.from_json(plan_json).manager
        except ValueError:
            manager = "unknown (unreadable hand-off record)"
    finite = [a.valid_lft for a in bridge_addresses if a.family == 4 and a.valid_lft is not None]
    return {"address_manager": manager,
            "lease_ends": round(now + min(finite)) if finite else None}


_RECORDS: dict[tuple[str, str | None], str | None] = {}


def host_address_status(bridge: str, remote: str | None, now: float) -> dict[str, Any]:
    """`status_fields` for the running controller: the bridge's hand-off record (read from
    OVSDB once, it does not change while the bridge exists) and its addresses (netlink, a
    socket of its own: safe from the status thread).  Never raises."""
    key = (bridge, remote)
    try:
        if key not in _RECORDS:
            from wlbridge.host import ovsdb

            with ovsdb.connect(remote, 2.0) as db:
                info = db.bridge_info(bridge)
            _RECORDS[key] = info.external_ids.get(HANDOFF_KEY) if info else None
        from wlbridge.host.hostnet import HostNet

        with HostNet() as net:
            addresses = net.addresses(bridge) if net.link_index(bridge) else []
    except Exception as exc:  # noqa: BLE001 - status must answer anyway
        return {"address_manager": f"unknown ({exc})", "lease_ends": None}
    return status_fields(_RECORDS[key], addresses, now)


def render_line(snap: dict[str, Any], now: float) -> str | None:
    """The `wlbridge status` line for ``snap["host_address"]``, if the controller sent it."""
    host = snap.get("host_address")
    if not host:
        return None
    ends = host.get("lease_ends")
    lease = "no lease to renew" if ends is None else (
        f"lease ends in {max(0, int(ends - now))}s" if ends > now else "lease ended")
    return f"address  managed by {host.get('address_manager')}; {lease}"
