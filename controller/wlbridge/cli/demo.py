"""`wlbridge demo`: the emulated Wi-Fi LAN, a plain bridge failing on it, then wlbridge."""

from __future__ import annotations

import argparse

MAX_GUESTS = 8


def _guests(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_GUESTS:
        raise argparse.ArgumentTypeError(f"want 1 to {MAX_GUESTS} guests, got {text}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guests", type=_guests, default=2, metavar="N",
                   help=f"number of guests, 1 to {MAX_GUESTS}")
    p.add_argument("--keep", action="store_true", help="leave the LAN up until Enter")


def main(args: argparse.Namespace) -> int:
    from wlbridge.cli.demo_run import run

    return run(args)
