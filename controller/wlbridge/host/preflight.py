"""What `wlbridge doctor` looks at, read from the host without changing anything.

`gather` fills a `Facts` (every field plain data, so unit tests build one by hand); the
checks over it are pure (`wlbridge.cli.doctor`).  What is read, and with what:

* Open vSwitch: ``ovs-vsctl`` (version, datapath types; an answer at all means it runs),
  ``/sys/module/openvswitch`` (the kernel datapath), and which systemd unit starts it
  (`ovs_unit`: the distributions name it differently);
* the uplink: `wireless` (mode, operstate, driver, 4-address flag), its ethtool features
  (pyroute2's ethtool ioctls);
* who manages the host's address: `addr_manager.read_facts`/`detect`, the same detection
  `wlbridge setup` runs, and whether the DHCP client binaries are installed;
* firewalld's zone of the uplink (``firewall-cmd --get-zone-of-interface``), when it runs;
* how the supplicant gets EAPOL: `supplicant.check`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from wlbridge.host import addr_manager, supplicant, wireless

OVS_MODULE_PATH = "/sys/module/openvswitch"
# Open vSwitch's systemd unit: Debian/Ubuntu, Fedora/RHEL, Arch (ovsdb-server.service and
# ovs-vswitchd.service, which Fedora and Debian have too, as parts of the first two)
OVS_UNITS = ("openvswitch-switch.service", "openvswitch.service", "ovs-vswitchd.service")
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system",
             "/lib/systemd/system")
DHCP_CLIENTS = ("dhclient", "dhcpcd")
TIMEOUT = 5.0


@dataclass
class Ovs:
    running: bool = False
    error: str = ""                             # why ovs-vsctl did not answer
    version: str | None = None
    datapath_types: tuple[str, ...] = ()
    kernel_module: bool = False
    unit: str | None = None                     # the distribution's systemd unit, if any


@dataclass
class Facts:
    uplink: str | None                          # None: `--uplink auto` found no station
    bridge: str = "br-wl"
    ovs: Ovs = field(default_factory=Ovs)
    exists: bool = True                         # the uplink is a network interface
    wireless: bool = True                       # ... a cfg80211 (Wi-Fi) interface
    link: wireless.WirelessLink | None = None   # its mode, operstate, driver, 4addr
    features: dict[str, bool] | None = None     # ethtool features (available ones); None: unknown
    manager: addr_manager.Detection | None = None  # None: not detected (no uplink)
    binaries: dict[str, str | None] = field(default_factory=dict)  # DHCP client -> path
    firewalld_zone: str | None = None           # None: firewalld not running; "": no zone
    eapol: supplicant.EapolPath | None = None
    uplink_problem: str | None = None           # why `--uplink auto` found no station


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except FileNotFoundError:
        return f"{argv[0]} is not installed"
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not answer within {TIMEOUT:g}s"


def ovs_unit(unit_dirs: tuple[str, ...] = UNIT_DIRS) -> str | None:
    """The systemd unit that starts Open vSwitch here (first of `OVS_UNITS` installed)."""
    for unit in OVS_UNITS:
        if any(os.path.exists(os.path.join(d, unit)) for d in unit_dirs):
            return unit
    return None


def read_ovs(db: str | None = None) -> Ovs:
    ovs = Ovs(kernel_module=os.path.isdir(OVS_MODULE_PATH), unit=ovs_unit())
    argv = ["ovs-vsctl", f"--timeout={int(TIMEOUT)}", *([f"--db={db}"] if db else []),
            "get", "Open_vSwitch", ".", "ovs_version", "datapath_types"]
    res = _run(argv)
    if isinstance(res, str):
        ovs.error = res
    elif res.returncode != 0:
        ovs.error = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    else:
        ovs.running = True
        lines = res.stdout.splitlines() + ["", ""]
        ovs.version = lines[0].strip().strip('"') or None
        ovs.datapath_types = tuple(t.strip() for t in lines[1].strip("[] ").split(",")
                                   if t.strip())
    return ovs


def read_features(name: str) -> dict[str, bool] | None:
    try:
        from pyroute2.ethtool import Ethtool

        with Ethtool() as eth:
            features = eth.get_features(name).features
    except Exception:  # noqa: BLE001 - any ioctl/driver failure means "cannot tell"
        return None
    return {n: bool(f.enable) for n, f in features.items() if f.available}


def read_firewalld_zone(name: str) -> str | None:
    if shutil.which("firewall-cmd") is None:
        return None
    state = _run(["firewall-cmd", "--state"])
    if isinstance(state, str) or state.returncode != 0:
        return None
    res = _run(["firewall-cmd", f"--get-zone-of-interface={name}"])
    if isinstance(res, str) or res.returncode != 0:
        return ""                               # "no zone" (exit status 2)
    return res.stdout.strip()


def gather(uplink: str | None, bridge: str, db: str | None = None) -> Facts:
    """The facts about `uplink` (None: Open vSwitch's only)."""
    from wlbridge.host.hostnet import HostNet

    facts = Facts(uplink=uplink, bridge=bridge, ovs=read_ovs(db),
                  binaries={c: shutil.which(c) for c in DHCP_CLIENTS})
    if uplink is None:
        facts.exists = facts.wireless = False
        return facts
    with HostNet() as net:
        ifindex = net.link_index(uplink)
        if ifindex is None:
            facts.exists = facts.wireless = False
            return facts
        addresses = net.addresses(uplink)
    facts.wireless = wireless.is_wireless(uplink)
    if facts.wireless:
        facts.link = wireless.read_link(uplink, wireless.nl80211_modes())
    facts.features = read_features(uplink)
    facts.manager = addr_manager.detect(addr_manager.read_facts(uplink, ifindex), uplink,
                                        addresses)
    facts.firewalld_zone = read_firewalld_zone(uplink)
    datapath = "system" if facts.ovs.kernel_module else "netdev"
    facts.eapol = supplicant.check(uplink, ifindex, bridge, datapath)
    return facts
