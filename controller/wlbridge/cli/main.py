"""The `wlbridge` command: setup, run, status, flows, teardown, demo.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; this module only dispatches (imports are lazy so that
``wlbridge --help`` works even where OVS or the controller runtime is missing).

Every refusal is one line on stderr and exit status 2: `UserError` from a command, and
argparse's own errors (`Parser.error`), which would otherwise print the usage first.
Output into a closed pipe (``wlbridge flows | head -1``) is dropped quietly: the command
still finishes what it was doing, as Unix tools do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from typing import Any, NoReturn

from wlbridge.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("wlbridge.cli.bridge_setup", "create the OVS bridge and move the host address onto it"),
    "run": ("wlbridge.cli.runner", "run the controller in the foreground"),
    "status": ("wlbridge.cli.status_client", "show guests, addresses and counters"),
    "flows": ("wlbridge.cli.flowdump", "show the bridge's flows grouped by purpose and guest"),
    "attach": ("wlbridge.cli.attach", "attach a network namespace or container as a guest"),
    "detach": ("wlbridge.cli.detach", "detach a guest attached with `wlbridge attach`"),
    "docker-plugin": ("wlbridge.cli.docker_plugin",
                      "serve Docker's network and IPAM driver for the bridge"),
    "teardown": ("wlbridge.cli.bridge_teardown", "remove the bridge and put everything back"),
    "demo": ("wlbridge.cli.demo", "run the emulated Wi-Fi LAN demo (root)"),
    "doctor": ("wlbridge.cli.doctor", "check whether setup would work here, and what to fix"),
    "install-service": ("wlbridge.cli.service", "install (or remove) the systemd units"),
    "fleet": ("wlbridge.cli.fleet", "start, join, leave or stop a fleet store member (OVSDB)"),
}
# the commands whose `--uplink auto` means the associated Wi-Fi station (`wireless`);
# doctor and install-service resolve it themselves (doctor reports the other findings too)
AUTO_UPLINK = ("setup",)
# what the controller's commands need and a plain `pip install` lacks on Python 3.9
FRAMEWORK_MODULES = ("os_ken", "ryu", "oslo_config", "eventlet")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and every option's default in its help.

    A default that is not None/False is appended as ``(default: X)`` unless the help
    already says ``default``; options without one say in words what happens unset.
    `options` lists the arguments added (for the generated docs, see `docgen`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.options: list[argparse.Action] = []
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        default, text = kwargs.get("default"), kwargs.get("help")
        if (text and text is not argparse.SUPPRESS and "default" not in text
                and default not in (None, False, argparse.SUPPRESS)):
            kwargs["help"] = f"{text} (default: {default})"
        action = super().add_argument(*args, **kwargs)
        self.options.append(action)
        return action

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser(only: str | None = None) -> Parser:
    return build_parsers(only)[0]


def build_parsers(only: str | None = None) -> tuple[Parser, dict[str, Parser]]:
    """The `wlbridge` parser and each command's own; with `only` (a command name, or "" for
    none), only that command's module is imported and its arguments added: the others are
    listed by name and help text (all `wlbridge --help` shows), so that `wlbridge run` does
    not load what `flows` or `setup` need."""
    parser = Parser(
        prog="wlbridge",
        description="Bridge VMs and containers onto a Wi-Fi LAN with Open vSwitch.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="wlbridge's debug lines (the libraries stay at INFO)")
    parser.add_argument("--debug-libraries", action="store_true",
                        help="the libraries' debug output too (os-ken/Ryu, pyroute2's netlink "
                             "dumps, the OVSDB client): very long")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands = {}
    framework = any(_installed(m) for m in FRAMEWORK_MODULES[:2])
    for name, (module_name, help_text) in COMMANDS.items():
        if framework and only is not None and name != only:
            commands[name] = sub.add_parser(name, help=help_text, description=help_text)
            continue
        module = importlib.import_module(module_name) if framework else _usable(module_name)
        if isinstance(module, _NoFramework):
            help_text = f"{help_text} (unavailable: needs os-ken or Ryu)"
        cmd = commands[name] = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser, commands


def chosen_command(argv: list[str]) -> str:
    """The command named on a command line ("" if none): the first word that is not an
    option (the `wlbridge` parser's own options take no value)."""
    for word in argv:
        if word == "--":
            break
        if not word.startswith("-"):
            return word if word in COMMANDS else ""
    return ""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def _usable(module_name: str) -> Any:
    """Without the framework: the command's module if it builds its parser anyway, else a
    `_NoFramework` stand-in (tried on a scratch parser, so the real one stays clean)."""
    try:
        module = importlib.import_module(module_name)
        module.add_arguments(Parser())
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in FRAMEWORK_MODULES:
            raise
        return _NoFramework(exc.name or "")
    return module


class _NoFramework:
    """A command whose module needs the controller framework, which is not installed (Python
    3.9 without `pip install 'wlbridge[ryu]'`): `--help` says so, running it refuses."""

    def __init__(self, missing: str) -> None:
        self.why = (f"no module named {missing}: needs os-ken (Python >= 3.10) or Ryu 4.34 "
                    "(pip install 'wlbridge[ryu]')")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def main(self, args: argparse.Namespace) -> int:
        raise UserError(self.why)


class _PipeSafe:
    """A text stream whose writes into a closed pipe are dropped instead of raising."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _closed_pipe(self) -> None:
        # whatever is still buffered, and all later output, goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed_pipe()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed_pipe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def configure_logging(verbose: bool = False, libraries: bool = False) -> None:
    """INFO on stderr; `verbose`: wlbridge's own loggers (``wlbridge.*``) at DEBUG;
    `libraries`: every logger at DEBUG (pyroute2 alone writes thousands of lines)."""
    logging.basicConfig(level=logging.DEBUG if libraries else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if verbose or libraries:
        logging.getLogger("wlbridge").setLevel(logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    if not isinstance(sys.stdout, _PipeSafe):
        sys.stdout = _PipeSafe(sys.stdout)  # type: ignore[assignment]
    parser = build_parser(chosen_command(sys.argv[1:] if argv is None else argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown and not isinstance(args._module, _NoFramework):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_logging(args.verbose, args.debug_libraries)
    try:
        if args.command in AUTO_UPLINK and getattr(args, "uplink", None) == "auto":
            from wlbridge.host.wireless import resolve_uplink

            args.uplink = resolve_uplink(args.uplink)
        return int(args._module.main(args) or 0)
    except UserError as exc:
        print(f"wlbridge {args.command}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover - use `python -m wlbridge`
    from wlbridge.cli.main import main as _main  # the package's UserError, not __main__'s

    sys.exit(_main())
