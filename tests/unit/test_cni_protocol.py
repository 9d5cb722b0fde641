"""The CNI plugin's protocol layer (pure): parsing a call, errors with the spec's codes, the
result in the configuration's version, what is taken from a delegated IPAM plugin."""

from __future__ import annotations

import json

import pytest
from wlbridge.cli import cni


def env(**kw: str) -> dict[str, str]:
    base = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/x",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni:/opt/cni/bin"}
    return {**base, **kw}


CONF = json.dumps({"cniVersion": "1.0.0", "name": "wl", "type": "wlbridge",
                   "bridge": "br-x", "ipam": {"type": "dhcp"}}).encode()


def test_a_good_call_is_parsed() -> None:
    call = cni.parse(env(), CONF)
    assert (call.command, call.bridge, call.ipam["type"]) == ("ADD", "br-x", "dhcp")
    assert call.path == ("/usr/lib/cni", "/opt/cni/bin") and call.version == "1.0.0"


@pytest.mark.parametrize("e, stdin, code", [
    (env(CNI_COMMAND="PING"), CONF, cni.INVALID_ENV),
    (env(), b"{nope", cni.DECODE),
    (env(), b"[1]", cni.DECODE),
    (env(), json.dumps({"cniVersion": "2.0.0"}).encode(), cni.INCOMPATIBLE),
    (env(CNI_CONTAINERID=""), CONF, cni.INVALID_ENV),
    (env(CNI_IFNAME=""), CONF, cni.INVALID_ENV),
    (env(CNI_NETNS="relative"), CONF, cni.INVALID_ENV),
    (env(), json.dumps({"cniVersion": "1.0.0", "ipam": {"x": 1}}).encode(), cni.INVALID_CONFIG),
    (env(), json.dumps({"cniVersion": "1.0.0", "leaseTimeout": "soon"}).encode(),
     cni.INVALID_CONFIG),
])
def test_bad_calls_get_the_specs_codes(e: dict[str, str], stdin: bytes, code: int) -> None:
    with pytest.raises(cni.CniError) as info:
        cni.parse(e, stdin)
    assert info.value.code == code


def test_del_needs_no_namespace_and_version_no_config() -> None:
    assert cni.parse(env(CNI_COMMAND="DEL", CNI_NETNS=""), CONF).command == "DEL"
    assert cni.parse({"CNI_COMMAND": "VERSION"}, b"").command == "VERSION"
    assert "1.0.0" in cni.version_result()["supportedVersions"]


def test_results_follow_the_configurations_version() -> None:
    new = cni.result("1.0.0", "eth0", "02:00:00:00:00:01", "/ns",
                     [("192.168.1.5/24", "192.168.1.1"), ("fd00::5/64", None)])
    assert new["ips"][0] == {"address": "192.168.1.5/24", "gateway": "192.168.1.1",
                             "interface": 0}
    assert new["routes"] == [{"dst": "0.0.0.0/0", "gw": "192.168.1.1"}]
    old = cni.result("0.4.0", "eth0", "02:00:00:00:00:01", "/ns", [("fd00::5/64", None)])
    assert old["cniVersion"] == "0.4.0" and old["ips"][0]["version"] == "6"


def test_addresses_and_gateways_come_from_the_ipam_result() -> None:
    addrs, gws = cni.static_from({"ips": [{"address": "192.168.1.5/24"},
                                          {"address": "fd00::5/64", "gateway": "fd00::1"}],
                                  "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.1.1"},
                                             {"dst": "10.0.0.0/8", "gw": "192.168.1.9"}]})
    assert addrs == ("192.168.1.5/24", "fd00::5/64")
    assert sorted(gws) == ["192.168.1.1", "fd00::1"]


def test_guest_names_are_short_stable_and_per_interface() -> None:
    cid = "0123456789abcdef" * 4
    assert cni.guest_name(cid, "eth0") == "0123456789ab"
    assert cni.guest_name(cid, "net1") == "0123456789ab.net1"
    assert cni.guest_name(cid, "net1") != cni.guest_name(cid, "net2")


def test_errors_are_json_with_code_and_msg() -> None:
    err = cni.CniError(cni.TRY_LATER, "later", "why").as_json("0.4.0")
    assert err == {"cniVersion": "0.4.0", "code": 11, "msg": "later", "details": "why"}


@pytest.mark.parametrize("args, label", [
    ("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0", "shop/web-0"),   # Kubernetes
    ("IgnoreUnknown=1;K8S_POD_NAME=db", "db"),            # Podman: the container's name
    ("", "abc123"),                                       # nothing said: the container id
    ("garbage;=x;K8S_POD_NAME=", "abc123"),
])
def test_the_container_is_named_from_cni_args(args: str, label: str) -> None:
    assert cni.container_label(cni.parse(env(CNI_ARGS=args), CONF)) == label
