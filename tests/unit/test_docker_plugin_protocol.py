"""The Docker plugin's protocol layer: every call dockerd makes has a handler, refusals come
back in the field dockerd reads (IPAM: ``Error``, the rest: ``Err``), state survives a restart.
The calls that touch the host are proven against a real dockerd
(tests/integration/test_docker_plugin.py)."""

from __future__ import annotations

import json
from pathlib import Path

from wlbridge.app import docker_plugin
from wlbridge.app.docker_plugin import DockerPlugin


def plugin(tmp_path: Path) -> DockerPlugin:
    return DockerPlugin("br-x", str(tmp_path / "state.json"), str(tmp_path / "run"))


def test_activation_and_capabilities(tmp_path: Path) -> None:
    p = plugin(tmp_path)
    assert p.call("Plugin.Activate", {}) == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert p.call("IpamDriver.GetCapabilities", {}) == {"RequiresMACAddress": True}
    assert p.call("NetworkDriver.GetCapabilities", {})["Scope"] == "local"


def test_refusals_use_the_field_dockerd_reads(tmp_path: Path) -> None:
    p = plugin(tmp_path)
    out = p.call("IpamDriver.RequestPool", {"V6": True})
    assert set(out) == {"Error"} and "SLAAC" in out["Error"]
    assert set(p.call("NetworkDriver.Join", {"EndpointID": "nope"})) == {"Err"}
    assert set(p.call("NetworkDriver.Bogus", {})) == {"Err"}
    assert set(p.call("IpamDriver.Bogus", {})) == {"Error"}


def test_every_handler_exists() -> None:
    for method, name in docker_plugin.HANDLERS.items():
        assert callable(getattr(DockerPlugin, name)), method
    for method in ("NetworkDriver.CreateEndpoint", "NetworkDriver.Join", "NetworkDriver.Leave",
                   "NetworkDriver.DeleteEndpoint", "IpamDriver.RequestAddress",
                   "IpamDriver.ReleaseAddress"):
        assert method in docker_plugin.HANDLERS


def test_state_survives_a_restart(tmp_path: Path) -> None:
    p = plugin(tmp_path)
    p.state["networks"]["n1"] = {"gateway": None}
    p.state["leases"]["02:42:00:00:00:01"] = {"address": "192.168.1.5", "router": None}
    p.state["endpoints"]["e1"] = {"mac": "02:42:00:00:00:01"}     # its endpoint releases it
    p.save()
    again = plugin(tmp_path)
    assert again.state["networks"] == {"n1": {"gateway": None}}
    assert again.call("IpamDriver.ReleaseAddress", {"Address": "192.168.1.5"}) == {}
    assert json.loads((tmp_path / "state.json").read_text())["leases"] == {}
