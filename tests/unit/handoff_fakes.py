"""A fake host for the address hand-off's steps (`wlbridge.host.addr_handoff.steps.Host`):
files, a process table, signals, commands and a clock, all in memory, with one log of what
was done.  Passed in (`HostOps(system=...)`, `Handoff(system=...)`): nothing is patched."""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from typing import Any

from wlbridge.host import addr_manager as am


class FakeSystem:
    """`files`: path -> text; `procs`: pid -> argv.  A spawned command whose argv has
    ``-pf PIDFILE`` writes its pid there, as dhclient does, unless its last argument (its
    interface) is in `dies_on` (it exits at once).  `failing`: a command (its argv joined) -> the
    error `run` gives it.  `log`: one line per change, in order, `shared` with others."""

    def __init__(self, files: dict[str, str] | None = None,
                 procs: dict[int, Sequence[str]] | None = None,
                 failing: dict[str, str] | None = None, dies_on: Sequence[str] = (),
                 log: list[str] | None = None) -> None:
        self.files = dict(files or {})
        self.modes: dict[str, int] = {}
        self.procs = {pid: list(argv) for pid, argv in (procs or {}).items()}
        self.failing = dict(failing or {})
        self.dies_on = set(dies_on)
        self.log = log if log is not None else []
        self.ran: list[list[str]] = []
        self.signals: list[tuple[int, int]] = []
        self.forever: list[tuple[str, list[str]]] = []
        self.removed: dict[str, str] = {}
        self.now = 0.0
        self.next_pid = 1000

    def daemon(self, argv: Sequence[str], pidfile: str, pid: int) -> None:
        """A running `argv` with its pid in `pidfile`."""
        self.procs[pid] = list(argv)
        self.files[pidfile] = f"{pid}\n"

    def running(self) -> list[list[str]]:
        return sorted(self.procs.values())

    # files
    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def write_text(self, path: str, text: str, mode: int | None = None) -> None:
        self.files[path] = text
        if mode is not None:
            self.modes[path] = mode
        self.log.append(f"write {path}")

    def append_text(self, path: str, text: str) -> None:
        self.files[path] = self.files.get(path, "") + text
        self.log.append(f"append {path}")

    def unlink(self, path: str) -> None:
        if self.files.pop(path, None) is not None:
            self.log.append(f"unlink {path}")

    def makedirs(self, path: str) -> None:
        pass

    def write_sysctl(self, path: str, value: str) -> None:
        self.files[path] = value
        self.log.append(f"sysctl {path}={value}")

    # processes
    def cmdline(self, pid: int) -> list[str] | None:
        return self.procs.get(pid)

    def processes(self) -> list[am.Process]:
        return [am.Process(pid, 1, argv[0].rsplit("/", 1)[-1][:15], tuple(argv))
                for pid, argv in sorted(self.procs.items())]

    def kill(self, pid: int, sig: int) -> None:
        if pid not in self.procs:
            raise ProcessLookupError(pid)
        self.signals.append((pid, sig))
        if sig in (signal.SIGTERM, signal.SIGKILL):
            self.log.append(f"kill {shlex.join(self.procs.pop(pid))}")

    def spawn(self, argv: Sequence[str]) -> int:
        self.next_pid += 1
        self.log.append(f"spawn {shlex.join(argv)}")
        if argv[-1] not in self.dies_on:
            self.procs[self.next_pid] = list(argv)
            if "-pf" in argv:
                self.files[argv[list(argv).index("-pf") + 1]] = f"{self.next_pid}\n"
        return self.next_pid

    def run(self, argv: Sequence[str]) -> None:
        self.ran.append(list(argv))
        self.log.append(f"run {shlex.join(argv)}")
        error = self.failing.get(shlex.join(argv))
        if error is not None:
            raise RuntimeError(f"`{shlex.join(argv)}` failed: {error}")

    # the clock
    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    # address lifetimes
    def addresses_forever(self, iface: str, addresses: list[dict[str, Any]]) -> None:
        self.forever.append((iface, [a["address"] for a in addresses]))
        self.log.append(f"forever {iface}")
