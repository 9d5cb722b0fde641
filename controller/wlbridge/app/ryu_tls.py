"""Ryu 4.34's TLS listener, fixed to serve more than one connection (``ryu-manager`` only).

Ryu's ``hub.StreamServer`` builds the TLS context inside the per-connection handler and
*pops* the key, certificate and context out of its arguments while doing so: the first
switch connection gets TLS, every later one fails (``ValueError: certfile must be specified``)
before the handshake.  A switch that reconnects — after an OVS restart, or after the echo
timeout declared it gone — could then never come back.  os-ken builds the context once, in
the constructor; `install` gives ``ryu.controller.controller`` a server that does the same.
A failed handshake (a peer without a certificate signed by the CA) is logged in one line.
A TLS connection closed under Ryu's receive loop (the echo timeout closes a silent switch's
connection) ends that loop as an end of stream: Python's TLS socket raises ValueError there,
which Ryu does not expect (an uncaught exception in its hub).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

LOG = logging.getLogger("wlbridge.app")


class EndOnClose:
    """A TLS socket whose ``recv`` after a close is an end of stream (b""), as a plain
    socket's is for Ryu's receive loop; everything else is the socket's own."""

    def __init__(self, tls: Any) -> None:
        self._tls = tls

    def recv(self, size: int, *args: Any) -> bytes:
        try:
            return self._tls.recv(size, *args)
        except ValueError:  # "Read on closed or unwrapped SSL socket"
            return b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tls, name)


def _server_class(base: type) -> type:
    class StreamServer(base):  # type: ignore[misc, valid-type]
        def __init__(self, listen_info, handle=None, backlog=None, spawn="default",
                     **ssl_args: Any) -> None:
            super().__init__(listen_info, handle, backlog, spawn)  # the plain listener
            if not ssl_args:
                return
            ctx = ssl_args.pop("ssl_ctx", None) or ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(ssl_args.pop("certfile"), ssl_args.pop("keyfile"))
            if "cert_reqs" in ssl_args:
                ctx.verify_mode = ssl_args.pop("cert_reqs")
            if "ca_certs" in ssl_args:
                ctx.load_verify_locations(ssl_args.pop("ca_certs"))

            def wrap_and_handle(sock, addr) -> None:
                try:
                    tls = ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    LOG.warning("TLS handshake with %s failed: %s", addr, exc)
                    sock.close()
                    return
                handle(EndOnClose(tls), addr)

            self.handle = wrap_and_handle

    return StreamServer


def install() -> None:
    """Replace the server class Ryu's OpenFlow controller uses (before it starts)."""
    from ryu.controller import controller

    if not getattr(controller.StreamServer, "wl_fixed", False):
        controller.StreamServer = _server_class(controller.StreamServer)
        controller.StreamServer.wl_fixed = True
