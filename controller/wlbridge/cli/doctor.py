"""`wlbridge doctor`: would `wlbridge setup` work here, and what to fix first.

One line per finding: ``ok``, ``warn`` (setup works, but something will bite: the fix says
what to do) or ``FAIL`` (setup would refuse or the bridge would not carry the guests), each
with its fix.  Exit status 0 when nothing FAILs, 2 otherwise.  The checks (`findings`) are
pure over the `preflight.Facts` that `preflight.gather` reads from the host.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from wlbridge.cli.common import DEFAULT_BRIDGE
from wlbridge.errors import UserError
from wlbridge.host import addr_manager, preflight, wireless
from wlbridge.host.preflight import Facts

OK, WARN, FAIL = "ok", "warn", "FAIL"

LRO = "rx-lro"
# where each DHCP client comes from
DHCP_PACKAGES = {"dhclient": "Debian/Ubuntu: isc-dhcp-client; Fedora: dhcp-client; Arch: dhclient",
                 "dhcpcd": "Debian/Ubuntu: dhcpcd-base; Fedora and Arch: dhcpcd"}
START_OVS = ("systemctl start openvswitch-switch (Debian/Ubuntu), openvswitch (Fedora) or "
             "ovs-vswitchd (Arch); without systemd: /usr/share/openvswitch/scripts/ovs-ctl start")


@dataclass(frozen=True)
class Finding:
    level: str                      # OK, WARN, FAIL
    topic: str
    text: str
    fix: str | None = None

    def line(self) -> str:
        fix = f" -- fix: {self.fix}" if self.fix else ""
        return f"{self.level:<4} {self.topic}: {self.text}{fix}"


def check_ovs(f: Facts) -> list[Finding]:
    ovs = f.ovs
    if not ovs.running:
        return [Finding(FAIL, "openvswitch", f"Open vSwitch does not answer ({ovs.error})",
                        f"systemctl start {ovs.unit}" if ovs.unit else START_OVS)]
    out = [Finding(OK, "openvswitch", f"Open vSwitch {ovs.version or '(version unknown)'} "
                   f"running{f' ({ovs.unit})' if ovs.unit else ''}")]
    types = ", ".join(ovs.datapath_types) or "none listed"
    if ovs.kernel_module and "system" in ovs.datapath_types:
        out.append(Finding(OK, "datapath", f"kernel datapath (openvswitch module loaded; "
                           f"datapath types: {types})"))
    elif "netdev" in ovs.datapath_types:
        out.append(Finding(OK, "datapath", "userspace datapath netdev (the openvswitch kernel "
                           f"module is not loaded; datapath types: {types})"))
    else:
        out.append(Finding(FAIL, "datapath", f"no datapath setup can use (openvswitch module "
                           f"{'loaded' if ovs.kernel_module else 'not loaded'}; datapath "
                           f"types: {types})", "modprobe openvswitch"))
    return out


def check_uplink(f: Facts) -> list[Finding]:
    up = f.uplink
    if f.uplink_problem:
        return [Finding(FAIL, "uplink", f.uplink_problem.replace("; nothing changed", ""),
                        "name the Wi-Fi station with --uplink")]
    if not f.exists:
        return [Finding(FAIL, "uplink", f"{up} does not exist",
                        "name the Wi-Fi station with --uplink (see `ip link`), or --uplink auto")]
    if not f.wireless or f.link is None:
        return [Finding(FAIL, "uplink", f"{up} is not a Wi-Fi station (no "
                        f"/sys/class/net/{up}/wireless): wlbridge is for a Wi-Fi uplink; a "
                        "wired one bridges with a plain bridge",
                        "name the Wi-Fi station with --uplink, or --uplink auto")]
    link, out = f.link, []
    if link.iftype not in (wireless.STATION, None):
        out.append(Finding(FAIL, "uplink", f"{up} is in {link.iftype} mode, not a managed-mode "
                           "station", f"use the station interface (iw dev {up} info)"))
    elif link.operstate != "up":
        out.append(Finding(WARN, "uplink", f"{up} is a Wi-Fi station but not associated "
                           f"(operstate {link.operstate}): setup works, guests reach nothing "
                           "until it associates", "connect it (nmcli, wpa_supplicant, iwd)"))
    else:
        mode = "managed-mode station" if link.iftype else "Wi-Fi interface (mode unknown)"
        out.append(Finding(OK, "uplink", f"{up} is an associated {mode}"))
    if wireless.nat25_driver(link.driver):
        out.append(Finding(WARN, "driver", f"{up}'s driver {link.driver} is a Realtek vendor "
                           "driver with its own MAC translation (NAT25), which rewrites what "
                           "wlbridge rewrote", wireless.NAT25_FIX))
    elif link.driver:
        out.append(Finding(OK, "driver", f"{link.driver} (no MAC translation of its own)"))
    if link.four_addr:
        out.append(Finding(WARN, "4addr", f"{up} has 4-address mode on: an AP that accepts it "
                           "bridges the guests itself (a plain bridge would do) and wlbridge's "
                           "one-MAC rewriting is not needed",
                           wireless.FOUR_ADDR_FIX.format(uplink=up)))
    return out


def check_offloads(f: Facts) -> list[Finding]:
    if f.features is None:
        return [] if not f.wireless else [
            Finding(WARN, "offloads", f"cannot read {f.uplink}'s offloads (ethtool)")]
    if f.features.get(LRO):
        return [Finding(WARN, "offloads", f"large receive offload is on for {f.uplink}: merged "
                        "frames cannot be forwarded to the guests", f"ethtool -K {f.uplink} "
                        "lro off")]
    tx = [n for n, on in f.features.items() if n.startswith("tx-checksum") and on]
    return [Finding(OK, "offloads", f"no large receive offload; TX checksum offload "
                    f"{'on' if tx else 'off'} (setup turns it off where the datapath needs it)")]


def check_manager(f: Facts) -> list[Finding]:
    det = f.manager
    if det is None:
        return []
    if det.problem:
        return [Finding(FAIL, "address", f"{det.detail}: {det.problem}",
                        "see docs/usage.md (address hand-off); `wlbridge setup "
                        "--address-manager keep` only moves the addresses")]
    needs = {addr_manager.NETWORKMANAGER: "dhclient", addr_manager.DHCLIENT: "dhclient",
             addr_manager.DHCPCD: "dhcpcd"}.get(det.manager)
    if needs and not f.binaries.get(needs):
        return [Finding(FAIL, "address", f"the host's address is managed by {det.detail}; the "
                        f"hand-off to the bridge runs {needs}, which is not installed",
                        f"install {needs} ({DHCP_PACKAGES[needs]})")]
    client = f"; its DHCP client on the bridge: {f.binaries[needs]}" if needs else ""
    return [Finding(OK, "address", f"managed by {det.detail}{client}")]


def check_firewall(f: Facts) -> list[Finding]:
    zone = f.firewalld_zone
    if zone is None:
        return []
    if not zone:
        return [Finding(OK, "firewall", f"firewalld binds no zone to {f.uplink}")]
    return [Finding(WARN, "firewall", f"firewalld binds {f.uplink} to zone {zone}; after setup "
                    f"the host's traffic is on {f.bridge}, which falls into the default zone",
                    f"firewall-cmd --permanent --zone={zone} --add-interface={f.bridge} && "
                    "firewall-cmd --reload")]


def check_eapol(f: Facts) -> list[Finding]:
    path = f.eapol
    if path is None:
        return []
    # "for the kernel datapath: ...": advice for later, nothing to do on this datapath
    later = (path.advice or "").startswith("for the kernel datapath")
    level = WARN if path.advice and not later else OK
    return [Finding(level, "eapol", path.detail, path.advice if level == WARN else None)]


CHECKS = (check_ovs, check_uplink, check_offloads, check_manager, check_firewall, check_eapol)


def findings(facts: Facts) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(facts)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uplink", default="auto", metavar="UPLINK",
                        help="the Wi-Fi station interface; auto: the one associated "
                        "managed-mode station")
    parser.add_argument("--bridge", default=DEFAULT_BRIDGE, metavar="BRIDGE",
                        help="the bridge setup would create")
    parser.add_argument("--db", default=None, metavar="REMOTE",
                        help="OVSDB server (default: ovs-vsctl's own, "
                        "unix:/var/run/openvswitch/db.sock)")


def main(args: argparse.Namespace) -> int:
    try:
        uplink, problem = wireless.resolve_uplink(args.uplink), None
    except UserError as exc:
        uplink, problem = None, str(exc)
    facts = preflight.gather(uplink, args.bridge, args.db)
    facts.uplink_problem = problem
    found = findings(facts)
    for finding in found:
        print(finding.line())
    failed = [f for f in found if f.level == FAIL]
    print(f"setup would {'not ' if failed else ''}work"
          + (f": {len(failed)} problem(s) above" if failed else ""))
    return 2 if failed else 0
