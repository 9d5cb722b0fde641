"""Mininet custom topology: the emulated Wi-Fi LAN, with wlbridge as the remote controller.

    sudo mn --custom topologies/mininet_wifi.py --topo wifilan,guests=3 \\
        --controller remote,ip=127.0.0.1,port=6653

``wifilan`` parameters: guests=N, ap_m2u=1, dhcp=dnsmasq|isc, ipv6=1, datapath=user|kernel,
switch=NAME, prefix=PREFIX (see `topologies.mnlan.WifiLan`, and docs/mininet.md).  From Python:
``from topologies.mininet_wifi import WifiLan``; ``Mininet(topo=WifiLan(guests=2), ...)``.

`mn` runs Debian's python3 and executes this file (no ``__file__``): the repository root is
put on sys.path from the file's own code object.  Every name defined here lands in `mn`'s
globals (that is how `mn --custom` works), so this file defines only ``topos``, ``WifiLan`` and
names `mn` already has.
"""

import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    globals().get("__file__") or inspect.currentframe().f_code.co_filename))))

from topologies.mnlan import WifiLan

topos = {"wifilan": WifiLan}

del inspect
