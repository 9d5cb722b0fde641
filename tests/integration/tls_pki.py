"""TLS material and a TLS "switch" for the listener tests (test_controller_lifetime.py,
test_ryu_manager.py): a CA, certificates it signed, an OFPT_HELLO exchange."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
from pathlib import Path

import pytest

OFPT_HELLO = 0


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, and a certificate signed by it for the controller and for the switch."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wl-ca",
            "-keyout", str(d / "ca-key.pem"), "-out", str(d / "ca.pem"))
    for who in ("ctl", "switch"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=wl-{who}",
                "-keyout", str(d / f"{who}-key.pem"), "-out", str(d / f"{who}.csr"))
        openssl("x509", "-req", "-in", str(d / f"{who}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca-key.pem"), "-CAcreateserial", "-days", "2",
                "-out", str(d / f"{who}.pem"))
    return {name: d / f"{name}.pem" for name in
            ("ca", "ca-key", "ctl", "ctl-key", "switch", "switch-key")}


def tls_hello(port: int, pki: dict[str, Path], with_cert: bool) -> bytes:
    """Open a TLS connection as a switch would and exchange OFPT_HELLO; the answer's header."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(pki["ca"])  # the controller must prove itself too
    if with_cert:
        ctx.load_cert_chain(pki["switch"], pki["switch-key"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls:
        tls.sendall(struct.pack("!BBHI", 4, OFPT_HELLO, 8, 1))
        return tls.recv(8)


def assert_tls_listener(port: int, pki: dict[str, Path]) -> None:
    """A switch with a certificate the CA signed gets an OpenFlow hello, again and again (a
    reconnecting switch); one without a certificate is refused."""
    for with_cert in (True, False, True):
        if not with_cert:
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                if tls_hello(port, pki, with_cert=False) == b"":
                    raise ConnectionError("closed")  # TLS 1.3 reports the refusal on read
            continue
        version, msg_type, length, _ = struct.unpack("!BBHI", tls_hello(port, pki, True))
        assert (msg_type, length) == (OFPT_HELLO, 8) and version >= 4
