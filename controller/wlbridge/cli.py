"""The `wlbridge` command: setup, run, status, flows, teardown, demo.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; this module only dispatches (imports are lazy so that
``wlbridge --help`` works even where OVS or the controller runtime is missing).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("wlbridge.bridge_setup", "create the OVS bridge and move the host address onto it"),
    "run": ("wlbridge.runner", "run the controller in the foreground"),
    "status": ("wlbridge.status_client", "show guests, addresses and counters"),
    "flows": ("wlbridge.flowdump", "show the bridge's flows grouped by purpose and guest"),
    "teardown": ("wlbridge.bridge_teardown", "remove the bridge and put everything back"),
    "demo": ("wlbridge.demo", "run the emulated Wi-Fi LAN demo (root)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wlbridge",
        description="Bridge VMs and containers onto a Wi-Fi LAN with Open vSwitch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args._module.main(args) or 0)
    except UserError as exc:
        print(f"wlbridge {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - use `python -m wlbridge`
    from wlbridge.cli import main as _main  # the package's UserError, not __main__'s

    sys.exit(_main())
