"""`wlbridge run`: the controller in the foreground, on os-ken's app manager."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from . import config
from .compat import FRAMEWORK
from .errors import UserError

LOG = logging.getLogger(__name__)

# command-line flag -> option in the [wlbridge] section
FLAGS = ("bridge", "uplink", "state_dir", "dhcp_mode", "idle_timeout", "status_port",
         "listen_host", "listen_port", "bridge_timeout")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bridge", help="OVS bridge (default br-wl)")
    p.add_argument("--uplink", help="station interface (default: found in OVSDB)")
    p.add_argument("--listen-host", help="OpenFlow listen address (default 127.0.0.1)")
    p.add_argument("--listen-port", type=int, help="OpenFlow listen port (default 6653)")
    p.add_argument("--state-dir", help="state directory (default /var/lib/wlbridge)")
    p.add_argument("--dhcp-mode", choices=config.DHCP_MODES, help="DHCP strategy")
    p.add_argument("--idle-timeout", type=int, help="seconds an unused learned address lives")
    p.add_argument("--status-port", type=int, help="loopback status/metrics port (0: off)")
    p.add_argument("--bridge-timeout", type=int, metavar="SECONDS",
                   help="how long to wait for the bridge to exist (default 30)")
    p.add_argument("--config-file", help="INI file with a [wlbridge] section")


def load_config(args: argparse.Namespace):
    """The framework CONF with the file, then command-line flags, applied."""
    import importlib

    cfg = importlib.import_module(f"{FRAMEWORK}.cfg")
    importlib.import_module(f"{FRAMEWORK}.base.app_manager")  # import order matters
    importlib.import_module(f"{FRAMEWORK}.controller.controller")  # registers ofp_* options
    conf = config.register(cfg.CONF)
    files = []
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise UserError(f"config file {args.config_file} not found")
        files = [args.config_file]
    try:
        conf(args=[], project="wlbridge", default_config_files=files)
    except Exception as exc:  # oslo.config raises several kinds
        raise UserError(f"bad configuration: {exc}") from exc
    for flag in FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            conf.set_override(flag, value, group=config.GROUP)
    conf.set_override("ofp_listen_host", conf.wlbridge.listen_host)
    conf.set_override("ofp_tcp_listen_port", conf.wlbridge.listen_port)
    for opt in config.options():  # oslo.config checks values only when read
        try:
            getattr(conf.wlbridge, opt.dest)
        except Exception as exc:
            raise UserError(f"bad value for [wlbridge] {opt.dest}: {exc}") from exc
    try:
        config.static_macs(conf.wlbridge.static_macs)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return conf


def _signal_pipe() -> int:
    """A pipe the C-level signal handler writes to (``signal.set_wakeup_fd``); its read end.

    Python runs signal handlers in the main thread, but the kernel may deliver the signal to
    any thread: a main thread asleep in ``Event.wait`` would then sleep on (the handler runs
    only when the main thread next runs Python code).  A read on this pipe returns whichever
    thread took the signal."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)
    return read


def main(args: argparse.Namespace) -> int:
    conf = load_config(args)
    from .persist import StateDirError, StateStore

    try:
        StateStore(conf.wlbridge.state_dir, conf.wlbridge.bridge).check_writable()
    except StateDirError as exc:
        raise UserError(str(exc)) from exc
    import importlib

    app_manager = importlib.import_module(f"{FRAMEWORK}.base.app_manager")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    wake = _signal_pipe()
    mgr = app_manager.AppManager.get_instance()
    mgr.load_apps(["wlbridge_app", f"{FRAMEWORK}.controller.ofp_handler"])
    contexts = mgr.create_contexts()
    try:
        mgr.instantiate_apps(**contexts)
    except SystemExit as exc:
        raise UserError(str(exc.code)) from exc
    LOG.info("listening for OpenFlow on %s:%s", conf.wlbridge.listen_host,
             conf.wlbridge.listen_port)
    while not stop.is_set():   # no polling: a signal wakes the read (see _signal_pipe)
        os.read(wake, 64)
    LOG.info("stopping")
    try:
        mgr.close()
    finally:
        logging.shutdown()
        os._exit(0)  # native hub threads cannot be killed; state is saved by close()
