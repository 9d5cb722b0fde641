"""`wlbridge -v` shows wlbridge's debug lines, not the libraries' (pyroute2 dumps every
netlink message at DEBUG); `--debug-libraries` shows those too."""

from __future__ import annotations

import subprocess
import sys

import pytest
from wlbridge.cli.main import build_parser

EMIT = """
import logging, sys
from wlbridge.cli.main import configure_logging
configure_logging(verbose={verbose}, libraries={libraries})
logging.getLogger("wlbridge.app").debug("ours at debug")
logging.getLogger("wlbridge.host.hostnet").info("ours at info")
logging.getLogger("pyroute2.netlink.nlsocket").debug("IFLA_IFNAME dump")
logging.getLogger("os_ken.controller.controller").debug("framework at debug")
logging.getLogger("os_ken.base.app_manager").info("framework at info")
"""


def logged(verbose: bool, libraries: bool) -> str:
    proc = subprocess.run([sys.executable, "-c", EMIT.format(verbose=verbose,
                                                             libraries=libraries)],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stderr


@pytest.mark.parametrize("verbose,libraries,shown", [
    (False, False, {"ours at info", "framework at info"}),
    (True, False, {"ours at debug", "ours at info", "framework at info"}),
    (False, True, {"ours at debug", "ours at info", "IFLA_IFNAME dump", "framework at debug",
                   "framework at info"}),
])
def test_verbose_is_wlbridges_debug_and_libraries_a_switch_of_their_own(verbose, libraries,
                                                                          shown):
    out = logged(verbose, libraries)
    every = {"ours at debug", "ours at info", "IFLA_IFNAME dump", "framework at debug",
             "framework at info"}
    assert {line for line in every if line in out} == shown


def test_both_switches_are_flags_of_the_command_line():
    args = build_parser().parse_args(["-v", "--debug-libraries", "status"])
    assert args.verbose and args.debug_libraries
    args = build_parser().parse_args(["status"])
    assert not args.verbose and not args.debug_libraries
