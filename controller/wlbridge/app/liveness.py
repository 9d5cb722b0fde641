"""Noticing a lost switch: an echo request only when the switch has gone quiet.

A switch that closes its connection is noticed at once (the socket reports its end:
`wlbridge.app.switch_link` before the handshake is done, `wlbridge.app.ofsocket` after it);
one that hangs with the connection open (a stuck
ovs-vswitchd) is noticed by its silence.  Anything the switch sends counts as a sign of
life: only after `interval` seconds without a message does the controller send it one echo
request, and after `timeout` seconds without a message the switch counts as gone.

Why not the framework's echo loop (``echo_request_interval``,
``maximum_unreplied_echo_requests``, which the app turns off): it is a thread of its own
that sends a request every interval whatever the switch says, and each request wakes two
threads (the loop, then the receive thread for the reply) — two wake-ups a second at rest
with the 1 s interval that 3 s detection needed.  Here the receive thread keeps the time
(`wlbridge.app.ofsocket.SwitchSocket` waits for input at most until the next decision),
so a switch at rest costs two wake-ups per `interval` (the probe, then its reply), and a
busy one none: its traffic is the sign of life.

Before the handshake is done (the features reply, when the `Liveness` takes over) nothing
watches the connection: `give_up_unless_greeted` ends a connection whose switch has not
completed it within the timeout (a switch that connected and hung, e.g. an ovs-vswitchd
stuck at its start), so that the connector (or the bridge) connects again.

`Liveness` decides from the times it is given (no clock of its own); `release` lets a
dead connection's send thread end (os-ken native threads: one fewer thread per lost
switch).
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

LOG = logging.getLogger("wlbridge.app")

PROBE = "probe"
GONE = "gone"
OFPT_ECHO_REQUEST = 2


class Liveness:
    """When to probe a quiet switch, and when to give it up.

    `interval`: seconds without a message before one echo request is sent (half of
    `timeout` if it is not shorter, so that the switch has time to answer); `timeout`:
    seconds without a message before the switch counts as gone."""

    def __init__(self, interval: float, timeout: float, now: float) -> None:
        self.timeout = timeout
        self.interval = interval if interval < timeout else timeout / 2
        self.heard_at = now
        self.probed = False

    def heard(self, now: float) -> None:
        """The switch sent something."""
        self.heard_at = now
        self.probed = False

    def step(self, now: float) -> tuple[str | None, float]:
        """What to do at `now` (`PROBE`: send an echo request; `GONE`; None: nothing) and
        how long one may then wait for the switch before asking again."""
        quiet = now - self.heard_at
        if quiet >= self.timeout:
            return GONE, 0.0
        if not self.probed and quiet >= self.interval:
            self.probed = True
            return PROBE, self.timeout - quiet
        if self.probed:
            return None, self.timeout - quiet
        return None, self.interval - quiet


def echo_request(version: int, xid: int = 0) -> bytes:
    """An OpenFlow echo request (header only)."""
    return struct.pack("!BBHI", version, OFPT_ECHO_REQUEST, 8, xid)


def configure(root: Any, timeout: float) -> float:
    """Turn the framework's own echo requests off (`Liveness` does the job); returns the
    detection time (s): `timeout` without a message from the switch."""
    root.set_override("maximum_unreplied_echo_requests", 0)
    return timeout


def release(dp: Any) -> None:
    """After a connection is declared dead, wake its send thread so that it ends: os-ken
    ends the thread on a write with ``close_socket``; under eventlet it is gone already
    (then the framework drops the write)."""
    try:
        dp.send(b"", close_socket=True)
    except Exception:
        LOG.debug("releasing a dead connection", exc_info=True)


def give_up_unless_greeted(dp: Any, timeout: float, greeted: Any) -> bool:
    """(A thread of its own, started when a connection begins its handshake.)  Wait up to
    `timeout` s for `greeted` (an event with ``wait(timeout)`` and ``is_set()``, set at the
    switch's features reply or at the connection's end); if it is not set by then, end the
    connection `dp`: its socket shut down, which ends the framework's receive loop, and its
    send thread released.  Returns whether it was given up."""
    greeted.wait(timeout)
    if greeted.is_set() or getattr(dp, "is_active", True) is False:
        return False
    LOG.warning("switch at %s did not complete the OpenFlow handshake within %.1fs: "
                "closing the connection", getattr(dp, "address", "?"), timeout)
    try:
        dp.socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        LOG.debug("shutting a hung switch's connection down", exc_info=True)
    release(dp)
    return True
