"""Commands and background processes in network namespaces (test tooling)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """argv run inside a named namespace (None = the root namespace)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(netns: str | None, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion; text output captured.  check=True raises with its stderr."""
    cmd = in_netns(netns, argv)
    res = subprocess.run(cmd, check=False, input=input, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)
    return res


class Proc:
    """A background process in a namespace, in its own session, output to a log file."""

    def __init__(self, name: str, netns: str | None, argv: Sequence[str], log: Path,
                 env: dict | None = None):
        self.name = name
        self.netns = netns
        self.argv = list(argv)
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                in_netns(netns, argv), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        """Signal the whole process group (the process and anything it spawned)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 3) -> int | None:
        """SIGTERM, then SIGKILL after timeout; idempotent."""
        if self.alive:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout)
        else:
            self.signal(signal.SIGKILL)  # stragglers left in the group
        return self.popen.returncode

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} alive={self.alive} in {self.netns or 'root'}>"


class Processes:
    """Background processes whose logs (and other files) live in one work directory, stopped
    together: a world's, shared with its hosts (which start their clients through it)."""

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.procs: list[Proc] = []

    def tmp_path(self, name: str) -> Path:
        assert self.workdir is not None, "world not built"
        return self.workdir / name

    def start(self, name: str, netns: str | None, argv: list[str]) -> Proc:
        """A background process, stopped by `stop_all`."""
        proc = Proc(name, netns, argv, self.tmp_path(f"{name}.log"))
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def kill_pids(pids: Sequence[int], timeout: float = 3) -> None:
    """SIGTERM these pids, then SIGKILL what is still alive after timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [p for p in pids if _exists(p)]:
                return
            time.sleep(0.05)


def _exists(pid: int) -> bool:
    try:
        # Zombies of our own children count as gone.
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class WaitTimeout(AssertionError):
    """`wait_for` ran out of time waiting for what it was told (``what``)."""


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, *,
             what: str | None = None,
             retry: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll predicate until it returns a truthy value, which is returned.  The one polling
    helper of the tests, the test tooling and the demo: never sleep and then assert.

    When time runs out: without ``what`` the last (falsy) value is returned, for callers that
    decide themselves; with ``what`` (the condition, in words) `WaitTimeout` is raised (an
    AssertionError: a failed test).  ``retry``: exceptions of predicate counted as "not yet"
    (the last one is in the timeout's message)."""
    deadline = time.monotonic() + timeout
    error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry as exc:
            value, error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            if what is None:
                return value
            last = f" (last error: {error!r})" if error is not None else ""
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}{last}")
        time.sleep(interval)
