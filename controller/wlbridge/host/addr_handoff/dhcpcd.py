"""dhcpcd: one instance for the uplink handed to the bridge, and back.

The uplink's instance is stopped (``-x``) before the addresses move (a running dhcpcd puts
an address taken from its interface back at once), then an instance on the bridge is asked
for the current address (``-r``); its resolv.conf hook off (``-C resolv.conf``) unless the
uplink's wrote /etc/resolv.conf.  A dhcpcd manager (all interfaces) is refused (see
`dhcpcd_plan`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff.plan import HandoffRefused, Plan, Step, forever, manual

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

DHCPCD_NOT_RUNNING = "not running"     # `dhcpcd -x IFACE`'s error when no instance runs


def dhcpcd_plan(plan: Plan, det: am.Detection, dyn4: Sequence[Address],
                 sysctls: list[Step]) -> Plan:
    """A per-interface dhcpcd instance only: stopped through its own control socket, a new
    one started on the bridge (default configuration: dhcpcd's command line cannot be read
    back, it rewrites its process title).  A dhcpcd manager is refused: its control commands
    for one interface (``dhcpcd -n IFACE``) replace the manager's options with the command's
    own, seen here to turn a manager limited to some interfaces into one managing every
    interface of the host."""
    d = det.dhcpcd
    up, br = plan.uplink, plan.bridge
    if d is None:
        raise HandoffRefused(f"--address-manager dhcpcd: no dhcpcd manages {up}",
                             manual(up, br))
    if not d.interfaces:
        raise HandoffRefused(
            f"dhcpcd (PID {d.pid}) manages every interface and cannot be told to move one "
            f"without replacing its options; not handed over automatically",
            ["run setup with --address-manager keep", (
                f"then add `denyinterfaces {up}` to /etc/dhcpcd.conf and restart dhcpcd: it "
                f"manages {br} by itself (if its allowinterfaces let it)")])
    fam = [] if d.families == (4, 6) else [f"-{d.families[0]}"]
    request = ["-r", dyn4[0].address] if dyn4 else []
    # the bridge's instance writes /etc/resolv.conf only if the uplink's did
    nohook = [] if det.writes_dns else ["-C", "resolv.conf"]
    lifted = [a for a in det.dynamic if a.family == 4]
    plan.manager = f"dhcpcd on {br}"
    stop_up = ["dhcpcd", *fam, "-x", up]
    stop_br = ["dhcpcd", *fam, "-x", br]
    start = ["dhcpcd", *fam, "-b", *nohook, *request, br]
    restart = ["dhcpcd", *fam, "-b", *nohook, *request, up]
    # stopped before the addresses move: dhcpcd puts an address removed from its interface
    # back at once (seen: setup's route move then failed, "Network is unreachable")
    plan.before_move = [Step("command", f"dhcpcd stops managing {up}: {shlex.join(stop_up)}",
                             {"argv": stop_up, "undo": restart})]
    plan.setup = (forever(br, lifted, "dhcpcd") + sysctls + [
        Step("command", f"dhcpcd manages {br}: {shlex.join(start)}",
             {"argv": start, "undo": stop_br, "done_if": DHCPCD_NOT_RUNNING})])
    plan.teardown_before = [Step("command", f"dhcpcd stops managing {br}: "
                                 f"{shlex.join(stop_br)}",
                                 {"argv": stop_br, "undo": start,
                                  "done_if": DHCPCD_NOT_RUNNING})]
    plan.teardown_before += forever(br, lifted, "dhcpcd")
    plan.teardown_after = [Step("command", f"dhcpcd manages {up} again: {shlex.join(restart)}",
                                {"argv": restart, "undo": None})]
    plan.notes.append("dhcpcd's own command line cannot be read back (it rewrites its process "
                      "title): the instances wlbridge starts read dhcpcd's default "
                      "configuration file (/etc/dhcpcd.conf)")
    if not det.writes_dns:
        plan.notes.append("the uplink's dhcpcd did not write /etc/resolv.conf: the bridge's "
                          "runs without its resolv.conf hook (-C resolv.conf)")
    return plan
