"""`wlbridge run`: the controller in the foreground, on os-ken's app manager."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import threading

from wlbridge.app import config
from wlbridge.compat import FRAMEWORK
from wlbridge.errors import UserError

LOG = logging.getLogger(__name__)


def _arg_type(opt):
    """argparse type of an option's flag: its value converted and checked like the file's."""
    def convert(text: str):
        try:
            return config.convert(opt, text)
        except config.ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    convert.__name__ = opt.dest
    return convert


def _shown_default(opt) -> str:
    if opt.default is None:
        return "unset"
    default = opt.default
    if isinstance(default, list):
        return ",".join(default) or "none"
    return str(default).lower() if isinstance(default, bool) else str(default)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per option of `config.options()`; not given, the file's value (or the
    default) applies."""
    for opt in config.options():
        help_text = opt.help or opt.dest
        if opt.default is not None or "unset" not in help_text:
            help_text += f" (default: {_shown_default(opt)})"
        if type(opt.type).__name__ == "Boolean":
            p.add_argument(config.flag(opt), dest=opt.dest, default=argparse.SUPPRESS,
                           action=argparse.BooleanOptionalAction, help=help_text)
            continue
        choices = getattr(opt.type, "choices", None)
        metavar = "|".join(choices) if choices else opt.dest.upper()
        p.add_argument(config.flag(opt), dest=opt.dest, default=argparse.SUPPRESS,
                       type=_arg_type(opt), metavar=metavar, help=help_text)
    p.add_argument("--config-file", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"INI file with a [{config.GROUP}] section (default: none)")


def load_config(args: argparse.Namespace):
    """The framework CONF with the file, then command-line flags, applied."""
    import contextlib
    import importlib
    import io

    cfg = importlib.import_module(f"{FRAMEWORK}.cfg")
    importlib.import_module(f"{FRAMEWORK}.base.app_manager")  # import order matters
    importlib.import_module(f"{FRAMEWORK}.controller.controller")  # registers ofp_* options
    conf = config.register(cfg.CONF)
    files = []
    path = getattr(args, "config_file", None)
    if path:
        if not os.path.isfile(path):
            raise UserError(f"config file {path} not found (check --config-file)")
        try:
            config.check_file(path, *config.framework_names(conf))
        except config.ConfigError as exc:
            raise UserError(f"{exc}; nothing started") from exc
        files = [path]
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # oslo's argparse prints before exiting
            conf(args=[], project="wlbridge", default_config_files=files)
    except (Exception, SystemExit) as exc:  # oslo.config raises several kinds
        why = said.getvalue().strip().splitlines() or [str(exc)]
        raise UserError(f"bad configuration in {path}: {why[-1]}; nothing started") from exc
    for opt in config.options():
        if hasattr(args, opt.dest):
            conf.set_override(opt.dest, getattr(args, opt.dest), group=config.GROUP)
    conf.set_override("ofp_listen_host", conf.wlbridge.listen_host)
    conf.set_override("ofp_tcp_listen_port", conf.wlbridge.listen_port)
    try:
        config.check_values({opt.dest: getattr(conf.wlbridge, opt.dest)
                             for opt in config.options()})
    except config.ConfigError as exc:
        raise UserError(f"{exc}; nothing started") from exc
    return conf


def check_ports(conf) -> None:
    """Refuse (UserError) when the status or OpenFlow port is taken, before anything starts."""
    import socket

    wl = conf.wlbridge
    wanted = [("OpenFlow", wl.listen_host, wl.listen_port, "--listen-port", "listen_port")]
    if wl.status_port:
        wanted.append(("status", wl.status_host, wl.status_port, "--status-port",
                       "status_port"))
    for what, host, port, flag, key in wanted:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UserError(f"cannot listen on {host}:{port} for {what} ({exc.strerror}); "
                            f"fix {key.replace('port', 'host')}; nothing started") from exc
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise UserError(f"{what} port {host}:{port} is in use ({exc.strerror}:"
                                " another `wlbridge run`? `wlbridge status` tells); choose "
                                f"another with {flag} or `{key} =` in the config file; "
                                "nothing started") from exc
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


MALLOC_ARENAS = 2
M_ARENA_MAX = -8   # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Before any thread starts: at most `arenas` glibc malloc arenas.  glibc gives each new
    thread that allocates an arena of its own (up to 8 per core), and keeps their memory; the
    controller's threads hold the GIL when they allocate, so they gain nothing from them
    (measured at rest: 1.2-1.5 MiB less RSS with 1-2 arenas, docs/benchmarks.md).  An
    explicit ``MALLOC_ARENA_MAX`` wins; without glibc nothing changes.  Whether it did."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        return ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):
        return False


def main(args: argparse.Namespace) -> int:
    limit_malloc_arenas()
    conf = load_config(args)
    check_ports(conf)
    from wlbridge.app.persist import StateDirError, StateStore

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
    if not (getattr(args, "verbose", False) or getattr(args, "debug_libraries", False)):
        # its "loading app …" lines: a refusal is one line
        logging.getLogger(f"{FRAMEWORK}.base.app_manager").setLevel(logging.WARNING)
    mgr = app_manager.AppManager.get_instance()
    mgr.load_apps(["wlbridge_app", f"{FRAMEWORK}.controller.ofp_handler"])
    contexts = mgr.create_contexts()
    try:
        mgr.instantiate_apps(**contexts)
    except SystemExit as exc:
        raise UserError(str(exc.code)) from exc
    except OSError as exc:  # a port taken between `check_ports` and the app binding it
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise
        raise UserError(f"cannot listen: {exc.strerror}; see `wlbridge run --help` for "
                        "--status-port/--listen-port; nothing started") from exc
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
