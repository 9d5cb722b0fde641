"""The controller loads only the parts of pyroute2 it uses (wlbridge.host.pyroute2_lazy), and
the rest of pyroute2 still works for anyone else in the process.  In a fresh interpreter:
the test process has imported pyroute2 already."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import wlbridge.host.pyroute2_lazy as lazy
import wlbridge.host.hostnet, wlbridge.host.host_events
heavy = sorted(m for m in ("pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.conntrack",
                           "sqlite3") if m in sys.modules)
assert not heavy, heavy
import pyroute2
assert pyroute2.lazy_init and lazy.IPRoute.__module__ == "pyroute2.iproute.linux"
from pyroute2 import NDB, IPRoute, NetlinkError     # the whole library, on demand
assert "pyroute2.ndb.main" in sys.modules and IPRoute is lazy.IPRoute
assert NetlinkError is lazy.NetlinkError and pyroute2.__version__
try:
    pyroute2.NoSuchThing
except AttributeError:
    pass
else:
    raise AssertionError("no AttributeError")
print("ok")
"""


def test_only_the_rtnl_part_loads_and_the_rest_on_demand() -> None:
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr
