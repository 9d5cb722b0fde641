"""Noticing a lost switch: OpenFlow echo requests, under both frameworks.

os-ken and Ryu send echo requests on each switch connection and close it after a number of
them went unanswered (``echo_request_interval``, ``maximum_unreplied_echo_requests``); the
default (0) sends none.  Then a switch that vanishes without closing the connection is never
noticed, and under os-ken 4.x's native threads not even one that does: the connection's
receive loop ends on EOF, but it then waits for its send thread, which blocks on an empty
queue forever (native threads cannot be killed), so the connection is never declared dead.
With echo requests on, the next request wakes that thread (its write fails and it ends), and
a silent switch is closed after `echo_timeout`.  `release` lets a dead connection's send
thread end (os-ken native threads: one fewer thread per lost switch).
"""

from __future__ import annotations

import logging
import math
from typing import Any

LOG = logging.getLogger("wlbridge.app")


def unreplied_limit(interval: float, timeout: float) -> int:
    """How many echo requests may go unanswered: the framework closes the connection at the
    first request beyond the limit, i.e. after (limit + 1) intervals without a reply, about
    `timeout` (never less than two intervals)."""
    return max(1, math.ceil(timeout / interval - 1e-9) - 1)


def configure(root: Any, interval: float, timeout: float) -> float:
    """Turn the framework's echo requests on; returns the resulting detection time (s)."""
    limit = unreplied_limit(interval, timeout)
    root.set_override("echo_request_interval", interval)
    root.set_override("maximum_unreplied_echo_requests", limit)
    return (limit + 1) * interval


def release(dp: Any) -> None:
    """After a connection is declared dead, wake its send thread so that it ends: os-ken
    ends the thread on a write with ``close_socket``; under eventlet it is gone already
    (then the framework drops the write)."""
    try:
        dp.send(b"", close_socket=True)
    except Exception:
        LOG.debug("releasing a dead connection", exc_info=True)
