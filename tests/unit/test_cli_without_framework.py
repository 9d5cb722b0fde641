"""`wlbridge --help` on a Python without os-ken or Ryu (a plain `pip install .` on 3.9).

A child Python whose imports of os_ken, ryu, oslo_config and eventlet fail, as where they are
not installed: `--help` lists every command (those that need the framework marked), doctor's
and install-service's parsers work, and a command that needs the framework refuses in one
line with exit status 2.  (`make check-install` does a real install; issue 24 item 6.)
"""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('os_ken', 'ryu', 'oslo_config', 'eventlet'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
from wlbridge.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def wlbridge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_help_works_and_marks_what_needs_the_framework() -> None:
    res = wlbridge("--help")
    assert res.returncode == 0, res.stderr
    for name in ("setup", "run", "status", "doctor", "install-service"):
        assert name in res.stdout
    assert "(unavailable: needs os-ken or Ryu)" in res.stdout
    assert wlbridge("doctor", "--help").returncode == 0
    assert wlbridge("install-service", "--help").returncode == 0


def test_a_command_that_needs_the_framework_refuses_in_one_line() -> None:
    res = wlbridge("run", "--bridge", "br-x")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        ("wlbridge run: no module named ryu: needs os-ken (Python >= 3.10) or Ryu 4.34 "
        "(pip install 'wlbridge[ryu]')")]
