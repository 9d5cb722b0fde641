"""Ryu's TLS connections: a connection closed under the receive loop (the echo timeout)
reads as an end of stream, not as an exception Ryu's hub does not catch."""

from __future__ import annotations

from wlbridge.app import ryu_tls


class ClosedTls:
    """What Python's TLS socket does on recv after close()."""

    def recv(self, size: int) -> bytes:
        raise ValueError("Read on closed or unwrapped SSL socket.")

    def getpeername(self) -> tuple:
        return ("127.0.0.1", 6653)


def test_recv_on_a_closed_tls_socket_is_an_end_of_stream():
    sock = ryu_tls.EndOnClose(ClosedTls())
    assert sock.recv(4096) == b""
    assert sock.getpeername() == ("127.0.0.1", 6653)  # the rest is the socket's own
