"""The unit suite does not read the machine it runs on (`no_real_host` in conftest.py)."""

from __future__ import annotations

from hostnet_fakes import FakeDb, FakeNet, opts
from wlbridge.cli import bridge_setup
from wlbridge.host import addr_manager, supplicant


def test_setup_does_not_see_a_networkmanager_running_here(monkeypatch) -> None:
    # as if a NetworkManager that does not answer ran on this machine (another test's, say):
    # setup's host readers are the fixture's empty host, so it never gets to them
    nm = addr_manager.Process(pid=4242, ppid=1, name="NetworkManager",
                              argv=("/usr/sbin/NetworkManager", "--no-daemon"))
    monkeypatch.setattr(addr_manager, "read_processes", lambda *a, **k: [nm])
    monkeypatch.setattr(addr_manager, "read_nm", lambda *a, **k: addr_manager.NmDevice(
        error="Could not create NMClient object"))
    monkeypatch.setattr(supplicant, "read_processes", lambda *a, **k: [nm])
    net = FakeNet({"wlan0": {}})
    lines: list[str] = []
    bridge_setup.setup(FakeDb(net=net), net, opts(), out=lines.append)
    assert any("created Open vSwitch bridge" in line for line in lines)
    assert not any("NetworkManager" in line for line in lines), lines
