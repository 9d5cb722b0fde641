"""`System`: the host operations the hand-off's steps use, and nothing else -- files,
processes, signals, commands, the clock and address lifetimes.

The steps (`wlbridge.host.addr_handoff.steps`) get one passed in: this one on a host, a
fake in the unit tests (tests/unit/handoff_fakes.py), which then need no patching.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from wlbridge.host import addr_manager as am

SYSTEMD_RUNTIME = "/run/systemd/system"  # exists when systemd is the init system (sd_booted)
SCOPE_GRACE = 0.5  # seconds within which a refused scope shows (systemd-run exits)
LOG = logging.getLogger("wlbridge.setup")


def in_scope(argv: Sequence[str], systemd: bool, systemd_run: str | None) -> list[str]:
    """`argv` as started under systemd: in a transient scope of its own (``systemd-run
    --scope``: the command runs in it, with its pid), so that it belongs to no service
    (stopping or restarting wlbridge-setup.service, whatever its KillMode, leaves the host's
    DHCP client running: it keeps the lease).  Without systemd (or systemd-run): as it is."""
    if not systemd or not systemd_run:
        return list(argv)
    name = os.path.basename(argv[0]) if argv else "client"
    return [systemd_run, "--scope", "--quiet", "--collect",
            f"--description=wlbridge: {name} of the host's address (address hand-off)",
            "--", *argv]


def spawn_detached(argv: Sequence[str], scoped: Sequence[str],
                   grace: float = SCOPE_GRACE) -> int:
    """Start `scoped` (`argv` in a scope, or `argv` itself) detached, in a session of its
    own; its pid.  A scope systemd refused (systemd-run exits at once with an error: no
    D-Bus, no permission) falls back to `argv` alone, with one log line."""
    def popen(cmd: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)

    proc = popen(scoped)
    if list(scoped) != list(argv):
        try:
            failed = proc.wait(grace) != 0
        except subprocess.TimeoutExpired:
            failed = False               # running: the command itself, in its scope
        if failed:
            LOG.warning("systemd-run could not give %s a scope of its own: started without "
                        "(a stop of its unit may end it)", argv[0])
            proc = popen(argv)
    return proc.pid


class System:
    """The real host.  `net`: a `hostnet.HostNet`, for address lifetimes (``forever``)."""

    def __init__(self, net: Any = None) -> None:
        self.net = net
        self.removed: dict[str, str] = {}    # what ``remove`` steps took, for their undo

    # files
    @staticmethod
    def read_text(path: str) -> str | None:
        """The file's text, None when it does not exist."""
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    @staticmethod
    def write_text(path: str, text: str, mode: int | None = None) -> None:
        """Replace `path` at once (its directory made when missing)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)

    @staticmethod
    def append_text(path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as f:
            f.write(text)

    @staticmethod
    def unlink(path: str) -> None:
        """Remove `path`; nothing when it is not there."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def write_sysctl(path: str, value: str) -> None:
        with open(path, "w") as f:
            f.write(value)

    # processes
    @staticmethod
    def cmdline(pid: int) -> list[str] | None:
        """The command line of process `pid`; None when there is none."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return None
        return [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")] if raw \
            else None

    @staticmethod
    def processes() -> list[am.Process]:
        return am.read_processes()

    @staticmethod
    def kill(pid: int, sig: int) -> None:
        os.kill(pid, sig)

    @staticmethod
    def spawn(argv: Sequence[str]) -> int:
        """Start `argv` in a session of its own, detached, under systemd in a scope of its
        own (`in_scope`); its pid."""
        import shutil

        return spawn_detached(argv, in_scope(argv, os.path.isdir(SYSTEMD_RUNTIME),
                                             shutil.which("systemd-run")))

    @staticmethod
    def run(argv: Sequence[str]) -> None:
        """Run `argv` to its end; RuntimeError (its last error line) unless it succeeds."""
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                             check=False)
        if res.returncode != 0:
            err = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
            raise RuntimeError(f"`{shlex.join(argv)}` failed: {err}")

    # the clock (waiting for a process to start or end)
    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    # address lifetimes
    def addresses_forever(self, iface: str, addresses: list[dict[str, Any]]) -> None:
        """`addresses` (as stored: `hostnet.Address` fields) that are on `iface` made
        unlimited (no valid/preferred lifetime); nothing when `iface` is gone."""
        from wlbridge.host.hostnet import Address, address_kwargs

        index = self.net.link_index(iface)
        if index is None:
            return          # gone (e.g. the internal port after an OVS restart): nothing to do
        present = {a.key() for a in self.net.addresses(iface)}
        for data in addresses:
            addr = Address(**{**data, "valid_lft": None, "preferred_lft": None})
            if addr.key() in present:
                self.net.ipr.addr("replace", **address_kwargs(addr, index))
