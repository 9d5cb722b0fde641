"""The shell's switch socket: read-ahead under os-ken's small reads, and answers held while
more input waits, written together, in order, within bounds; a lone message's answer at once."""

from __future__ import annotations

import socket
import struct

import pytest
from wlbridge.app import ofsocket
from wlbridge.app.ofsocket import SwitchSocket


class Counting:
    """A socket whose ``recv`` and ``sendall`` calls are counted."""

    def __init__(self, sock) -> None:
        self.sock, self.recvs, self.writes = sock, 0, []

    def recv(self, n: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(n)

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(5.0)
    b.settimeout(5.0)
    yield a, b
    a.close()
    b.close()


def message(i: int, size: int = 40) -> bytes:
    """An OpenFlow-shaped message: version, type, length, xid, then padding."""
    return struct.pack("!BBHI", 4, 10, size, i) + bytes(size - 8)


def read_message(sock) -> bytes:
    """What os-ken's receive loop does: the 8-byte header, then the rest."""
    head = b""
    while len(head) < 8:
        head += _more(sock, 8 - len(head))
    length = struct.unpack("!H", head[2:4])[0]
    body = b""
    while len(body) < length - 8:
        body += _more(sock, length - 8 - len(body))
    return head + body


def _more(sock, n: int) -> bytes:
    data = sock.recv(n)
    if not data:
        raise EOFError("the connection ended")
    return data


def nothing_arrived(sock) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1 << 16)
        return False
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5.0)


def test_one_read_serves_many_messages(pair):
    a, b = pair
    raw = Counting(a)
    s = SwitchSocket(raw)
    b.sendall(b"".join(message(i) for i in range(20)))
    got = [read_message(s) for _ in range(20)]
    assert got == [message(i) for i in range(20)]
    assert raw.recvs == 1


def test_partial_messages_are_completed_by_later_reads(pair):
    a, b = pair
    s = SwitchSocket(a)
    data = message(1, 300) + message(2, 300)
    b.sendall(data[:100])
    first = s.recv(8) + s.recv(292)  # the loop asks for the rest and may get less
    assert first == data[:100]
    b.sendall(data[100:])
    while len(first) < 300:
        first += s.recv(300 - len(first))
    assert first == message(1, 300)
    assert read_message(s) == message(2, 300)


def test_answers_wait_while_more_input_is_unhandled_then_go_together(pair):
    a, b = pair
    raw = Counting(a)
    s = SwitchSocket(raw)
    b.sendall(message(1) + message(2) + message(3))
    for i in (1, 2, 3):
        assert read_message(s) == message(i)
        s.sendall(b"answer%d;" % i)
        if i < 3:
            assert nothing_arrived(b), "held while the next message was already read"
    # after the last message nothing is unhandled: its answer went out with the others
    assert b.recv(100) == b"answer1;answer2;answer3;"
    assert len(raw.writes) == 1


def test_held_answers_go_out_before_the_loop_waits_for_more_input(pair):
    a, b = pair
    s = SwitchSocket(a)
    b.sendall(message(1) + message(2)[:12])  # the second message is incomplete
    assert read_message(s) == message(1)
    s.sendall(b"one")
    assert nothing_arrived(b)
    assert s.recv(8) == message(2)[:8]  # served from the read-ahead
    assert s.recv(32) == message(2)[8:12]  # the read-ahead is used up ...
    assert nothing_arrived(b)  # ... but the loop has not come back to the socket yet
    b.sendall(message(2)[12:])
    assert s.recv(28) == message(2)[12:]  # it comes back: what was held goes out first
    assert b.recv(10) == b"one"


def test_a_lone_message_is_answered_at_once(pair):
    a, b = pair
    s = SwitchSocket(a)
    b.sendall(message(7))
    assert read_message(s) == message(7)
    s.sendall(b"offer")
    assert b.recv(10) == b"offer"


def test_holding_is_bounded_by_bytes(pair, monkeypatch):
    a, b = pair
    monkeypatch.setattr(ofsocket, "HOLD_MAX_BYTES", 10)
    s = SwitchSocket(a)
    b.sendall(message(1) + message(2))
    read_message(s)
    s.sendall(b"12345")
    assert nothing_arrived(b)
    s.sendall(b"67890")
    assert b.recv(20) == b"1234567890"


def test_holding_is_bounded_in_time(pair):
    a, b = pair
    clock = [100.0]
    s = SwitchSocket(a, clock=lambda: clock[0])
    b.sendall(message(1) + message(2))
    read_message(s)
    s.sendall(b"first;")
    clock[0] += ofsocket.HOLD_MAX_SECONDS / 2
    s.sendall(b"second;")
    assert nothing_arrived(b)
    clock[0] += ofsocket.HOLD_MAX_SECONDS
    s.sendall(b"third;")
    assert b.recv(100) == b"first;second;third;"


def test_flush_writes_what_is_held(pair):
    a, b = pair
    s = SwitchSocket(a)
    b.sendall(message(1) + message(2))
    read_message(s)
    s.sendall(b"held")
    s.flush()
    assert b.recv(10) == b"held"


def test_closing_flushes_what_is_held_first(pair):
    from test_app_send import FakeDatapath

    a, b = pair
    dp = FakeDatapath(a)
    ofsocket.send_directly(dp)
    b.sendall(message(1) + message(2))
    read_message(dp.socket)
    dp.send(b"last answer")
    assert nothing_arrived(b)
    dp.send(b"bye", close_socket=True)
    assert b.recv(20) == b"last answer"
    assert dp.queued == [(b"bye", True)]


# ------------------------------------------------------------------ liveness
PROBE = b"\x04\x02\x00\x08\x00\x00\x00\x00"  # an OpenFlow 1.3 echo request


def watched(sock, interval: float, timeout: float, gone: list):
    import time

    from wlbridge.app.liveness import Liveness

    return SwitchSocket(sock, liveness=Liveness(interval, timeout, time.monotonic()),
                        probe=PROBE, on_gone=lambda: gone.append(True))


def test_a_quiet_switch_gets_one_echo_request_then_is_given_up(pair):
    import time

    a, b = pair
    gone: list = []
    s = watched(a, 0.1, 0.4, gone)
    start = time.monotonic()
    assert s.recv(8) == b""  # read as the end of the connection
    assert time.monotonic() - start >= 0.4
    assert gone == [True]
    assert b.recv(100) == PROBE  # one probe, nothing else


def test_a_switch_that_answers_or_talks_is_kept(pair):
    """Echo replies keep a quiet switch; a busy one is never probed; a switch that stops
    answering is given up after the timeout."""
    import threading
    import time

    a, b = pair
    gone: list = []
    s = watched(a, 0.2, 0.6, gone)
    probes, stop = [], threading.Event()

    def switch() -> None:   # answers every echo request, for a while
        b.settimeout(0.05)
        while not stop.is_set():
            try:
                data = b.recv(100)
            except TimeoutError:
                continue
            probes.extend(data[i:i + 8] for i in range(0, len(data), 8))
            b.sendall(message(len(probes)) * (len(data) // 8))

    thread = threading.Thread(target=switch, daemon=True)
    thread.start()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        assert read_message(s)[:4] == message(0)[:4]
    stop.set()
    thread.join()
    assert not gone and len(probes) >= 3 and set(probes) == {PROBE}
    # busy: a message every 50 ms (a quarter of the interval) and no probe
    b.settimeout(5.0)
    for i in range(8):
        time.sleep(0.05)
        sent = time.monotonic()
        b.sendall(message(i))
        assert read_message(s) == message(i)
    assert nothing_arrived(b)
    # hung: given up once it has been silent for the timeout, not before
    assert s.recv(8) == b""
    assert time.monotonic() - sent >= 0.6 and gone == [True]


def test_a_closed_connection_is_reported_at_once(pair):
    """The switch closing its end: the read says so (b"") and `on_gone` wakes whatever must
    end with the connection (os-ken's send thread) — long before any liveness timeout."""
    import time

    a, b = pair
    gone: list = []
    s = watched(a, 5.0, 10.0, gone)
    b.sendall(message(1))
    assert read_message(s) == message(1) and gone == []
    b.close()
    start = time.monotonic()
    assert s.recv(8) == b""
    assert time.monotonic() - start < 1.0 and gone == [True]
