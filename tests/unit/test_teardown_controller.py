"""How teardown tells a running controller from OVSDB's lagging ``is_connected``."""

from __future__ import annotations

import socket

from wlbridge.cli.bridge_teardown import listening


def test_a_loopback_target_is_checked_for_a_listener() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening(f"tcp:127.0.0.1:{port}") is True
        assert listening(f"ssl:127.0.0.1:{port}") is True
    assert listening(f"tcp:127.0.0.1:{port}") is False  # the controller is gone


def test_other_targets_cannot_be_told() -> None:
    for target in ("tcp:192.0.2.1:6653", "unix:/run/ctl.sock", "tcp:127.0.0.1", "punix:/x",
                   "tcp:localhost:6653"):
        assert listening(target) is None, target
