"""systemd-networkd: runtime ``.network`` files that move the uplink's configuration.

In /run/systemd/network, named to sort before the uplink's own: the uplink without IP
configuration, the bridge with the uplink's own ``.network`` file (plus what
`networkd_bridge_text` adds: keep the moved address, the same client identifier, no
release at teardown); removed at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff.plan import HandoffRefused, Plan, Step, forever, manual

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

NETWORKD_DIR = "/run/systemd/network"
NETWORKD_PREFIX = "00-wlbridge-"     # sorts before the usual 10-.., 20-.. and 80-.. files


def networkd_files(uplink: str, bridge: str, original: str | None = None) -> tuple[str, str]:
    """The runtime .network files for the uplink and the bridge.  systemd-networkd applies
    the first file (by name, whatever its directory) matching a link, so ours must sort
    before the uplink's `original` file; ValueError if they would not."""
    files = (os.path.join(NETWORKD_DIR, f"{NETWORKD_PREFIX}{uplink}.network"),
             os.path.join(NETWORKD_DIR, f"{NETWORKD_PREFIX}{bridge}.network"))
    if original is not None:
        name = os.path.basename(original)
        late = [f for f in files if os.path.basename(f) >= name]
        if late:
            raise ValueError(f"{os.path.basename(late[0])} would not sort before {name}")
    return files


def networkd_uplink_text(uplink: str) -> str:
    return ("# wlbridge setup: the uplink is an Open vSwitch port; its addresses live on the "
            "bridge\n[Match]\nName=" + uplink + "\n\n[Network]\nDHCP=no\nIPv6AcceptRA=no\n"
            "LinkLocalAddressing=no\nKeepConfiguration=yes\n")


def _assigned(text: str, section: str, key: str) -> str | None:
    """The last ``KEY=value`` of `section` in a .network file (None when not set)."""
    found, current = None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.lower()
        elif current == f"[{section.lower()}]" and "=" in stripped \
                and not stripped.startswith(("#", ";")):
            name, value = stripped.split("=", 1)
            if name.strip() == key:
                found = value.strip()
    return found


def networkd_bridge_text(original: str, bridge: str, iaid: int | None = None) -> str:
    """The uplink's .network file for the bridge: its [Match] section replaced, and

    * ``KeepConfiguration=static`` (unless the file sets it): systemd-networkd removes the
      addresses it did not configure from a link it starts managing, the host's address
      moved there included -- and before the controller runs the bridge forwards no DHCP, so
      the host would be without its address until then (seen with systemd 252);
    * ``IAID=`` the uplink's (`iaid`, from its lease's client identifier), unless the file
      sets IAID= or ClientIdentifier=mac: networkd derives the IAID from the interface's
      persistent name (udev's ID_NET_NAME_*, e.g. a PCI Wi-Fi's) or else its MAC, so the
      bridge (virtual: no such name) would send another client identifier, and a server
      keying leases on it (dnsmasq, ISC dhcpd) would offer another address;
    * ``SendRelease=no``: at teardown networkd stops the bridge's client just before the
      uplink's asks for the same lease again; a release (networkd's default) would free it
      in between (seen with systemd 252)."""
    head = f"# wlbridge setup: copied from the uplink's .network file\n[Match]\nName={bridge}\n"
    out, skip = [head], False
    for line in original.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            skip = stripped.lower() == "[match]"
            if skip:
                continue
        if not skip:
            out.append(line + "\n")
    added = []
    if _assigned(original, "Network", "KeepConfiguration") is None:
        added.append("\n[Network]\nKeepConfiguration=static\n")
    dhcp4 = "SendRelease=no\n"
    if iaid is not None and _assigned(original, "DHCPv4", "IAID") is None \
            and _assigned(original, "DHCPv4", "ClientIdentifier") != "mac":
        dhcp4 += f"IAID={iaid}\n"
    added.append("\n[DHCPv4]\n" + dhcp4)
    out.append("\n# added by wlbridge setup (see wlbridge.host.addr_handoff)" + "".join(added))
    return "".join(out)


def networkd_plan(plan: Plan, det: am.Detection, dyn4: Sequence[Address],
                   sysctls: list[Step]) -> Plan:
    up, br = plan.uplink, plan.bridge
    if not det.networkd_file:
        raise HandoffRefused(f"--address-manager networkd: systemd-networkd does not "
                             f"configure {up}", manual(up, br))
    try:
        up_file, br_file = networkd_files(up, br, det.networkd_file)
    except ValueError as exc:
        raise HandoffRefused(f"systemd-networkd applies the first matching .network file by "
                             f"name, and {exc}: rename {det.networkd_file} (e.g. to "
                             f"10-{up}.network)", manual(up, br)) from exc
    reload_ = ["networkctl", "reload"]
    lifted = [a for a in det.dynamic if a.family == 4]
    plan.manager = f"systemd-networkd on {br}"
    plan.setup = forever(br, lifted, "systemd-networkd") + sysctls + [
        Step("command", "(systemd-networkd reloaded if this is undone)",
             {"argv": None, "undo": reload_}),
        Step("write", f"{up_file}: no IP configuration on {up}",
             {"path": up_file, "text": networkd_uplink_text(up)}),
        Step("networkd-copy", f"{br_file}: {det.networkd_file} for {br}",
             {"src": det.networkd_file, "path": br_file, "bridge": br,
              "iaid": det.networkd_iaid}),
        Step("command", "systemd-networkd reloaded",
             {"argv": reload_, "undo": None})]
    plan.teardown_before = [Step("remove", f"{br_file} removed", {"path": br_file}),
                            Step("command", "systemd-networkd reloaded",
                                 {"argv": reload_, "undo": None})]
    plan.teardown_before += forever(br, lifted, "systemd-networkd")
    plan.teardown_after = [Step("remove", f"{up_file} removed", {"path": up_file}),
                           Step("command", "systemd-networkd reloaded",
                                {"argv": reload_, "undo": None}),
                           Step("command", f"systemd-networkd configures {up} again",
                                {"argv": ["networkctl", "reconfigure", up], "undo": None})]
    if det.networkd_iaid is None:
        plan.notes.append(f"systemd-networkd derives its DHCP client identity per interface and "
                          f"{up}'s was not found (no DHCPv4 lease file): a server keying "
                          f"leases on it may offer {br} another address")
    plan.notes.append(f"systemd-networkd releases {up}'s lease when it stops managing it, "
                      f"unless {det.networkd_file} sets SendRelease=no; {br} then asks for a "
                      "lease with the same client identity")
    return plan
