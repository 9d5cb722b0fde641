"""`make_plan`: from what `addr_manager.detect` found, the chosen mode and the uplink's
addresses, the hand-off's `Plan` -- steps for setup, steps for teardown (before the
addresses move back, and after the bridge is gone) -- or a refusal (`HandoffRefused`: one
line, and the commands to do it by hand).  Pure: no I/O, the time passed in.

Modes (``wlbridge setup --address-manager``):

* ``auto`` (default): detect, hand off as below, refuse when that is not safe;
* ``keep``: today's behaviour before hand-off existed: addresses and routes move, nothing else;
* ``static``, ``dhclient``, ``dhcpcd``, ``networkmanager``, ``networkd``: do the hand-off for
  that manager, whatever detection says (``dhclient`` with no dhclient found: wlbridge only
  starts its own dhclient on the bridge).

Who manages the bridge's addresses afterwards: one module per manager (`dhclient`,
`dhcpcd`, `networkmanager`, `networkd`); nobody (static) -> nothing to hand over, the
addresses move with setup and stay.  Every hand-off also copies the uplink's IPv6 RA sysctls
(accept_ra, autoconf, ...) to the bridge, so SLAAC addresses and the default route from
router advertisements keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff.dhclient import dhclient_plan
from wlbridge.host.addr_handoff.dhcpcd import dhcpcd_plan
from wlbridge.host.addr_handoff.networkd import networkd_plan
from wlbridge.host.addr_handoff.networkmanager import nm_plan
from wlbridge.host.addr_handoff.plan import HandoffRefused, Plan, manual, sysctl_steps

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

MODES = ("auto", "keep", am.STATIC, am.DHCLIENT, am.DHCPCD, am.NETWORKMANAGER, am.NETWORKD)


def make_plan(mode: str, det: am.Detection, uplink: str, bridge: str, state_dir: str,
              addresses: Sequence[Address], uplink_sysctls: dict[str, str],
              now: float, default_metric: int | None = None) -> Plan:
    """The hand-off for `mode` given detection `det`; HandoffRefused when not safe.
    `default_metric`: the metric of the uplink's IPv4 default route (it moves to the bridge
    with the addresses; a DHCP client wlbridge starts there adds its own with this metric,
    so that it replaces the moved one instead of standing beside it)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode == "keep":
        return Plan("keep", det.manager, det.detail, f"{det.manager} (not handed off: keep)",
                    uplink, bridge, notes=["--address-manager keep: the addresses moved; "
                                           "whoever managed them still watches " + uplink])
    if mode == "auto":
        if det.problem:
            raise HandoffRefused(f"cannot hand {uplink}'s addresses over safely: "
                                 f"{det.problem}", manual(uplink, bridge))
        if det.manager == am.UNKNOWN:
            raise HandoffRefused(f"cannot tell who manages {uplink}'s addresses",
                                 manual(uplink, bridge))
        mode = det.manager
    sysctls = sysctl_steps(uplink_sysctls, bridge)
    dyn4 = [a for a in det.dynamic if a.family == 4]
    if len(dyn4) > 1 and mode != am.STATIC:
        raise HandoffRefused(f"{uplink} has {len(dyn4)} leased IPv4 addresses "
                             f"({', '.join(map(str, dyn4))}); a DHCP client keeps one",
                             manual(uplink, bridge))
    plan = Plan(mode, det.manager, det.detail, "", uplink, bridge)
    if mode == am.STATIC:
        plan.manager = "static (nobody renews)"
        plan.setup = sysctls
        if dyn4:
            plan.notes.append(f"{dyn4[0]} has a lease lifetime but --address-manager static: "
                              "nobody renews it, it expires")
        return plan
    plan.default_metric = default_metric
    if mode == am.DHCLIENT:
        return dhclient_plan(plan, det, state_dir, dyn4, sysctls, now)
    if mode == am.DHCPCD:
        return dhcpcd_plan(plan, det, dyn4, sysctls)
    if mode == am.NETWORKMANAGER:
        return nm_plan(plan, det, state_dir, dyn4, sysctls, now)
    return networkd_plan(plan, det, dyn4, sysctls)
