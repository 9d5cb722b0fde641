"""`wlbridge install-service`: install the systemd units shipped with the package, or remove them.

Two units (package data, ``wlbridge/data``, with the man page and the bash completion, which
go under ``--prefix``): ``wlbridge-setup.service`` (a oneshot that runs
`wlbridge setup` and stays active: the bridge, and the DHCP client the address hand-off
starts, belong to it) and ``wlbridge.service`` (the controller, which requires it).  See the
units' own comments for why stopping either keeps the host's lease and the guests' flows.

`render` is pure: it fills a unit's ``@NAME@`` values -- the Open vSwitch unit of this
distribution (`preflight.ovs_unit`), the uplink and its device unit, the bridge, the
``wlbridge`` command, the config file.  Installing writes them to ``--unit-dir``, puts the
example config in place when there is none (never overwriting one), reloads systemd and
enables and starts the controller.  ``--uninstall`` stops and disables both, tears the bridge
down (`wlbridge teardown`), removes the units and reloads systemd; the config file stays.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib import resources

from wlbridge.cli.common import DEFAULT_BRIDGE
from wlbridge.errors import UserError
from wlbridge.host import preflight, wireless

UNITS = ("wlbridge-setup.service", "wlbridge.service")
# the man page and the bash completion: package data -> under --prefix
EXTRAS = {"wlbridge.8": "share/man/man8/wlbridge.8",
          "wlbridge.bash": "share/bash-completion/completions/wlbridge"}
PREFIX = "/usr/local"
CONTROLLER_UNIT = "wlbridge.service"
UNIT_DIR = "/etc/systemd/system"
CONFIG = "/etc/wlbridge.ini"


def data_text(name: str) -> str:
    """A file shipped in the package's ``data`` directory."""
    return resources.files("wlbridge").joinpath("data", name).read_text()


def device_unit(interface: str) -> str:
    """systemd's device unit of a network interface (systemd-escape --path rules)."""
    path = f"sys/subsystem/net/devices/{interface}"
    out = []
    for i, ch in enumerate(path):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch in ":_" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out) + ".device"


def render(template: str, *, uplink: str, bridge: str, ovs_unit: str, wlbridge: str,
           config: str) -> str:
    values = {"UPLINK": uplink, "BRIDGE": bridge, "OVS_UNIT": ovs_unit, "WLBRIDGE": wlbridge,
              "CONFIG": config, "UPLINK_DEVICE": device_unit(uplink)}
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


def command_path() -> str:
    """The ``wlbridge`` command as the units should run it: the console script this process
    was started as (not resolved: a link in /usr/local/bin survives upgrades), else the one
    on PATH, else this Python with ``-m wlbridge``."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "wlbridge" and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    return shutil.which("wlbridge") or f"{sys.executable} -m wlbridge"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uplink", default="auto", metavar="UPLINK",
                        help="the Wi-Fi station interface written into the units; auto: the "
                        "one associated managed-mode station now")
    parser.add_argument("--bridge", default=DEFAULT_BRIDGE, metavar="BRIDGE",
                        help="OVS bridge name")
    parser.add_argument("--unit-dir", default=UNIT_DIR, metavar="DIR",
                        help="where the unit files go")
    parser.add_argument("--config", default=CONFIG, metavar="FILE",
                        help="the config file `wlbridge run` reads (the example is installed "
                        "there when there is none)")
    parser.add_argument("--prefix", default=PREFIX, metavar="DIR",
                        help="the man page goes to DIR/share/man/man8, the bash completion to "
                        "DIR/share/bash-completion/completions")
    parser.add_argument("--no-start", action="store_true",
                        help="only write the files (no systemctl), e.g. into an image")
    parser.add_argument("--print", action="store_true", dest="print_only",
                        help="print the units as they would be installed, change nothing")
    parser.add_argument("--uninstall", action="store_true",
                        help="stop and disable the units, tear the bridge down, remove the units")


def _systemctl(*argv: str) -> None:
    res = subprocess.run(["systemctl", *argv], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        err = " ".join(res.stderr.split()) or f"exit status {res.returncode}"
        raise UserError(f"systemctl {' '.join(argv)} failed: {err}")


def _systemd_runs() -> bool:
    return os.path.isdir("/run/systemd/system")


def rendered(args: argparse.Namespace, ovs_unit: str) -> dict[str, str]:
    return {name: render(data_text(name), uplink=args.uplink, bridge=args.bridge,
                         ovs_unit=ovs_unit, wlbridge=command_path(), config=args.config)
            for name in UNITS}


def install(args: argparse.Namespace) -> int:
    args.uplink = wireless.resolve_uplink(args.uplink)
    if args.uplink == args.bridge or not args.uplink:
        raise UserError("--uplink must name the Wi-Fi interface, not the bridge")
    ovs_unit = preflight.ovs_unit()
    if ovs_unit is None and not (args.print_only or args.no_start):
        raise UserError("no Open vSwitch systemd unit found (looked for "
                        f"{', '.join(preflight.OVS_UNITS)}); install Open vSwitch "
                        "(docs/install.md); nothing changed")
    units = rendered(args, ovs_unit or preflight.OVS_UNITS[0])
    if args.print_only:
        for name, text in units.items():
            print(f"# {os.path.join(args.unit_dir, name)}\n{text}")
        return 0
    if not args.no_start and not _systemd_runs():
        raise UserError("systemd is not the init system here (no /run/systemd/system); "
                        "--no-start only writes the files; nothing changed")
    os.makedirs(args.unit_dir, exist_ok=True)
    for name, text in units.items():
        path = os.path.join(args.unit_dir, name)
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}")
    for name, where in EXTRAS.items():
        path = os.path.join(args.prefix, where)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(data_text(name))
        print(f"wrote {path}")
    if not os.path.exists(args.config):
        os.makedirs(os.path.dirname(args.config) or ".", exist_ok=True)
        with open(args.config, "w") as f:
            f.write(data_text("wlbridge.ini"))
        print(f"wrote {args.config} (the example configuration: every option at its default)")
    if args.no_start:
        return 0
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", CONTROLLER_UNIT)
    print(f"enabled and started {CONTROLLER_UNIT} (and wlbridge-setup.service): "
          f"systemctl status {CONTROLLER_UNIT}")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    paths = [os.path.join(args.unit_dir, name) for name in UNITS]
    paths += [os.path.join(args.prefix, where) for where in EXTRAS.values()]
    if not args.no_start and _systemd_runs():
        _systemctl("disable", "--now", *UNITS)
    status = teardown(args.bridge)
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
            print(f"removed {path}")
    if not args.no_start and _systemd_runs():
        _systemctl("daemon-reload")
    return status


def teardown(bridge: str) -> int:
    """`wlbridge teardown --bridge BRIDGE`, as its own process (its output is the user's)."""
    return subprocess.run([*command_path().split(), "teardown", "--bridge", bridge],
                          check=False).returncode


def main(args: argparse.Namespace) -> int:
    if args.uninstall:
        return uninstall(args)
    return install(args)
