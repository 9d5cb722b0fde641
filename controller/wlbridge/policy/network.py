"""Which LAN the station is on, and what a change of LAN means (issue 24 item 4).

**The identity of a LAN** is its IPv4 subnet and its default gateway's MAC address, as the
host learns them (its address on the bridge, the default route's gateway and that
gateway's neighbour entry, `wlbridge.host.lan_watch`).  Why these and not the Wi-Fi names:

* the SSID is not an identity: one SSID names many networks (every "FRITZ!Box 7590",
  "eduroam" at every university), and one LAN often has several SSIDs (a 2.4 GHz and a
  5 GHz name, a guest network bridged in);
* the BSSID changes at every roam between the access points of one network;
* the subnet alone is not one either (most home LANs are 192.168.0.0/24 or 192.168.1.0/24);
  the gateway's MAC is the router's own (or a VRRP/HSRP virtual MAC, as stable) and comes
  with the LAN, whatever the access point or SSID.

So the SSID is a *hint* only: after the station was away (the uplink lost its carrier), the
guests' addresses are announced again at once when the station reassociates with the SSID
of the LAN last confirmed (a roam, a resume: guests reachable within a second), and held
back otherwise until the LAN is known (`lan_seen`).  Until a first LAN has been seen
(no `lan_watch` running) nothing is held: the controller announces as it always did.

**On a change of LAN** the old LAN's bindings are forgotten without being announced
(`Unbind` "lan-changed", no `Announce`), their addresses are refused to guests that still
use them (`LeaveLan`: no ARP or IPv4 frame from them reaches the new LAN, until a DHCP
server of the new LAN hands one out), and every guest port's carrier is bounced
(`Bounce`: an OpenFlow port-mod down, up again `BOUNCE_DOWN` seconds later) so the
guests' DHCP clients start over.  Coming back to the first LAN is a change like any other.

`LanState` keeps what this policy remembers (the confirmed LAN, whether the station was
away since, what the hint said); like the other policies it reads the model and returns
effects, and holds no reference to the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wlbridge.model.state import Model
from wlbridge.policy.effects import Announce, Bounce, Effect, LeaveLan, Unbind
from wlbridge.telemetry import Telemetry

BOUNCE_DOWN = 1.0  # seconds a guest port's carrier stays down when the LAN changed


@dataclass(frozen=True)
class Lan:
    """A LAN as the host sees it: its IPv4 subnet (``192.168.1.0/24``) and its gateway's MAC;
    `ssid`, when known, a hint (see the module docstring)."""

    subnet: str
    gateway_mac: str
    ssid: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.subnet, self.gateway_mac.lower())

    def describe(self) -> str:
        ssid = f" (SSID {self.ssid!r})" if self.ssid else ""
        return f"{self.subnet} via gateway {self.gateway_mac.lower()}{ssid}"


class LanState:
    """What the controller knows of the LAN the station is on."""

    def __init__(self) -> None:
        self.lan: Lan | None = None  # the LAN last confirmed
        self.since: float | None = None  # when the station first saw it (this time)
        self.changes = 0  # changes of LAN seen
        self.away = False  # the station lost its carrier since `lan` was confirmed
        self.hint_ok = False  # it came back on the SSID of `lan` (announcing is allowed)
        self.held = False  # an announcement was held back while away

    def may_announce(self) -> bool:
        """May the guests' addresses be announced now?  Not while the station may be on
        another LAN (it was away and no hint or identity says it is back on this one)."""
        return self.lan is None or not self.away or self.hint_ok

    def hold(self) -> None:
        """An announcement was not made (`may_announce` said no): make it once the LAN is
        confirmed the same."""
        self.held = True

    def view(self, now: float) -> dict[str, Any] | None:
        """The LAN for `wlbridge status` (None: not known)."""
        if self.lan is None:
            return None
        return {"subnet": self.lan.subnet, "gateway_mac": self.lan.gateway_mac.lower(),
                "ssid": self.lan.ssid, "since": self.since,
                "confirmed": not self.away, "changes": self.changes}


def uplink_lost(state: LanState) -> None:
    """The uplink lost its carrier (disassociation, sleep, the radio gone): the next LAN may
    be another one."""
    if state.lan is not None:
        state.away = True
        state.hint_ok = False


def associated(state: LanState, ssid: str | None, tel: Telemetry) -> list[Effect]:
    """The station associated with `ssid` (None: not known).  The SSID of the confirmed LAN
    lets the held announcement go at once; the identity (`lan_seen`) has the last word."""
    if state.lan is None or not state.away or not ssid or ssid != state.lan.ssid:
        return []
    state.hint_ok = True
    if state.held:
        state.held = False
        tel.log.info("back on SSID %r: announcing the guests", ssid)
        return [Announce()]
    return []


def lan_seen(state: LanState, model: Model, lan: Lan, tel: Telemetry,
             now: float) -> list[Effect]:
    """The host sees the station on `lan`.  The same LAN as before: announce what was held
    back.  Another one: forget the old LAN's bindings (without announcing them), refuse their
    addresses, bounce the guests' ports so their DHCP clients start over."""
    before = state.lan
    held, state.held = state.held, False
    state.away, state.hint_ok = False, False
    if before is not None and before.key == lan.key:
        state.lan = lan if lan.ssid else Lan(lan.subnet, lan.gateway_mac, before.ssid)
        return [Announce()] if held else []
    state.lan, state.since = lan, now
    if before is None:
        tel.log.info("the station is on LAN %s", lan.describe())
        return [Announce()] if held else []
    state.changes += 1
    tel.bump("lan.changes")
    old = sorted(model.bindings)
    tel.log.warning("the station moved from LAN %s to LAN %s: forgetting %d guest addresses "
                    "of the old one, the guests' ports bounced so they ask again",
                    before.describe(), lan.describe(), len(old))
    effects: list[Effect] = [Unbind(ip, "lan-changed") for ip in old]
    effects.append(LeaveLan(frozenset(old)))
    if model.guests:
        effects.append(Bounce(tuple(sorted(model.guests))))
    return effects
