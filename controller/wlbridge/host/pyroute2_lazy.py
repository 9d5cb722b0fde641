"""pyroute2 without its package ``__init__`` until a name from it is asked for.

``import pyroute2`` (0.9) imports every part of the library at once -- IPDB, NDB (with
sqlite3), conntrack, IPVS, nl80211, WireGuard, plan9, ... -- 6 MiB of the controller's
resident memory (measured: 22.0 MiB for ``import pyroute2``, 15.9 MiB for the RTNL part the
controller uses) for code it never runs.  `install` registers the package module with its
search path but without running its ``__init__``: submodules (``pyroute2.iproute.linux``,
``pyroute2.netlink.exceptions``) import as usual, and the first ``from pyroute2 import X``
(or ``pyroute2.X``) runs the real ``__init__`` into the same module, so any other user of
pyroute2 in the process gets the whole library as before.  A pyroute2 already imported is
left as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

_LOCK = threading.RLock()


def install() -> None:
    """Register a lazy ``pyroute2`` package (see the module docstring); idempotent."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return                      # not installed: the importing module says so
    module = importlib.util.module_from_spec(spec)
    done = False

    def __getattr__(name: str) -> Any:
        nonlocal done
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")
        try:        # a submodule (``from pyroute2 import config`` inside pyroute2 itself)
            return importlib.import_module(f"pyroute2.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyroute2.{name}":
                raise
        with _LOCK:
            if not done:
                done = True
                spec.loader.exec_module(module)      # the real __init__, in this module
            if name in module.__dict__:
                return module.__dict__[name]
        raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")

    module.__getattr__ = __getattr__       # type: ignore[method-assign]
    module.lazy_init = True                # type: ignore[attr-defined] - for tests
    sys.modules["pyroute2"] = module


install()

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError

__all__ = ["IPRoute", "NetlinkDumpInterrupted", "NetlinkError", "install"]
