"""Counters and log lines of the core and its policies, passed to them (not the core).

A policy counts what it sees (`bump`), warns once per key (`log_once`: a refusal repeated by
every packet of a misbehaving guest is one line), and records binding changes through the
rate-limited `binding_log`.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from wlbridge.ratelog import RateLimitedLog

LOGGED_MAX = 1024  # distinct log-once keys remembered (bounded: at worst a warning repeats)


class Telemetry:
    """One core's counters, its log-once memory and its binding-change log."""

    def __init__(self, counters: Counter, log: logging.Logger,
                 binding_log: RateLimitedLog) -> None:
        self.counters = counters
        self.log = log
        self.binding_log = binding_log
        self.logged: set[str] = set()

    def bump(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def log_once(self, key: str, msg: str, *args: Any) -> None:
        """A warning, unless one with this key was logged already."""
        if key not in self.logged:
            if len(self.logged) >= LOGGED_MAX:
                self.logged.clear()
            self.logged.add(key)
            self.log.warning(msg, *args)

    def forget(self, key: str) -> None:
        """Let the warning of `key` be logged again (its condition ended)."""
        self.logged.discard(key)
