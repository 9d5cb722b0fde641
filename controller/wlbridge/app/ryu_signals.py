"""Stopping cleanly on SIGTERM and Ctrl-C under an eventlet hub (``ryu-manager``).

ryu-manager closes its apps (so `WlBridgeApp.close` saves the state) only when
KeyboardInterrupt reaches its main greenlet.  SIGTERM's default action kills the process
without that, and a KeyboardInterrupt raised by a signal lands in whichever greenthread runs,
where Ryu's hub may log and swallow it.  So the handlers installed here only note the signal
(a second one acts as by default), and a watcher greenthread throws KeyboardInterrupt into the
main greenlet at a safe point, as ``eventlet.kill`` does.  Handlers installed by someone else
(``wlbridge run``) are left alone; with native threads (os-ken) nothing is installed.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

LOG = logging.getLogger("wlbridge.app")


def stop_on_signals(hub: Any, stop: threading.Event) -> dict[int, Any]:
    """Install the handlers (see above); returns what they replaced, for `restore_signals`.
    The watcher ends when `stop` is set."""
    handlers: dict[int, Any] = {}
    if getattr(hub, "HUB_TYPE", None) != "eventlet":
        return handlers
    import eventlet
    import greenlet

    main = greenlet.getcurrent()
    if main.parent is not None:  # not instantiated from the main greenlet
        return handlers
    caught: list[int] = []

    def note(signum, _frame) -> None:
        caught.append(signum)
        signal.signal(signum, signal.SIG_DFL)

    for sig, default in ((signal.SIGTERM, signal.SIG_DFL),
                         (signal.SIGINT, signal.default_int_handler)):
        try:
            if signal.getsignal(sig) is default:
                signal.signal(sig, note)
                handlers[sig] = default
        except ValueError:  # not the main thread
            return handlers
    if not handlers:
        return handlers

    def watch() -> None:
        while not caught:
            if stop.is_set():
                return
            hub.sleep(0.2)
        LOG.info("signal %d: stopping", caught[0])
        if not main.dead:
            eventlet.kill(main, KeyboardInterrupt)

    hub.spawn(watch)
    return handlers


def restore_signals(handlers: dict[int, Any]) -> None:
    """Put back the handlers `stop_on_signals` replaced."""
    for sig, default in handlers.items():
        try:
            signal.signal(sig, default)
        except ValueError:  # not the main thread
            pass
