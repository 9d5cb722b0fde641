"""`wlbridge demo`: the emulated Wi-Fi LAN, wlbridge on it, guests leased by DHCP."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guests", type=int, default=2, help="number of guests (1-4)")
    p.add_argument("--keep", action="store_true", help="leave the LAN up until Enter")


def main(args: argparse.Namespace) -> int:
    from .demo_run import run

    return run(args)
