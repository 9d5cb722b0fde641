"""Shared pytest configuration: markers, and the gate for integration tests.

The Wi-Fi suite (tests/wifi, marker ``wifi``) is collected only inside the test bed VM
(`make test-wifi`, which sets WLBRIDGE_WIFIBED=1): not by `make unit` nor `make integration`.

Integration tests (marker ``integration``; every test under tests/integration gets it) need
root, network namespaces and a running Open vSwitch.  When those are missing they are skipped
on a developer machine, but FAIL when the environment variable CI is set to a true value: a CI
run must never go green by skipping them.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"
#: The Wi-Fi suite runs only inside the test bed VM (`make test-wifi`), which sets this.
WIFI_DIR = Path(__file__).parent / "wifi"
IN_WIFIBED = os.environ.get("WLBRIDGE_WIFIBED") == "1"
collect_ignore = [] if IN_WIFIBED else ["wifi"]
TOOLS = ("ip", "nft", "ethtool", "dnsmasq", "dhclient", "busybox", "ping", "ovs-vsctl",
         "ovs-ofctl")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs root, Open vSwitch and network namespaces")
    config.addinivalue_line(
        "markers", "wifi: runs in the Wi-Fi test bed VM only (make test-wifi)")
    # ovs.poller imports eventlet when it is installed (os-ken needs it); eventlet then warns on
    # every fork, and pyroute2 forks to enter network namespaces.  Noise, not a finding.
    config.addinivalue_line(
        "filterwarnings", r"ignore:Using fork\(\) is a bad idea:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    outside_bed = []
    for item in items:
        parents = Path(item.path).parents
        if INTEGRATION_DIR in parents:
            item.add_marker(pytest.mark.integration)
        elif WIFI_DIR in parents:
            item.add_marker(pytest.mark.wifi)
            if not IN_WIFIBED:
                outside_bed.append(item)
    if outside_bed:         # e.g. `pytest tests/wifi` on the host: only the VM runs them
        config.hook.pytest_deselected(items=outside_bed)
        items[:] = [i for i in items if i not in outside_bed]


@functools.cache
def integration_problem() -> str | None:
    """Why integration tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "integration tests need root (run: sudo make integration)"
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        return f"missing tools {missing} (run: make install)"
    from topologies import ovs_problem

    return ovs_problem()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is None:
        return
    problem = integration_problem()
    if problem:
        if in_ci():
            pytest.fail(f"CI is set but integration tests cannot run: {problem}", pytrace=False)
        pytest.skip(problem)
