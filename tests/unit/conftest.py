"""Make tests/ importable so unit tests can `from ofsim import Switch`; keep unit tests off
the real machine.

Setup and teardown look at the host: who manages the uplink's addresses
(`addr_manager.read_facts`: the process table, nmcli, networkctl's files under /run, files
under /etc, IPv6 sysctls), how the supplicant gets EAPOL (`supplicant.check`: /proc) and
whether a controller holds the bridge's lock (`instance_lock.running`: /var/lib/wlbridge and
/run/wlbridge).  A unit test must give the same result on any machine (one running
NetworkManager, wpa_supplicant or a real wlbridge included), so `no_real_host` (autouse)
makes each of them see an empty host: no processes, no managers, no locks.  A test that
needs a particular host patches the function again (`monkeypatch.setattr(addr_manager,
"read_facts", ...)`): its patch wins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture(autouse=True)
def no_real_host(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Setup/teardown's host readers see an empty host (see the module docstring)."""
    from wlbridge.app import config, instance_lock
    from wlbridge.host import addr_manager, supplicant

    monkeypatch.setattr(addr_manager, "read_facts",
                        lambda *a, **k: addr_manager.HostFacts())

    def check(uplink: str, ifindex: int, bridge: str, datapath: str,
              bridge_ifindex: int | None = None) -> supplicant.EapolPath:
        return supplicant.eapol_path(uplink, ifindex, bridge, datapath, [], [], {},
                                     bridge_ifindex)

    monkeypatch.setattr(supplicant, "check", check)

    real_running = instance_lock.running
    system = {Path(config.default("state_dir")), Path(instance_lock.RUN_DIR)}
    empty = tmp_path_factory.getbasetemp() / "no-real-host"     # never holds a lock

    def running(state_dir, bridge, run_dir=instance_lock.RUN_DIR):
        def away(d):
            return empty if d is not None and Path(d) in system else d
        return real_running(away(state_dir), bridge, away(run_dir))

    monkeypatch.setattr(instance_lock, "running", running)
