"""Log lines that can come in floods, limited per period of the injected clock.

An operator wants a line per learned or dropped address, but a guest claiming thousands of
addresses a second must not turn the log into the bottleneck (each line costs tens of
microseconds on the packet-in path, issue 6) or bury everything else.  `RateLimitedLog`
logs the first `burst` lines of each `period`, counts the rest, and says how many it held
back in one line when the period is over (at the next line or `tick`).
"""

from __future__ import annotations

import logging
from typing import Any


class RateLimitedLog:
    """At most `burst` INFO lines per `period` seconds (``now`` comes from the caller)."""

    def __init__(self, logger: logging.Logger, what: str, burst: int = 20,
                 period: float = 1.0) -> None:
        self.logger, self.what = logger, what
        self.burst, self.period = burst, period
        self._ends = float("-inf")
        self._logged = 0
        self.held_back = 0  # lines not logged in the current period

    def info(self, now: float, msg: str, *args: Any) -> None:
        if now >= self._ends:
            self.tick(now)
        if self._logged < self.burst:
            self._logged += 1
            self.logger.info(msg, *args)
        else:
            self.held_back += 1

    def due(self) -> float | None:
        """When `tick` has a summary line to write (None: nothing held back)."""
        return self._ends if self.held_back else None

    def tick(self, now: float) -> None:
        """End the period if it is over, saying what was held back."""
        if now < self._ends:
            return
        if self.held_back:
            self.logger.info("... and %d more %s in %.0f s (not logged one by one; see "
                             "`wlbridge status`)", self.held_back, self.what,
                             now - self._ends + self.period)
        self._ends = now + self.period
        self._logged = self.held_back = 0
