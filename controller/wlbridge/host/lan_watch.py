"""Which LAN the station is on, as the host sees it: the source of the core's `lan_seen` and
`station_associated` events (issue 24 item 4; why these facts, see `policy.network`).

* **The identity** (`lan_of`, pure): the IPv4 subnet of the host's address on the bridge
  that holds the default route's gateway, and the gateway's MAC from the neighbour table.
  Read with netlink (pyroute2) by `LanWatch.check`, which runs in a worker of its own after
  each trigger: the start, a reassociation (the uplink's carrier back), a change of the
  host's addresses.  After a reassociation the gateway's neighbour entry is deleted and
  resolved again (a UDP datagram to its discard port makes the kernel ask by ARP), so a
  cached MAC of the last LAN's gateway is never taken for this one's; until the entry is
  resolved (the host's DHCP client may still hold the last LAN's address, whose gateway
  does not answer here) nothing is reported.
* **The hint**: the SSID the station associated with (`iw dev UPLINK link`, parsed by
  `ssid_of`), reported at once on a reassociation (`on_associated`); no ``iw`` or not a
  Wi-Fi interface: None.

Nothing here raises into the controller; one log line per LAN seen.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

LOG = logging.getLogger("wlbridge.app")

RESOLVED = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # NUD_REACHABLE|STALE|DELAY|PROBE|PERMANENT
POLL = 0.2  # seconds between two looks at the host's tables while the LAN is not known
PATIENCE = 120.0  # seconds a check goes on looking (the host's DHCP client may be slow)
MAIN_TABLE = 254
DISCARD = 9  # the UDP port the gateway is sent a datagram on (to make the kernel ARP)


def lan_of(addresses: Iterable[str], gateway: str | None,
           gateway_mac: str | None) -> tuple[str, str] | None:
    """(subnet, gateway MAC) of the LAN: the subnet of the host's IPv4 address
    (``address/prefixlen``) that holds `gateway`; None when something is missing."""
    if not gateway or not gateway_mac:
        return None
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        return None
    for text in addresses:
        try:
            iface = ipaddress.IPv4Interface(text)
        except ValueError:
            continue
        if "/" in text and gw in iface.network and iface.network.prefixlen < 32:
            return str(iface.network), gateway_mac.lower()
    return None


def ssid_of(iw_link: str) -> str | None:
    """The SSID in the output of ``iw dev IF link`` (None: not associated)."""
    for line in iw_link.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "SSID":
            return value.strip() or None
    return None


def read_ssid(uplink: str) -> str | None:
    try:
        out = subprocess.run(["iw", "dev", uplink, "link"], capture_output=True, text=True,
                             timeout=3, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return ssid_of(out)


class LanWatch:
    """Reports the LAN (`on_lan(subnet, gateway_mac, ssid)`) whenever a check finds it, and
    the SSID at each reassociation (`on_associated(ssid)`).  `spawn(fn)` runs the checking
    worker; `tables` reads ``(addresses, gateway, gateway_mac)`` of the bridge (a seam;
    `NetlinkTables` by default)."""

    def __init__(self, bridge: str, uplink: str, *,
                 on_lan: Callable[[str, str, str | None], None],
                 on_associated: Callable[[str | None], None],
                 spawn: Callable[[Callable[[], None]], object],
                 tables: Any = None, ssid: Callable[[str], str | None] = read_ssid,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 patience: float = PATIENCE) -> None:
        self.bridge, self.uplink = bridge, uplink
        self.on_lan, self.on_associated = on_lan, on_associated
        self.spawn, self.tables = spawn, tables or NetlinkTables(bridge)
        self.read_ssid, self.sleep, self.monotonic = ssid, sleep, monotonic
        self.patience = patience
        self.lock = threading.Lock()
        self.wanted = 0  # checks asked for; the worker runs while it has not done the last
        self.fresh = False  # the gateway's entry must be resolved again (a reassociation)
        self.associating = False  # a reassociation's SSID is to be read and reported
        self.ssid_due = False  # the SSID is to be read (again)
        self.running = False
        self.stopped = False
        self.ssid: str | None = None

    # ------------------------------------------------------------ triggers
    def start(self) -> None:
        self._want(fresh=False, ssid=True)

    def reassociated(self) -> None:
        """The uplink's carrier is back: the SSID at once, the LAN once the gateway answers
        (both in the worker: the caller, the netlink watcher, must not wait for ``iw``)."""
        self._want(fresh=True, ssid=True, associated=True)

    def addresses_changed(self) -> None:
        self._want(fresh=False)

    def stop(self) -> None:
        self.stopped = True

    def _want(self, fresh: bool, ssid: bool = False, associated: bool = False) -> None:
        with self.lock:
            self.wanted += 1
            self.fresh = self.fresh or fresh
            self.ssid_due = self.ssid_due or ssid
            self.associating = self.associating or associated
            if self.running or self.stopped:
                return
            self.running = True
        self.spawn(self.run)

    # -------------------------------------------------------------- worker
    def run(self) -> None:
        """Check until the LAN is found (or `patience` runs out) for the last trigger."""
        try:
            while True:
                with self.lock:
                    if self.stopped or self.wanted == 0:
                        self.running = False
                        return
                    self.wanted, fresh, self.fresh = 0, self.fresh, False
                    read, self.ssid_due = self.ssid_due, False
                    associated, self.associating = self.associating, False
                if read:
                    self.ssid = self.read_ssid(self.uplink)
                if associated:
                    try:
                        self.on_associated(self.ssid)
                    except Exception:
                        LOG.exception("reporting the association")
                self.check(fresh)
        except Exception:
            with self.lock:
                self.running = False
            LOG.exception("the LAN watch stopped: changes of LAN are no longer noticed")

    def check(self, fresh: bool) -> tuple[str, str] | None:
        """Look until the LAN is known (`fresh`: the gateway's MAC resolved anew), report it."""
        deadline = self.monotonic() + self.patience
        forgotten: str | None = None
        while not self.stopped:
            addresses, gateway, mac = self.tables.read()
            if fresh and gateway and gateway != forgotten:
                self.tables.forget(gateway)  # this gateway's MAC: asked again on this LAN
                forgotten, mac = gateway, None
            if not addresses:
                # nothing to wait for (no IPv4 address on the bridge: no DHCP lease yet, a
                # host without one): not polled -- the address's arrival (`addresses_changed`)
                # starts the next check, still fresh after a reassociation
                with self.lock:
                    self.fresh = self.fresh or fresh
                return None
            lan = lan_of(addresses, gateway, mac)
            if lan is not None:
                LOG.info("LAN %s, gateway %s (%s) at %s", lan[0], gateway, self.ssid or "no SSID",
                         lan[1])
                self.on_lan(lan[0], lan[1], self.ssid)
                return lan
            with self.lock:
                if self.wanted:  # a newer trigger: start over with it (still fresh)
                    self.fresh = self.fresh or fresh
                    return None
            if self.monotonic() >= deadline:
                LOG.warning("the LAN is not known after %.0f s (no IPv4 address, default route "
                            "or answering gateway on %s)", self.patience, self.bridge)
                return None
            if gateway:
                self.tables.probe(gateway)
            self.sleep(POLL)
        return None


class NetlinkTables:
    """The bridge's IPv4 addresses, its default gateway and the gateway's MAC (pyroute2)."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge

    def read(self) -> tuple[list[str], str | None, str | None]:
        from wlbridge.host.pyroute2_lazy import IPRoute

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.bridge)
            if not found:
                return [], None, None
            index = found[0]
            addresses = [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
                         for m in ipr.get_addr(family=socket.AF_INET, index=index)]
            # a default route through the bridge, the main table's first (a VPN or policy
            # routing may keep the LAN's in a table of its own: any table will do)
            defaults = sorted((route.get_attr("RTA_TABLE") != MAIN_TABLE,
                               route.get_attr("RTA_GATEWAY"))
                              for route in ipr.get_routes(family=socket.AF_INET, oif=index)
                              if route["dst_len"] == 0 and route.get_attr("RTA_GATEWAY"))
            gateway = defaults[0][1] if defaults else None
            mac = None
            if gateway:
                for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=index):
                    if n.get_attr("NDA_DST") == gateway and n["state"] & RESOLVED:
                        mac = n.get_attr("NDA_LLADDR")
            return addresses, gateway, mac

    def forget(self, gateway: str) -> None:
        from wlbridge.host.pyroute2_lazy import IPRoute

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.bridge)
            if not found:
                return
            try:
                ipr.neigh("del", dst=gateway, ifindex=found[0])
            except Exception:  # noqa: BLE001 - no entry: nothing to forget
                LOG.debug("no neighbour entry of %s to forget", gateway)

    def probe(self, gateway: str) -> None:
        """Make the kernel resolve the gateway (a datagram to its discard port)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(b"", (gateway, DISCARD))
            except OSError:
                pass
