"""Flow-statistics requests in flight, matched to their replies by xid (issue 14).

Two kinds of flow-statistics request share a switch connection: the core's own (after a
resync, `core.flow_stats_request`: our flows only, for the stale-generation sweep) and
`wlbridge flows` (the status endpoint's ``/flows``: every flow).  A reply may come in several
multipart parts (``OFPMPF_REPLY_MORE``), and replies to different requests can interleave;
each part carries its request's xid.  `FlowStatsRequests` collects the parts per xid and
hands the whole reply to the one who asked, and to no one else.  A reply nobody is waiting
for (asked on an earlier connection, or by a waiter that gave up) is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable


class FlowStatsRequests:
    """Requests sent (xid -> owner, whatever the caller uses to route the reply) and the
    parts received so far.  No I/O, no locking: the app calls it under its lock."""

    def __init__(self) -> None:
        self._owners: dict[int, object] = {}
        self._parts: dict[int, list] = {}

    def sent(self, xid: int, owner: object) -> None:
        """A request with this xid went to the switch; its reply goes to `owner`."""
        self._owners[xid] = owner
        self._parts[xid] = []

    def received(self, xid: int, body: Iterable, more: bool) -> tuple[object, list] | None:
        """A reply part: (owner, every part's entries) once the last part is in (`more`
        false); None while parts are missing, or when no request has this xid."""
        parts = self._parts.get(xid)
        if parts is None:
            return None
        parts.extend(body)
        if more:
            return None
        del self._parts[xid]
        return self._owners.pop(xid), parts

    def forget(self, xid: int) -> None:
        """The owner gave up (timed out): a late reply is dropped."""
        self._owners.pop(xid, None)
        self._parts.pop(xid, None)

    def clear(self) -> None:
        """The connection ended: its replies will never come (a new connection's xids may
        be anything)."""
        self._owners.clear()
        self._parts.clear()

    def __len__(self) -> int:
        return len(self._owners)
