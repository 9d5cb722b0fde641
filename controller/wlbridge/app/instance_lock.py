"""One controller per bridge and per state file: an exclusive lock taken before anything
else (before the listening ports are checked and before any state is read).

The lock is an ``flock`` on ``<state_dir>/<bridge>.lock`` (next to the state file, which
cannot carry the lock itself: each save replaces it by a rename), and, where the directory
can be made, on ``/run/wlbridge/<bridge>.lock`` too, so that two controllers for one bridge
with different state directories also exclude each other.  The kernel drops the locks when
the process ends, however it ends; the files stay (removing them would race with a starting
controller) and name the holder's pid.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

RUN_DIR = Path("/run/wlbridge")


class InstanceError(RuntimeError):
    """Another controller holds the lock (a clear one-line startup error)."""


class InstanceLock:
    """The locks of one bridge's controller; held until `release` or the process ends."""

    def __init__(self, state_dir: str | os.PathLike, bridge: str,
                 run_dir: str | os.PathLike | None = RUN_DIR) -> None:
        self.bridge = bridge
        self.paths = [Path(state_dir) / f"{bridge}.lock"]
        if run_dir is not None:
            self.paths.append(Path(run_dir) / f"{bridge}.lock")
        self._fds: list[int] = []

    def acquire(self) -> None:
        """Take every lock, or none: raises InstanceError naming the running controller."""
        try:
            for path in self.paths:
                fd = self._open(path, required=path == self.paths[0])
                if fd is not None:
                    self._fds.append(fd)
        except BaseException:
            self.release()
            raise

    def _open(self, path: Path, required: bool) -> int | None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if required:
                raise InstanceError(f"cannot create the lock file {path}: {exc}") from exc
            return None  # e.g. /run not writable for this user: the state-dir lock remains
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InstanceError(f"cannot lock {path}: {exc}") from exc
            who = f"pid {holder}" if holder else "another process"
            raise InstanceError(
                f"another wlbridge controller ({who}) is already running for bridge "
                f"{self.bridge} (it holds {path}); stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def release(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)  # closing the descriptor drops the flock


def running(state_dir: str | os.PathLike, bridge: str,
            run_dir: str | os.PathLike | None = RUN_DIR) -> tuple[Path, int | None] | None:
    """(lock file, holder's pid) when a controller for `bridge` holds its lock; None when
    none does.  Probes each lock without waiting (and drops it at once)."""
    paths = [Path(state_dir) / f"{bridge}.lock"]
    if run_dir is not None:
        paths.append(Path(run_dir) / f"{bridge}.lock")
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # never created, or not readable: no controller holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return path, _read_pid(fd)
        finally:
            os.close(fd)
    return None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
