"""Open vSwitch bridges for tests and demos, through ovs-vsctl / ovs-ofctl.

Test tooling only: the product talks to OVS through OpenFlow/OVSDB, never through these commands.
Bridges use the userspace datapath (``datapath_type=netdev``): there is no kernel module here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

from .procs import wait_for

TIMEOUT = 10


class OvsError(RuntimeError):
    pass


def _cmd(argv: list[str], check: bool = True) -> str:
    try:
        res = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=TIMEOUT + 5)
    except FileNotFoundError as exc:
        raise OvsError(f"{argv[0]} not found: is openvswitch-switch installed?") from exc
    except subprocess.TimeoutExpired as exc:
        raise OvsError(f"timed out: {' '.join(argv)}") from exc
    if check and res.returncode != 0:
        raise OvsError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def vsctl(*args: str, check: bool = True) -> str:
    return _cmd(["ovs-vsctl", f"--timeout={TIMEOUT}", *args], check)


def ofctl(*args: str, check: bool = True) -> str:
    return _cmd(["ovs-ofctl", "-O", "OpenFlow13", *args], check)


def ovs_problem() -> str | None:
    """None when OVS can be used here (daemons answer, netdev datapath); else why not."""
    if not shutil.which("ovs-vsctl") or not shutil.which("ovs-ofctl"):
        return "ovs-vsctl/ovs-ofctl not installed (apt-get install openvswitch-switch)"
    try:
        vsctl("show")
        types = vsctl("get", "Open_vSwitch", ".", "datapath_types")
    except OvsError as exc:
        return f"Open vSwitch is not running or not reachable ({exc}); try 'make ovs'"
    if "netdev" not in types:
        return f"Open vSwitch has no userspace (netdev) datapath: datapath_types={types.strip()}"
    return None


def list_bridges() -> list[str]:
    return vsctl("list-br").split()


def delete_bridges(prefix: str) -> list[str]:
    """Delete bridges named ``<prefix>-*``; quietly nothing when OVS is not there."""
    try:
        doomed = [b for b in list_bridges() if b.startswith(prefix + "-")]
    except OvsError:
        return []
    for b in doomed:
        vsctl("--if-exists", "del-br", b)
    return doomed


class OvsBridge:
    """A netdev OVS bridge; ``with OvsBridge(name) as br:`` creates it and deletes it after."""

    def __init__(self, name: str, *, fail_mode: str = "secure", datapath_type: str = "netdev",
                 protocols: Iterable[str] = ("OpenFlow10", "OpenFlow13")):
        if len(name) > 15:
            raise ValueError(f"bridge name {name!r} longer than 15 characters")
        self.name = name
        self.fail_mode = fail_mode
        self.datapath_type = datapath_type
        self.protocols = ",".join(protocols)

    def create(self) -> OvsBridge:
        vsctl("--may-exist", "add-br", self.name, "--", "set", "Bridge", self.name,
              f"datapath_type={self.datapath_type}", f"fail_mode={self.fail_mode}",
              f"protocols={self.protocols}")
        return self

    def delete(self) -> None:
        vsctl("--if-exists", "del-br", self.name)

    def exists(self) -> bool:
        return self.name in list_bridges()

    def add_port(self, ifname: str, ofport: int | None = None) -> int:
        """Attach an existing interface; returns its OpenFlow port number."""
        args = ["--may-exist", "add-port", self.name, ifname]
        if ofport is not None:
            args += ["--", "set", "Interface", ifname, f"ofport_request={ofport}"]
        vsctl(*args)
        return self.ofport(ifname)

    def del_port(self, ifname: str) -> None:
        vsctl("--if-exists", "del-port", self.name, ifname)

    def ports(self) -> list[str]:
        return vsctl("list-ports", self.name).split()

    def ofport(self, ifname: str, timeout: float = 5) -> int:
        def get() -> int:
            out = vsctl("get", "Interface", ifname, "ofport", check=False).strip()
            return int(out) if out.lstrip("-").isdigit() and int(out) > 0 else 0

        port = wait_for(get, timeout)
        if not port:
            err = vsctl("get", "Interface", ifname, "error", check=False).strip()
            raise OvsError(f"{ifname} on {self.name} got no OpenFlow port: {err}")
        return port

    def add_flow(self, flow: str) -> None:
        ofctl("add-flow", self.name, flow)

    def del_flows(self, match: str | None = None) -> None:
        ofctl("del-flows", self.name, *([match] if match else []))

    def normal(self) -> None:
        """A plain learning switch: one NORMAL flow."""
        self.add_flow("priority=0,actions=NORMAL")

    def dump_flows(self) -> list[str]:
        lines = ofctl("dump-flows", "--no-stats", self.name).splitlines()
        return [ln.strip() for ln in lines if ln.strip() and "reply" not in ln]

    def set_controller(self, target: str) -> None:
        vsctl("set-controller", self.name, target)

    def del_controller(self) -> None:
        vsctl("del-controller", self.name)

    def __enter__(self):  # -> Self
        return self.create()

    def __exit__(self, *exc) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"<OvsBridge {self.name} {self.datapath_type} fail_mode={self.fail_mode}>"
