"""A second `mn --custom` file for the tests (after topologies/mininet_wifi.py).

When `mn` fails or gets Ctrl-C it runs Mininet's cleanup, which kills every ping and
ryu-manager and deletes every OVS bridge and every *-ethN link on the machine, other tests'
included.  A custom file's names replace `mn`'s globals, so this one replaces that cleanup
with the topology's own (what this topology started, its files) and deletes only the test's
bridge (MN_TEST_BRIDGE).
"""

import os as _os
import subprocess as _subprocess

from topologies.mnlan import cleanup_leftovers as _leftovers


def cleanup():
    bridge = _os.environ.get("MN_TEST_BRIDGE")
    _leftovers(bridge)
    if bridge:
        _subprocess.run(["ovs-vsctl", "--if-exists", "del-br", bridge], check=False)
