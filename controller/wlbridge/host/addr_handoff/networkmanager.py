"""NetworkManager: its IP configuration of the uplink stopped for this activation only.

``nmcli device modify`` (not persistent) takes the uplink's addresses and routes away from
NetworkManager, which keeps Wi-Fi; the bridge stays unmanaged and gets wlbridge's dhclient
(`dhclient.client_steps`); teardown reapplies the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff.dhclient import client_steps
from wlbridge.host.addr_handoff.plan import Plan, Step, forever

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address


def nm_kernel_ra(sysctls: list[Step], bridge: str) -> list[Step]:
    """`sysctls` with ``accept_ra`` 1 on the bridge: NetworkManager with ``ipv6.method auto``
    processes router advertisements in user space and sets the uplink's ``accept_ra`` to 0
    (seen with 1.42), so the copied value would leave nobody renewing the SLAAC addresses
    and the IPv6 default route on the bridge."""
    path = f"/proc/sys/net/ipv6/conf/{bridge}/accept_ra"
    if sysctls:
        paths = {**sysctls[0].data["paths"], path: "1"}
    else:
        paths = {path: "1"}
    text = " ".join(f"{p.rsplit('/', 1)[1]}={v}" for p, v in paths.items())
    return [Step("sysctl", f"IPv6 RA settings for {bridge} (NetworkManager did RAs on the "
                 f"uplink itself): {text}", {"paths": paths})]


def nm_modify_argv(uplink: str) -> list[str]:
    """`nmcli device modify`: no IP configuration on the uplink for this activation.
    The profile's manual addresses, gateway and routes go too: NetworkManager 1.42 adds a
    profile's manual routes again with ``ipv4.method disabled`` (seen: the route moved to the
    bridge came back on the uplink at the modify), and refuses manual addresses with it (a
    static profile)."""
    argv = ["nmcli", "device", "modify", uplink, "ipv4.method", "disabled"]
    for prop in ("addresses", "gateway", "routes"):
        argv += [f"ipv4.{prop}", ""]
    argv += ["ipv6.method", "ignore"]
    for prop in ("addresses", "gateway", "routes"):
        argv += [f"ipv6.{prop}", ""]
    return argv


def nm_plan(plan: Plan, det: am.Detection, state_dir: str, dyn4: Sequence[Address],
             sysctls: list[Step], now: float) -> Plan:
    up, br = plan.uplink, plan.bridge
    plan.manager = f"dhclient on {br} (started by wlbridge setup; NetworkManager keeps Wi-Fi)"
    if det.nm_ipv6_method == "auto":
        sysctls = nm_kernel_ra(sysctls, br)
        plan.notes.append(f"NetworkManager handled {up}'s router advertisements itself "
                          f"(accept_ra 0 there); the kernel accepts them on {br}")
    elif det.nm_ipv6_method not in (None, "ignore", "disabled", "link-local"):
        plan.notes.append(f"NetworkManager's ipv6.method {det.nm_ipv6_method} on {up} is not "
                          f"handed over: only IPv4 (DHCP) and router advertisements are "
                          f"managed on {br}")
    prep, start, stop = client_steps(plan, None, 4, state_dir, dyn4, now)
    lifted = [a for a in det.dynamic if a.family == 4]
    plan.setup = forever(br, lifted, "its DHCP client") + sysctls + [
        Step("command", f"NetworkManager leaves {br} alone",
             {"argv": ["nmcli", "device", "set", br, "managed", "no"], "undo": None}),
        Step("command", f"NetworkManager stops configuring addresses and routes on {up} "
             "(this activation only)",
             {"argv": nm_modify_argv(up), "undo": ["nmcli", "device", "reapply", up]}),
        *prep, start]
    plan.teardown_before = [stop] + forever(br, lifted, "its DHCP client")
    plan.teardown_after = [Step("command", f"NetworkManager configures {up} again "
                                f"(connection {det.nm_connection})",
                                {"argv": ["nmcli", "device", "reapply", up], "undo": None})]
    return plan
