"""The app shell's OpenFlow plumbing: messages written on the caller's thread, whole, in
order; handlers registered on the receive thread, each exactly once."""

from __future__ import annotations

import socket
import threading

import pytest
from wlbridge.app import framework
from wlbridge.app.framework import WlBridgeApp
from wlbridge.app.ofsocket import send_directly


class FakeDatapath:
    """What `send_directly` uses of os-ken's Datapath: ``socket`` and the queued ``send``."""

    def __init__(self, sock) -> None:
        self.socket = sock
        self.queued: list[tuple[bytes, bool]] = []

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        self.queued.append((buf, close_socket))
        return True


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(5.0)  # as os-ken sets it: sendall then writes in chunks
    yield a, b
    a.close()
    b.close()


def read_exactly(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def test_writes_on_the_callers_thread_not_the_queue(pair):
    a, b = pair
    dp = FakeDatapath(a)
    send_directly(dp)
    assert dp.send(b"hello") is True
    assert read_exactly(b, 5) == b"hello"
    assert dp.queued == []


def test_closing_goes_through_the_framework_queue(pair):
    dp = FakeDatapath(pair[0])
    send_directly(dp)
    dp.send(b"bye", close_socket=True)
    assert dp.queued == [(b"bye", True)]


def test_a_failed_write_hands_over_to_the_queue_for_good():
    class Broken:
        def sendall(self, _data) -> None:
            raise BrokenPipeError("gone")

    dp = FakeDatapath(Broken())
    send_directly(dp)
    dp.send(b"one")
    dp.send(b"two")
    assert dp.queued == [(b"one", False), (b"two", False)]


def test_installing_twice_keeps_one_wrapper(pair):
    dp = FakeDatapath(pair[0])
    send_directly(dp)
    first = dp.socket
    send_directly(dp)
    assert dp.socket is first


def test_concurrent_writers_never_interleave(pair):
    """Three threads (one standing for os-ken's send thread, which calls
    ``socket.sendall`` itself) write large messages at once; the reader sees each whole."""
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    dp = FakeDatapath(a)
    send_directly(dp)
    size, count = 48 * 1024, 40
    writers = [
        threading.Thread(target=lambda: [dp.send(bytes([1]) * size) for _ in range(count)]),
        threading.Thread(target=lambda: [dp.send(bytes([2]) * size) for _ in range(count)]),
        threading.Thread(target=lambda: [dp.socket.sendall(bytes([3]) * size)
                                         for _ in range(count)]),
    ]
    for t in writers:
        t.start()
    seen = []
    for _ in range(3 * count):
        block = read_exactly(b, size)
        assert len(set(block)) == 1, "two messages interleaved"
        seen.append(block[0])
    for t in writers:
        t.join()
    assert sorted(seen) == [1] * count + [2] * count + [3] * count


def test_every_openflow_message_handler_runs_on_the_receive_thread_once():
    import wlbridge_app

    app = wlbridge_app.WlBridgeApp   # what the framework loads (a subclass of the adapter's)
    methods = {name: getattr(app, name) for name in dir(app)}
    marked = {name for name, fn in methods.items() if hasattr(fn, "wl_on_receive")}
    queued = {name for name, fn in methods.items() if hasattr(fn, "callers")}
    assert "_packet_in" in marked and "_port_status" in marked and "_flow_removed" in marked
    assert marked.isdisjoint(queued), "a handler registered both ways would run twice"
    # only the connection-state event (not an OpenFlow message) stays on the app's queue
    assert {next(iter(getattr(app, n).callers)) for n in queued} == {
        framework.ofp_event.EventOFPStateChange}


def test_the_framework_finds_the_app_in_wlbridge_app():
    """os-ken and Ryu load the app class a module defines, not one it imports."""
    import wlbridge_app

    manager = framework.app_manager.AppManager.__new__(framework.app_manager.AppManager)
    assert manager.load_app("wlbridge_app") is wlbridge_app.WlBridgeApp
    assert issubclass(wlbridge_app.WlBridgeApp, WlBridgeApp)


# How the shell writes an event's messages (one write, packet-outs at once): test_shell.py.
