"""Saving and loading the controller's state file, atomically."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)


class StateDirError(RuntimeError):
    """The state directory cannot be used (a clear startup error)."""


class StateStore:
    """`<state_dir>/<bridge>.json`, replaced atomically on every save."""

    def __init__(self, state_dir: str, bridge: str) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / f"{bridge}.json"
        self.problem: dict[str, str] | None = None  # a bad file found at start, moved aside

    def check_writable(self) -> None:
        """Create the directory if needed and prove we can write there."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.dir, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StateDirError(f"state directory {self.dir} is not writable: {exc}") from exc

    def load(self) -> Any | None:
        """The saved state, or None if there is none; unreadable files raise ValueError."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"cannot read {self.path}: {exc}") from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{self.path} is not valid JSON: {exc}") from exc

    def move_aside(self, why: str) -> Path:
        """Keep a bad state file for inspection (``<file>.corrupt-<time>``) and start empty;
        what happened is logged and kept in `problem` (shown by `wlbridge status`).  Raises
        StateDirError when the file cannot be moved: it is never silently replaced."""
        target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        n = 0
        while target.exists():  # two bad files within a second: keep both
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}.{n}")
        try:
            os.replace(self.path, target)
            self._sync_dir()
        except OSError as exc:
            raise StateDirError(f"state file {self.path} is unusable ({why}) and cannot be "
                                f"moved aside ({exc}): fix or remove it") from exc
        LOG.error("state file %s unusable (%s): kept as %s, starting empty",
                  self.path, why, target)
        self.problem = {"error": why, "moved_to": str(target)}
        return target

    def report(self) -> dict[str, Any]:
        """The state file as `wlbridge status` shows it."""
        return {"path": str(self.path), "problem": self.problem}

    def save(self, data: Any) -> None:
        """Write to a temporary file, fsync it, rename it over the old one, fsync the
        directory: after a crash at any point the file is the old state or the new one."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                # one line: ``dumps`` without indent runs json's C encoder (10x faster)
                handle.write(json.dumps(data, sort_keys=True, separators=(",", ":")))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._sync_dir()

    def _sync_dir(self) -> None:
        """Make a rename durable (the directory entry is data of the directory)."""
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
