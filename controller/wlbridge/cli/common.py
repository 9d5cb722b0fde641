"""What several commands share: the root check, the bridge/OVSDB arguments, the output
callback, the bridge's saved host state (setup, teardown, demo)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Callable

from wlbridge.errors import UserError

if TYPE_CHECKING:  # imported lazily: `wlbridge --help` must not load ovs/pyroute2
    from wlbridge.host import hostnet, ovsdb

DEFAULT_BRIDGE = "br-wl"

geteuid: Callable[[], int] = os.geteuid     # seam: tests replace it to simulate non-root
#: Where a command's report lines go (print, or a list's append in tests).
Out = Callable[[str], None]


def require_root(command: str) -> None:
    if geteuid() != 0:
        raise UserError(f"must be run as root (try: sudo wlbridge {command} ...); nothing changed")


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    """--bridge, --db, --timeout (setup and teardown)."""
    parser.add_argument("--bridge", default=DEFAULT_BRIDGE, metavar="BRIDGE",
                        help="OVS bridge name")
    parser.add_argument("--db", default=None, metavar="REMOTE",
                        help="OVSDB server (default: $WLBRIDGE_OVSDB, else "
                        "unix:/var/run/openvswitch/db.sock)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for Open vSwitch")


def saved_state(info: ovsdb.BridgeInfo) -> hostnet.SavedState:
    """What setup moved off the uplink, from the bridge's ``external_ids``; a UserError when
    that record is unreadable."""
    from wlbridge.host import hostnet, ovsdb

    try:
        return hostnet.SavedState.from_json(info.external_ids.get(ovsdb.SAVED_KEY, ""))
    except ValueError as exc:
        raise UserError(f"bridge {info.name}: external_ids:{ovsdb.SAVED_KEY} is unreadable "
                        f"({exc}); fix or remove the bridge by hand") from exc
