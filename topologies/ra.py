"""Router advertisements in the emulated LAN: the router's radvd (test tooling).

radvd, not dnsmasq, sends the RAs (dnsmasq only serves DHCPv6), so the RA side can be set as real
LANs do: the prefix with the autonomous flag (SLAAC), the M/O flags pointing at stateful or
stateless DHCPv6, and answers to Router Solicitations sent unicast to the soliciting host
(``AdvRASolicitedUnicast``: radvd sends them to the MAC in the RS's source link-layer option);
``unsolicited: False`` turns the periodic multicast RAs off (``UnicastOnly``), so that an address
can only come from the answer to a solicitation.
The router is never a default router (lifetime 0): no namespace, the root one included, gets
a default route from the emulated LAN, as its DHCPv4 sends no router option.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

#: Lifetimes of the advertised prefix (seconds): long enough for any test.
VALID_LIFETIME = 3600
PREFERRED_LIFETIME = 1800


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def radvd_conf(ifname: str, subnet6: str, conf: dict) -> str:
    """radvd.conf for one interface advertising one /64."""
    lo, hi = conf.get("interval", (3, 6))
    net = ipaddress.ip_network(subnet6)
    return f"""interface {ifname} {{
    AdvSendAdvert on;
    MinRtrAdvInterval {lo};
    MaxRtrAdvInterval {hi};
    AdvDefaultLifetime 0;
    AdvManagedFlag {_on(conf.get("managed", False))};
    AdvOtherConfigFlag {_on(conf.get("other", False))};
    AdvRASolicitedUnicast {_on(conf.get("unicast_solicited", True))};
    UnicastOnly {_on(not conf.get("unsolicited", True))};
    AdvSourceLLAddress on;
    prefix {net} {{
        AdvOnLink on;
        AdvAutonomous {_on(conf.get("autonomous", True))};
        AdvValidLifetime {VALID_LIFETIME};
        AdvPreferredLifetime {PREFERRED_LIFETIME};
    }};
}};
"""


def radvd_argv(conf_path: Path, workdir: Path) -> list[str]:
    """radvd in the foreground, logging to a file, state under workdir (no privilege drop:
    the namespace is the isolation)."""
    return ["radvd", "--nodaemon", "--config", str(conf_path),
            "--pidfile", str(workdir / "radvd.pid"),
            "--logmethod", "logfile", "--logfile", str(workdir / "radvd.log"),
            "--debug", "3"]
