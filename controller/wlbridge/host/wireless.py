"""The host's Wi-Fi interfaces: which one is the associated managed-mode station.

Read-only.  `read_links` lists every cfg80211 interface (``/sys/class/net/IF/wireless`` or
``phy80211``) with its mode and 4-address flag from nl80211 (pyroute2's ``IW``; without
nl80211, e.g. no cfg80211 module or no permission, the mode is unknown), its operstate (a
managed station is ``up`` once associated and authorised: that is what the kernel reports
after the 4-way handshake) and its driver (``/sys/class/net/IF/device/driver``).
`pick_station` is pure: the one associated station, or a `UserError` saying why not
(``--uplink auto``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from wlbridge.errors import UserError

SYS_NET = "/sys/class/net"
STATION = "station"         # nl80211's NL80211_IFTYPE_STATION ("managed" in iw's words)
# nl80211 interface types (linux/nl80211.h, enum nl80211_iftype)
IFTYPES = {1: "adhoc", 2: STATION, 3: "AP", 4: "AP/VLAN", 5: "WDS", 6: "monitor",
           7: "mesh point", 8: "P2P-client", 9: "P2P-GO", 10: "P2P-device", 11: "OCB",
           12: "NAN"}


# Realtek's out-of-tree vendor drivers ship a MAC-translation layer ("NAT25", made for
# bridging a station) that rewrites addresses wlbridge already rewrote.  Their modules are
# named after the chip without the in-tree drivers' "rtl"/"rtw" prefix (8188eu, 8192eu,
# 88x2bu, 8821cu, 8812au, 8189fs, ...); a few packagings add it (rtl88x2bu, rtl8812au).
# The in-tree rtl8xxxu, rtlwifi (rtl8192cu, rtl8188ee, ...), rtw88_* and rtw89_* do no NAT25.
NAT25_DRIVER = re.compile(r"^(r|rtl)?(8[0-9]{2}[0-9a-z]{1,2}|88x[0-9a-z]{2})(u|s|e)$", re.IGNORECASE)
IN_TREE_REALTEK = re.compile(r"^(rtl8xxxu|rtl8192cu|rtl8192ce|rtl8192se|rtl8192de|rtl8723ae|"
                             r"rtl8723be|rtl8188ee|rtl8821ae|rtl8192ee|"
                             r"rtw88_.*|rtw89_.*)$", re.IGNORECASE)
NAT25_FIX = ("use the in-tree driver (rtl8xxxu, rtw88, rtw89) or build the vendor driver "
             "without CONFIG_BR_EXT")
FOUR_ADDR_FIX = "iw dev {uplink} set 4addr off, to use wlbridge"


def nat25_driver(driver: str | None) -> bool:
    """Is `driver` a Realtek vendor driver with its own MAC translation (NAT25)?"""
    return bool(driver) and bool(NAT25_DRIVER.match(driver or "")) and not \
        IN_TREE_REALTEK.match(driver or "")


@dataclass(frozen=True)
class WirelessLink:
    name: str
    iftype: str | None = None       # IFTYPES value; None: nl80211 could not say
    operstate: str = "unknown"      # /sys/class/net/IF/operstate
    driver: str | None = None       # kernel module driving the device
    four_addr: bool | None = None   # nl80211 NL80211_ATTR_4ADDR; None: unknown

    @property
    def associated_station(self) -> bool:
        return self.iftype in (STATION, None) and self.operstate == "up"


def pick_station(links: Sequence[WirelessLink]) -> str:
    """The associated managed-mode station among `links` (`--uplink auto`)."""
    found = [link for link in links if link.associated_station]
    if len(found) == 1:
        return found[0].name
    if found:
        names = ", ".join(link.name for link in found)
        raise UserError(f"--uplink auto: several associated Wi-Fi stations ({names}); name "
                        "one with --uplink; nothing changed")
    seen = ", ".join(f"{link.name} ({link.iftype or 'mode unknown'}, {link.operstate})"
                     for link in links) or "none"
    raise UserError(f"--uplink auto: no associated Wi-Fi station (Wi-Fi interfaces: {seen}); "
                    "associate it first or name it with --uplink; nothing changed")


# ---- reading the host --------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def is_wireless(name: str, sys_net: str = SYS_NET) -> bool:
    return (os.path.isdir(f"{sys_net}/{name}/wireless")
            or os.path.exists(f"{sys_net}/{name}/phy80211"))


def driver(name: str, sys_net: str = SYS_NET) -> str | None:
    try:
        return os.path.basename(os.readlink(f"{sys_net}/{name}/device/driver"))
    except OSError:
        return None


def nl80211_modes() -> dict[str, tuple[str | None, bool | None]]:
    """{interface: (mode, 4addr)} from nl80211; {} when nl80211 cannot be asked."""
    try:
        from pyroute2.iwutil import IW

        iw = IW()
    except Exception:  # noqa: BLE001 - no nl80211 family (no cfg80211), no permission, ...
        return {}
    modes: dict[str, tuple[str | None, bool | None]] = {}
    try:
        for msg in iw.get_interfaces_dump():
            name = msg.get_attr("NL80211_ATTR_IFNAME")
            iftype = msg.get_attr("NL80211_ATTR_IFTYPE")
            four = msg.get_attr("NL80211_ATTR_4ADDR")
            if name:
                modes[name] = (IFTYPES.get(iftype) if iftype is not None else None,
                               None if four is None else _flag(four))
    except Exception:  # noqa: BLE001 - a dump that fails says nothing
        return {}
    finally:
        iw.close()
    return modes


def _flag(value: object) -> bool:
    if isinstance(value, str):          # pyroute2 decodes the u8 as hex text ("01")
        return value.replace(":", "").strip("0x") not in ("", "0")
    return bool(value)


def read_link(name: str, modes: dict[str, tuple[str | None, bool | None]],
              sys_net: str = SYS_NET) -> WirelessLink:
    iftype, four = modes.get(name, (None, None))
    return WirelessLink(name, iftype, _read(f"{sys_net}/{name}/operstate") or "unknown",
                        driver(name, sys_net), four)


def read_links(sys_net: str = SYS_NET) -> list[WirelessLink]:
    """Every Wi-Fi interface of the host."""
    try:
        names = sorted(os.listdir(sys_net))
    except OSError:
        return []
    wireless = [n for n in names if is_wireless(n, sys_net)]
    modes = nl80211_modes() if wireless else {}
    return [read_link(n, modes, sys_net) for n in wireless]


def translation(uplink: str, link: WirelessLink | None) -> dict:
    """What `wlbridge status` says about the uplink's own address translation (the same
    facts as `wlbridge doctor`'s driver and 4addr checks): its driver, whether that is a
    NAT25 vendor driver (it rewrites what wlbridge rewrote: translated twice), its
    4-address flag (on: an AP that accepts it bridges the guests itself, no translation is
    needed), and what to do (``advice``: [] when nothing)."""
    if link is None:
        return {"wireless": False, "driver": None, "nat25": False, "four_addr": None,
                "advice": []}
    nat25 = nat25_driver(link.driver)
    advice = []
    if nat25:
        advice.append(f"{link.driver} is a Realtek vendor driver with its own MAC translation "
                      f"(NAT25), which rewrites what wlbridge rewrote: {NAT25_FIX}")
    if link.four_addr:
        advice.append("4-address mode is on: an AP that accepts it bridges the guests itself "
                      "(a plain bridge would do): " + FOUR_ADDR_FIX.format(uplink=uplink))
    return {"wireless": True, "driver": link.driver, "nat25": nat25,
            "four_addr": link.four_addr, "advice": advice}


_SEEN: dict[str, tuple[float, dict]] = {}


def uplink_translation(uplink: str, now: float, ttl: float = 30.0) -> dict:
    """`translation` of the running controller's uplink, read from the host at most every
    `ttl` seconds (nl80211 and sysfs).  Never raises."""
    seen = _SEEN.get(uplink)
    if seen is not None and now - seen[0] < ttl:
        return seen[1]
    try:
        link = (read_link(uplink, nl80211_modes()) if is_wireless(uplink) else None)
        fields = translation(uplink, link)
    except Exception as exc:  # noqa: BLE001 - status must answer anyway
        fields = {"wireless": None, "error": str(exc), "advice": []}
    _SEEN[uplink] = (now, fields)
    return fields


def resolve_uplink(value: str | None) -> str | None:
    """`value`, or for ``auto`` the associated station (`UserError` when there is not one)."""
    if value != "auto":
        return value
    return pick_station(read_links())
