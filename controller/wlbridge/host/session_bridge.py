"""A Linux bridge for ``qemu:///session`` VMs (virt-manager's user sessions, GNOME Boxes),
linked into the OVS bridge by one guest port.

Session VMs run as the user, so libvirt cannot plug them into Open vSwitch: QEMU asks
qemu-bridge-helper (setuid root) for a tap on a *Linux* bridge the helper's ACL allows
(``allow NAME`` in /etc/qemu/bridge.conf).  `wlbridge setup --session-bridge NAME` makes

* the Linux bridge NAME: no address, IPv6 off (its own frames would be one more MAC behind
  the port), STP off, no forwarding delay, bridged frames kept from the host's netfilter;
* a veth pair: ``NAME-p`` a port of the OVS bridge (Interface ``external_ids``
  ``wlbridge-session-bridge=NAME``), ``NAME-b`` a port of NAME; with the userspace
  datapath TX checksum offload off on both ends;
* ``allow NAME`` in the helper's ACL file, appended when no line allows NAME already (the
  file and its directory made if missing); the user's other lines are never touched.

The OVS bridge records what it made (``external_ids``: ``wlbridge-session-bridge=NAME``
and ``wlbridge-session-acl=added`` when the ACL line is ours), so `wlbridge teardown`
removes exactly that: our ACL line (the file otherwise byte for byte as it was; removed if
we made it and it is now empty), the veth pair, the Linux bridge.  Every VM on NAME is a
guest behind the one port ``NAME-p`` (`max_macs_per_port` of them).

Non-root users also need the helper to be setuid root (Debian ships it without:
``dpkg-statoverride --update --add root root 4755 /usr/lib/qemu/qemu-bridge-helper``);
setup says so, it never changes it.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wlbridge.errors import UserError

ACL_FILE = Path("/etc/qemu/bridge.conf")
HELPERS = ("/usr/lib/qemu/qemu-bridge-helper", "/usr/libexec/qemu-bridge-helper")
BRIDGE_KEY = "wlbridge-session-bridge"   # Bridge and Interface external_ids
ACL_KEY = "wlbridge-session-acl"         # Bridge external_ids: "added" (ours) or "present"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,12}$")
BRIDGE_OPTIONS = {"br_stp_state": 0, "br_forward_delay": 0, "br_mcast_snooping": 0,
                  "br_nf_call_iptables": 0, "br_nf_call_ip6tables": 0,
                  "br_nf_call_arptables": 0}


def check_name(name: str) -> str:
    """A usable name (its ports are ``NAME-p``, ``NAME-b``); UserError otherwise."""
    if not _NAME.match(name):
        raise UserError(f"--session-bridge {name!r}: 1 to 13 letters, digits, '.', '_' or "
                        "'-', starting with a letter or digit; nothing changed")
    return name


def ovs_port(name: str) -> str:
    return f"{name}-p"


def bridge_end(name: str) -> str:
    return f"{name}-b"


# ---- the ACL file (text in, text out) ----------------------------------------------------
def allows(text: str, name: str) -> bool:
    return any(line.split() == ["allow", name] for line in text.splitlines())


def acl_added(text: str, name: str) -> str:
    """`text` with ``allow NAME`` appended (on a line of its own)."""
    if text and not text.endswith("\n"):
        text += "\n"
    return f"{text}allow {name}\n"


def acl_removed(text: str, name: str) -> str:
    """`text` without its ``allow NAME`` lines, every other line as it was."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.split() != ["allow", name])


def _write(path: Path, text: str) -> None:
    """Atomically, mode 0644 (or the file's own)."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def helper_note(helpers=HELPERS) -> str | None:
    """What non-root users lack to use the helper (None: nothing, or no helper here)."""
    for path in helpers:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & stat.S_ISUID:
            return None
        return (f"note: {path} is not setuid root: only root's VMs can use it (for session "
                f"VMs: dpkg-statoverride --update --add root root 4755 {path})")
    return None


# ---- setup and teardown ---------------------------------------------------------------
def check_free(info: Any, net: Any, name: str) -> None:
    """Refuse (UserError) a session bridge `name` for the OVS bridge `info` describes (None:
    not made yet) when the bridge has another one, or when `name` or its ports' names are
    taken by interfaces that are not its; setup calls it before changing anything."""
    check_name(name)
    ours = info.external_ids.get(BRIDGE_KEY) if info is not None else None
    if ours and ours != name:
        raise UserError(f"bridge {info.name} has session bridge {ours} already (teardown "
                        "removes it); nothing changed")
    if ours is None:
        for link in (name, ovs_port(name), bridge_end(name)):
            if net.link_index(link) is not None:
                raise UserError(f"--session-bridge {name}: an interface named {link} exists "
                                "already; choose another name; nothing changed")


def ensure(db: Any, net: Any, bridge: str, name: str, netdev: bool,
           acl: Path = ACL_FILE) -> list[str]:
    """Make (or find in place) the session bridge `name` of OVS bridge `bridge`; the changes
    made.  UserError (after undoing what it made) when it cannot."""
    info = db.bridge_info(bridge)
    if info is None:
        raise UserError(f"bridge {bridge} does not exist; nothing changed")
    check_free(info, net, name)
    port, end = ovs_port(name), bridge_end(name)
    changes: list[str] = []
    made: list[str] = []
    try:
        if net.link_index(name) is None:
            net.ipr.link("add", ifname=name, kind="bridge", **BRIDGE_OPTIONS)
            made.append(name)
            changes.append(f"Linux bridge {name} created (for qemu-bridge-helper)")
        if net.link_index(port) is None:
            net.ipr.link("add", ifname=port, kind="veth", peer={"ifname": end})
            made.append(port)
            changes.append(f"veth pair {port} (on {bridge}) - {end} (on {name}) created")
        for link in (name, end):
            net.set_ipv6_conf(link, {"disable_ipv6": "1"})
        if netdev:
            for link in (port, end):
                features = net.get_tx_checksum(link) or {}
                if features and not net.set_tx_checksum(link, dict.fromkeys(features, False)):
                    raise OSError(f"cannot turn TX checksum offload off on {link}")
        net.ipr.link("set", index=net.link_index(end), master=net.link_index(name))
        for link in (end, port, name):
            net.ipr.link("set", index=net.link_index(link), state="up")
        if info.interface(port) is None:
            from wlbridge.host.ovsdb import PortSpec

            db.add_port(bridge, PortSpec(port, "", {BRIDGE_KEY: name}))
            changes.append(f"port {port} added to {bridge}")
        text = acl.read_text() if acl.exists() else ""
        state = info.external_ids.get(ACL_KEY)
        if not allows(text, name):
            _write(acl, acl_added(text, name))
            state = "added"
            changes.append(f"{acl}: allow {name} (qemu-bridge-helper may use it)")
        db.set_external_ids(bridge, {BRIDGE_KEY: name, ACL_KEY: state or "present"})
    except (OSError, LookupError) as exc:
        for link in reversed(made):
            index = net.link_index(link)
            if index is not None:
                net.ipr.link("del", index=index)
        if info.interface(port) is None:
            db.delete_port(bridge, port)
        raise UserError(f"session bridge {name} not made: {exc}; nothing changed") from exc
    return changes


def remove(info: Any, db: Any, net: Any, acl: Path = ACL_FILE) -> list[str]:
    """Remove the session bridge recorded on the OVS bridge `info` describes (teardown)."""
    name = info.external_ids.get(BRIDGE_KEY)
    if not name:
        return []
    changes = []
    if info.interface(ovs_port(name)) is not None and db.delete_port(info.name, ovs_port(name)):
        changes.append(f"port {ovs_port(name)} removed from {info.name}")
    for link, what in ((ovs_port(name), "veth pair"), (name, "Linux bridge")):
        index = net.link_index(link)
        if index is not None:
            net.ipr.link("del", index=index)
            changes.append(f"{what} {link} deleted")
    if info.external_ids.get(ACL_KEY) == "added" and acl.exists():
        text = acl.read_text()
        if allows(text, name):
            rest = acl_removed(text, name)
            if rest:
                _write(acl, rest)
            else:
                acl.unlink()
            changes.append(f"{acl}: allow {name} removed")
    return changes


def after_setup(db: Any, net: Any, bridge: str, name: str, netdev: bool,
                out: Callable[[str], None], acl: Path = ACL_FILE) -> None:
    """Setup's step (nothing without a name)."""
    if not name:
        return
    for line in ensure(db, net, bridge, name, netdev, acl) or [
            f"session bridge {name}: already in place"]:
        out(f"  {line}")
    note = helper_note()
    if note:
        out(f"  {note}")
    out(f"  session VMs: virt-install --connect qemu:///session --network bridge={name},"
        "model=virtio ..., or qemu -netdev bridge,br=" + name + ",id=n0 ...")
