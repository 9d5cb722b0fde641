"""`wlbridge-cni`: the CNI plugin (spec 1.0.0; 0.3.x and 0.4.0 configurations accepted) that
puts a container's interface on the wlbridge bridge, through the one attach path
(`wlbridge.host.attach`, as `wlbridge attach` does).

The runtime (Podman's CNI backend, containerd/nerdctl, Kubernetes through Multus) runs it with
``CNI_COMMAND`` (ADD, DEL, CHECK, VERSION), ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_PATH`` in the environment and the network configuration on stdin; the result (or an error
``{"code", "msg", "details"}``, exit 1) goes to stdout, nothing else does.

The plugin's configuration::

    {"cniVersion": "1.0.0", "name": "wl", "type": "wlbridge",
     "bridge": "br-wl",                       # default br-wl
     "ipam": {"type": "dhcp"},                # or any IPAM plugin: static, host-local, ...
     "leaseTimeout": 20}                      # seconds to wait for the DHCP lease

``"ipam": {"type": "dhcp"}`` is served by wlbridge's own DHCP client keeper
(`wlbridge.host.guest_dhcp`: busybox udhcpc in the container's namespace, the container's own
MAC and client id, renewed for the container's life, released at DEL), not by the standard
``dhcp`` plugin, which needs its own daemon running on the host; any other IPAM type is
delegated to that plugin (found in ``CNI_PATH``) as the spec says, and its addresses and
gateways are set by the attach path.  IPv6 comes by SLAAC.  No maintained Python library
implements the CNI protocol, so this module is that protocol, kept thin and proven against
Podman (tests/integration/test_cni.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from wlbridge.cli.common import DEFAULT_BRIDGE

SPEC = "1.0.0"
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

RUN_DIR = "/run/wlbridge/cni"
CNI_KEY = "wlbridge-cni"            # external_ids: CONTAINERID/IFNAME of the attachment
LEASE_TIMEOUT = 20.0

# the spec's well-known error codes (and ours, from 100)
INCOMPATIBLE, UNSUPPORTED_FIELD, UNKNOWN_CONTAINER = 1, 2, 3
INVALID_ENV, IO_FAILURE, DECODE, INVALID_CONFIG, TRY_LATER = 4, 5, 6, 7, 11
REFUSED, FAILED = 100, 101


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def as_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class Call:
    command: str
    container: str
    netns: str
    ifname: str
    path: tuple[str, ...]
    config: Mapping[str, Any]
    raw: bytes
    args: Mapping[str, str] = field(default_factory=dict)    # CNI_ARGS, K=V;K=V

    @property
    def version(self) -> str:
        return str(self.config.get("cniVersion", SPEC))

    @property
    def bridge(self) -> str:
        return str(self.config.get("bridge") or DEFAULT_BRIDGE)

    @property
    def ipam(self) -> Mapping[str, Any]:
        return self.config.get("ipam") or {}


ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse(env: Mapping[str, str], stdin: bytes) -> Call:
    """The call the runtime made (pure); CniError with the spec's code when it is bad."""
    command = env.get("CNI_COMMAND", "")
    if command not in ("ADD", "DEL", "CHECK", "VERSION"):
        raise CniError(INVALID_ENV, f"CNI_COMMAND {command!r} is not ADD, DEL, CHECK or "
                       "VERSION")
    config: Mapping[str, Any] = {}
    if stdin.strip() or command != "VERSION":
        try:
            config = json.loads(stdin)
        except ValueError as exc:
            raise CniError(DECODE, "the network configuration on stdin is not JSON",
                           str(exc)) from None
        if not isinstance(config, dict):
            raise CniError(DECODE, "the network configuration on stdin is not a JSON object")
    call = Call(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""),
                env.get("CNI_IFNAME", ""),
                tuple(p for p in env.get("CNI_PATH", "").split(os.pathsep) if p),
                config, stdin, cni_args(env.get("CNI_ARGS", "")))
    if command == "VERSION":
        return call
    if call.version not in SUPPORTED:
        raise CniError(INCOMPATIBLE, f"cniVersion {call.version!r} is not supported",
                       "supported: " + ", ".join(SUPPORTED))
    if not ID_RE.fullmatch(call.container):
        raise CniError(INVALID_ENV, "CNI_CONTAINERID is missing or not alphanumeric")
    if not call.ifname:
        raise CniError(INVALID_ENV, "CNI_IFNAME is missing")
    if command != "DEL" and not os.path.isabs(call.netns):
        raise CniError(INVALID_ENV, f"CNI_NETNS {call.netns!r} is not a namespace path")
    if not isinstance(call.ipam, dict) or (call.ipam and not call.ipam.get("type")):
        raise CniError(INVALID_CONFIG, "\"ipam\" must be an object with a \"type\"")
    try:
        float(call.config.get("leaseTimeout", LEASE_TIMEOUT))
    except (TypeError, ValueError):
        raise CniError(INVALID_CONFIG, "\"leaseTimeout\" must be a number") from None
    return call


def cni_args(text: str) -> dict[str, str]:
    """``CNI_ARGS`` (``K=V;K=V``) as a mapping; pairs without ``=`` are left out."""
    pairs = (item.split("=", 1) for item in text.split(";") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs if k.strip()}


def container_label(call: Call) -> str:
    """The container's name for `wlbridge status`: what the runtime passes in ``CNI_ARGS``
    (Kubernetes: ``K8S_POD_NAMESPACE/K8S_POD_NAME``; Podman: ``K8S_POD_NAME``, the
    container's name), else the container id's first 12 characters."""
    pod, namespace = call.args.get("K8S_POD_NAME", ""), call.args.get("K8S_POD_NAMESPACE", "")
    if pod:
        return f"{namespace}/{pod}" if namespace else pod
    return call.container[:12]


def guest_name(container: str, ifname: str) -> str:
    """The wlbridge guest of this attachment: the container id's first 12 characters (its
    port is wl-<12>), with the interface when it is not eth0; hashed when unusable."""
    from wlbridge.host.attach import NAME_RE

    name = container[:12] if ifname == "eth0" else f"{container[:12]}.{ifname}"
    if NAME_RE.fullmatch(name):
        return name
    return "c" + hashlib.sha1(f"{container}/{ifname}".encode()).hexdigest()[:15]


def version_result() -> dict[str, Any]:
    return {"cniVersion": SPEC, "supportedVersions": list(SUPPORTED)}


def result(version: str, ifname: str, mac: str, netns: str, ips: list[tuple[str, str | None]],
           dns: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ADD result, in the configuration's version (0.3.x/0.4.0 need each IP's version)."""
    old = version != SPEC
    out_ips = []
    for addr, gw in ips:
        entry: dict[str, Any] = {"address": addr, "interface": 0}
        if gw:
            entry["gateway"] = gw
        if old:
            entry["version"] = str(ipaddress.ip_interface(addr).version)
        out_ips.append(entry)
    routes = [{"dst": "0.0.0.0/0" if ipaddress.ip_address(gw).version == 4 else "::/0",
               "gw": gw} for _, gw in ips if gw]
    out: dict[str, Any] = {"cniVersion": version,
                           "interfaces": [{"name": ifname, "mac": mac, "sandbox": netns}],
                           "ips": out_ips, "routes": routes}
    if dns:
        out["dns"] = dict(dns)
    return out


# ---- delegation to an IPAM plugin (the spec's "Delegated plugins") ----------------------
def delegate(call: Call, command: str) -> dict[str, Any]:
    kind = str(call.ipam["type"])
    exe = next((os.path.join(d, kind) for d in call.path
                if os.access(os.path.join(d, kind), os.X_OK)), None)
    if exe is None or "/" in kind:
        raise CniError(INVALID_CONFIG, f"IPAM plugin {kind!r} is not in CNI_PATH",
                       os.pathsep.join(call.path))
    env = {**os.environ, "CNI_COMMAND": command}
    proc = subprocess.run([exe], input=call.raw, env=env, capture_output=True, timeout=60,
                          check=False)
    text = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        try:
            err = json.loads(text)
            raise CniError(int(err.get("code", FAILED)), f"IPAM {kind}: {err.get('msg')}",
                           str(err.get("details", "")))
        except (ValueError, AttributeError):
            raise CniError(FAILED, f"IPAM plugin {kind} failed ({proc.returncode})",
                           (text + proc.stderr.decode(errors="replace")).strip()) from None
    if command != "ADD":
        return {}
    try:
        return json.loads(text)
    except ValueError:
        raise CniError(FAILED, f"IPAM plugin {kind} returned no JSON result", text) from None


def static_from(ipam_result: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Addresses and gateways (one per family) from an IPAM plugin's result."""
    addrs = tuple(str(ip["address"]) for ip in ipam_result.get("ips", []))
    gws: dict[int, str] = {}
    for ip in ipam_result.get("ips", []):
        if ip.get("gateway"):
            gws.setdefault(ipaddress.ip_address(ip["gateway"]).version, str(ip["gateway"]))
    for route in ipam_result.get("routes", []):
        if route.get("gw") and ipaddress.ip_network(route.get("dst", "0.0.0.0/0")).prefixlen == 0:
            gws.setdefault(ipaddress.ip_address(route["gw"]).version, str(route["gw"]))
    return addrs, tuple(gws.values())


def controller_running(bridge: str) -> bool:
    """A `wlbridge run` holds the bridge's instance lock (in /run/wlbridge)."""
    from wlbridge.app import instance_lock

    return instance_lock.running(instance_lock.RUN_DIR, bridge, None) is not None


# ---- the commands -----------------------------------------------------------------------
def log(text: str) -> None:
    print(f"wlbridge-cni: {text}", file=sys.stderr)


def add(call: Call, db: Any, net: Any) -> dict[str, Any]:
    from wlbridge.errors import UserError
    from wlbridge.host import attach

    name = guest_name(call.container, call.ifname)
    dhcp = call.ipam.get("type") == "dhcp"
    ipam_result: Mapping[str, Any] = {}
    if call.ipam and not dhcp:
        ipam_result = delegate(call, "ADD")
    addrs, gws = static_from(ipam_result)
    mac = (call.config.get("runtimeConfig") or {}).get("mac")
    try:
        req = attach.Request(
            name=name, bridge=call.bridge, nspath=call.netns, ifname=call.ifname, dhcp=dhcp,
            addresses=addrs, gateways=gws, mac=mac, need_controller=True,
            labels=((CNI_KEY, f"{call.container}/{call.ifname}"),
                    (attach.CONTAINER_KEY, container_label(call))))
        facts = attach.read_facts(req, db, net)
        plan = attach.make_plan(req, replace(facts, controller=controller_running(call.bridge)))
        if plan.already:
            raise UserError(f"container {call.container[:12]} already has {call.ifname} on "
                            f"{call.bridge} (port {plan.port}); nothing changed")
        attach.execute(plan, attach.HostOps(db, net, RUN_DIR))
    except UserError as exc:
        if ipam_result:
            delegate(call, "DEL")
        raise CniError(REFUSED, str(exc)) from None
    mac = plan.external_ids[attach.MAC_KEY]
    if not dhcp:
        return result(call.version, call.ifname, mac, call.netns,
                      [(a, next((g for g in gws if ipaddress.ip_address(g).version ==
                                 ipaddress.ip_interface(a).version), None)) for a in addrs],
                      ipam_result.get("dns"))
    timeout = float(call.config.get("leaseTimeout", LEASE_TIMEOUT))
    lease = attach.wait_address(call.netns, call.ifname, timeout)
    if lease is None:
        attach.detach(name, call.bridge, db, net, out=log)
        raise CniError(TRY_LATER, f"no DHCP lease for {call.ifname} within {timeout:g}s "
                       f"through bridge {call.bridge} (is the LAN's DHCP server reachable?); "
                       "rolled back, nothing changed")
    got, gw = attach.guest_ipv4(call.netns, call.ifname)
    return result(call.version, call.ifname, mac, call.netns, [(a, gw) for a in got])


def delete(call: Call, db: Any, net: Any) -> None:
    """Idempotent: whatever of the attachment is left goes; none left is fine."""
    from wlbridge.host import attach

    if db.bridge_info(call.bridge) is not None:
        attach.detach(guest_name(call.container, call.ifname), call.bridge, db, net, out=log)
    if call.ipam and call.ipam.get("type") != "dhcp":
        delegate(call, "DEL")


def check(call: Call, db: Any, net: Any) -> None:
    from wlbridge.host import attach

    name = guest_name(call.container, call.ifname)
    info = db.bridge_info(call.bridge)
    iface = info.interface(attach.port_name(name)) if info is not None else None
    if iface is None or iface.external_ids.get(attach.GUEST_KEY) != name:
        raise CniError(UNKNOWN_CONTAINER, f"container {call.container[:12]} has no "
                       f"{call.ifname} on bridge {call.bridge}")
    try:
        addrs, _ = attach.guest_ipv4(call.netns, call.ifname)
    except (OSError, LookupError) as exc:
        raise CniError(UNKNOWN_CONTAINER, f"{call.ifname} is not in {call.netns}",
                       str(exc)) from None
    if call.ipam and not addrs:
        raise CniError(FAILED, f"{call.ifname} of container {call.container[:12]} has no "
                       "IPv4 address")


def run(call: Call) -> dict[str, Any] | None:
    from wlbridge.host import hostnet, ovsdb

    if call.command == "VERSION":
        return version_result()
    try:
        with ovsdb.connect(os.environ.get("WLBRIDGE_OVSDB"), 10.0) as db, \
                hostnet.HostNet() as net:
            if call.command == "ADD":
                return add(call, db, net)
            if call.command == "DEL":
                delete(call, db, net)
            else:
                check(call, db, net)
            return None
    except ovsdb.OvsdbUnavailable as exc:
        raise CniError(TRY_LATER, f"Open vSwitch is not reachable: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    version = SPEC
    try:
        call = parse(os.environ, stdin)
        version = call.version if call.version in SUPPORTED else SPEC
        out = run(call)
    except CniError as exc:
        json.dump(exc.as_json(version), sys.stdout)
        sys.stdout.write("\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - the runtime shows msg to the user
        json.dump(CniError(FAILED, " ".join(str(exc).split()) or type(exc).__name__)
                  .as_json(version), sys.stdout)
        sys.stdout.write("\n")
        return 1
    if out is not None:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
