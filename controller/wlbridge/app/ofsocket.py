"""The app shell's switch connection plumbing: the I/O under os-ken's receive loop, and the
handlers on it (imported by the app shell only, never by the core).

os-ken (and Ryu) read a switch connection in a loop that asks the socket for a message's
8-byte header, then for the rest of it, and hands every message to its handlers; what the
handlers send goes through a queue to a send thread.  For a controller that answers every
packet-in with several messages that costs two reads, a queue hand-off, a thread wake-up
and a write per packet-in (issue 6).  `SwitchSocket` and `send_directly` keep os-ken's loop
and handlers as they are and change only the I/O under them:

* **read-ahead**: one ``recv`` of up to `READ_CHUNK` bytes serves the loop's small reads
  until it is used up;
* **writes on the caller's thread**, whole and in the order written (a lock), no queue;
* **coalesced writes**: while read-ahead input is still unhandled, more answers are coming,
  so writes are held and go out together — at the latest when the loop comes back to the
  socket for more input, when `HOLD_MAX_BYTES` are held, or at the first write after
  `HOLD_MAX_SECONDS`.  A lone packet-in (a DHCP message a guest waits for) is never held:
  once its last byte is read, nothing is unhandled, and its answer is written at once;
* **liveness** (`wlbridge.app.liveness`): with a `Liveness`, the wait for input is bounded
  by its next decision; a quiet switch is sent an echo request from this thread, and one
  silent for the timeout reads as the end of the connection (``b""``, which ends os-ken's
  receive loop and the connection).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable

from wlbridge.app.liveness import GONE, PROBE, Liveness, echo_request

LOG = logging.getLogger("wlbridge.app")

READ_CHUNK = 64 * 1024
HOLD_MAX_BYTES = 256 * 1024
HOLD_MAX_SECONDS = 0.002


class SwitchSocket:
    """A switch connection's socket with read-ahead and coalesced, locked writes.

    One thread (os-ken's receive loop) calls `recv`; any thread may call `sendall`.
    Everything else is passed through to the wrapped socket."""

    def __init__(self, sock, clock: Callable[[], float] = time.monotonic,
                 liveness: Liveness | None = None, probe: bytes = b"",
                 on_gone: Callable[[], object] = lambda: None) -> None:
        self._sock = sock
        self._clock = clock
        self._liveness = liveness
        self._probe = probe  # the echo request `liveness` asks for
        # called when the connection ends: closed by the switch, or given up by `liveness`
        self._on_gone = on_gone
        self._poll: select.poll | None = None
        self._lock = threading.Lock()
        self._rbuf = b""  # read ahead, not yet handed to the loop
        self._rpos = 0
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._held_since = 0.0

    # ---------------------------------------------------------------- reading
    def recv(self, n: int) -> bytes:
        if self._rpos < len(self._rbuf):
            return self._serve(n)
        with self._lock:  # the loop has handled everything read: write what it answered
            self._write_held()
        if self._liveness is not None and not self._wait_for_input():
            return b""  # gone: the receive loop ends as on a closed connection
        try:
            data = self._sock.recv(max(n, READ_CHUNK))
        except OSError:
            self._on_gone()
            raise
        if not data:
            self._on_gone()
        elif self._liveness is not None:
            self._liveness.heard(self._clock())
        if len(data) <= n:
            return data
        with self._lock:
            self._rbuf, self._rpos = data, 0
        return self._serve(n)

    def _wait_for_input(self) -> bool:
        """Wait until the switch sends something (True), probing it when it is quiet;
        False once `Liveness` gives it up."""
        liveness = self._liveness
        assert liveness is not None
        if self._poll is None and hasattr(select, "poll"):  # eventlet's green select has none
            self._poll = select.poll()   # no descriptor of its own to close
            self._poll.register(self._sock.fileno(), select.POLLIN)
        while True:
            action, wait = liveness.step(self._clock())
            if action == GONE:
                LOG.warning("the switch sent nothing for %.1fs: closing the connection",
                            liveness.timeout)
                self._on_gone()
                return False
            if action == PROBE:
                self.sendall(self._probe)
            wait = max(wait, 0.0)
            if (self._poll.poll(wait * 1000) if self._poll is not None
                    else select.select([self._sock], [], [], wait)[0]):
                return True

    def _serve(self, n: int) -> bytes:
        start = self._rpos
        chunk = self._rbuf[start:start + n]
        with self._lock:
            if start + n >= len(self._rbuf):
                self._rbuf, self._rpos = b"", 0
            else:
                self._rpos = start + n
        return chunk

    # ---------------------------------------------------------------- writing
    def sendall(self, data) -> None:
        with self._lock:
            if self._rpos < len(self._rbuf):  # more input to handle: hold this write
                if not self._held:
                    self._held_since = self._clock()
                self._held.append(bytes(data))
                self._held_bytes += len(data)
                if (self._held_bytes >= HOLD_MAX_BYTES
                        or self._clock() - self._held_since >= HOLD_MAX_SECONDS):
                    self._write_held()
                return
            if self._held:
                self._held.append(bytes(data))
                self._write_held()
                return
            self._sock.sendall(data)

    def flush(self) -> None:
        """Write whatever is held now."""
        with self._lock:
            self._write_held()

    def _write_held(self) -> None:
        if not self._held:
            return
        data = b"".join(self._held)
        self._held, self._held_bytes = [], 0
        self._sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def send_directly(dp, liveness: Liveness | None = None) -> None:
    """Put a `SwitchSocket` under a datapath and have ``dp.send`` (what ``send_msg`` calls)
    write through it on the caller's thread instead of os-ken's send queue; with
    `liveness`, the socket also watches the switch (echo requests of the datapath's
    OpenFlow version).

    os-ken's send thread still writes its own few messages (hello, echo requests) through
    the same socket, so its writes keep their order with ours.  A failed write, and
    closing, go to os-ken's queued path, which shuts the connection."""
    if isinstance(dp.socket, SwitchSocket):
        return
    queued = dp.send
    failed = False
    # a connection closed or a switch given up: os-ken's send thread is woken with a close
    # request, so that the connection ends (its native threads wait for each other; on a
    # connection the bridge made to our listener nothing else wakes it)
    dp.socket = SwitchSocket(dp.socket, liveness=liveness,
                             probe=echo_request(dp.ofproto.OFP_VERSION) if liveness else b"",
                             on_gone=lambda: queued(b"", True))

    def send(buf, close_socket: bool = False) -> bool:
        nonlocal failed
        if not (close_socket or failed):
            try:
                dp.socket.sendall(buf)
                return True
            except OSError as exc:
                failed = True
                LOG.warning("writing to the switch failed (%s): closing the connection", exc)
        if close_socket and not failed:
            try:
                dp.socket.flush()  # what is held goes before the close
            except OSError:
                failed = True
        return queued(buf, close_socket)

    dp.send = send


def on_receive(ev_cls: type, dispatchers: str | list[str]) -> Callable[[Callable], Callable]:
    """Mark an OpenFlow message handler to run on the switch connection's receive thread.

    os-ken's (and Ryu's) receive loop calls the ``ofp_event`` brick's handlers inline, in
    the order messages arrive; an app's ``set_ev_cls`` handlers instead get the event
    through the app's queue and thread.  Each hand-off costs ~0.1–0.3 ms, which a DHCP lease
    pays four times (issue 4), so `WlBridgeApp.start` registers these handlers on the brick.
    All of the app's OpenFlow message handlers are marked, so they still see messages in
    wire order."""
    def mark(fn):
        fn.wl_on_receive = (ev_cls, dispatchers if isinstance(dispatchers, list)
                            else [dispatchers])
        return fn
    return mark
