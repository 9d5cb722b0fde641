"""The app shell's OpenFlow plumbing: messages written on the caller's thread, whole, in
order; handlers registered on the receive thread, each exactly once."""

from __future__ import annotations

import socket
import threading

import pytest
import wlbridge_app
from wlbridge.app.ofsocket import send_directly
from wlbridge_app import WlBridgeApp


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
    marked = {name for name, fn in vars(WlBridgeApp).items() if hasattr(fn, "wl_on_receive")}
    queued = {name for name, fn in vars(WlBridgeApp).items() if hasattr(fn, "callers")}
    assert "_packet_in" in marked and "_port_status" in marked and "_flow_removed" in marked
    assert marked.isdisjoint(queued), "a handler registered both ways would run twice"
    # only the connection-state event (not an OpenFlow message) stays on the app's queue
    assert {next(iter(getattr(WlBridgeApp, n).callers)) for n in queued} == {
        wlbridge_app.ofp_event.EventOFPStateChange}


class RecordingDatapath:
    """A datapath stand-in for `WlBridgeApp._send`: protocol objects and recorded writes."""

    def __init__(self) -> None:
        from wlbridge.compat import ofp, parser

        self.ofproto, self.ofproto_parser = ofp, parser
        self.writes: list[bytes] = []
        self.xid = 0

    def set_xid(self, msg) -> None:
        self.xid += 1
        msg.set_xid(self.xid)

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        self.writes.append(buf)
        return True


def message_types(buf: bytes) -> list[int]:
    types, i = [], 0
    while i < len(buf):
        types.append(buf[i + 1])
        i += int.from_bytes(buf[i + 2:i + 4], "big")
    return types


def test_an_events_messages_go_in_one_write_but_packet_outs_at_once():
    from types import SimpleNamespace

    from wlbridge.compat import ofp, parser
    from wlbridge.flows.pipeline import Output, build_add, flow

    def flow_mod(i: int):
        return build_add(flow("switch_local", 100, {"eth_dst": f"02:00:00:00:00:{i:02x}"},
                              [Output(i + 2)]), 1)

    def packet_out():
        return parser.OFPPacketOut(None, buffer_id=ofp.OFP_NO_BUFFER, in_port=1,
                                   actions=[parser.OFPActionOutput(2)], data=bytes(60))

    dp = RecordingDatapath()
    shell = SimpleNamespace(datapath=dp)
    WlBridgeApp._send(shell, [flow_mod(i) for i in range(6)] + [packet_out()])  # ARP learning
    assert [message_types(w) for w in dp.writes] == [[ofp.OFPT_FLOW_MOD] * 6
                                                      + [ofp.OFPT_PACKET_OUT]]
    dp.writes.clear()
    WlBridgeApp._send(shell, [packet_out()] + [flow_mod(i) for i in range(12)])  # DHCP ACK
    assert [message_types(w) for w in dp.writes] == [[ofp.OFPT_PACKET_OUT],
                                                      [ofp.OFPT_FLOW_MOD] * 12]
