"""Hand the host's address management from the uplink to the bridge's internal port, and back.

The package, one responsibility a module:

* `plan`: the data -- `Plan`, `Step`, their stored form (`HANDOFF_KEY` in the bridge's
  ``external_ids``, saved in the transaction that creates the bridge, so teardown gives
  management back from the bridge alone, also after a crash), `HandoffRefused`,
  `HandoffError`;
* `planner`: `make_plan`, pure, from `addr_manager.detect`'s findings, the mode
  (``wlbridge setup --address-manager``) and the uplink's addresses;
* one module per manager, each its part of the plan: `dhclient`, `dhcpcd`,
  `networkmanager`, `networkd`;
* `steps`: the registry of step kinds (kind, version -> arguments, do, undo); a stored step
  is checked against it before anything runs, so a record written by an older wlbridge
  tears down, and one this version cannot run says so (`steps.StepError`);
* `system`: the host operations the steps use (files, processes, commands, the clock);
  passed in, so tests run the steps on a fake host;
* `executor`: `execute` (in order; a failure undoes the done steps in reverse),
  `HostOps`, `Handoff` (the facts reader and host setup and teardown are given);
* `status`: the ``address`` line of `wlbridge status`.

Why a daemon and not `wlbridge run`: the host must stay on the LAN whether or not the
controller runs (the flows stay in the switch), so its DHCP client cannot live in the
controller.  Setup starts it and records its pid file; teardown (or a failing setup) stops it.
A leased address moved to the bridge gets an unlimited lifetime until its client renews it
there (the client's first renewal sets the lease time again): before the controller first
runs the bridge forwards nothing, and the address must not expire meanwhile.
(Turning RAs off on the uplink, and back on at teardown, is setup's in every mode, ``keep``
included: `SavedState.uplink_ra` in `wlbridge.host.hostnet`.)
"""

from wlbridge.host.addr_handoff.dhclient import (
    PATIENCE,
    SYSTEM_DHCLIENT_CONF,
    bridge_dhclient_argv,
    dhclient_files,
    last_lease,
    no_dns_script,
    patient_conf,
    seed_lease,
)
from wlbridge.host.addr_handoff.dhcpcd import DHCPCD_NOT_RUNNING
from wlbridge.host.addr_handoff.executor import Handoff, HostOps, execute, missing_clients
from wlbridge.host.addr_handoff.networkd import (
    NETWORKD_DIR,
    NETWORKD_PREFIX,
    networkd_bridge_text,
    networkd_files,
    networkd_uplink_text,
)
from wlbridge.host.addr_handoff.networkmanager import nm_kernel_ra, nm_modify_argv
from wlbridge.host.addr_handoff.plan import (
    HANDOFF_KEY,
    PLAN_VERSION,
    HandoffError,
    HandoffRefused,
    Plan,
    Step,
)
from wlbridge.host.addr_handoff.planner import MODES, make_plan
from wlbridge.host.addr_handoff.status import host_address_status, render_line, status_fields
from wlbridge.host.addr_handoff.steps import StepError
from wlbridge.host.addr_handoff.system import System

__all__ = [
    "DHCPCD_NOT_RUNNING", "HANDOFF_KEY", "MODES", "NETWORKD_DIR", "NETWORKD_PREFIX",
    "PATIENCE", "PLAN_VERSION", "SYSTEM_DHCLIENT_CONF", "Handoff", "HandoffError",
    "HandoffRefused", "HostOps", "Plan", "Step", "StepError", "System",
    "bridge_dhclient_argv", "dhclient_files", "execute", "host_address_status",
    "last_lease", "make_plan", "missing_clients", "networkd_bridge_text", "networkd_files",
    "networkd_uplink_text", "nm_kernel_ra", "nm_modify_argv", "no_dns_script",
    "patient_conf", "render_line", "seed_lease", "status_fields",
]
