"""Flow cookies: what a flow is for, which guest port it serves, which generation installed it.

Layout of the 64-bit cookie (most significant first)::

    | magic 16 bits 0x574c ("WL") | purpose 8 | generation 16 | subject 24 |

* purpose: a `Purpose` tag (reflection drop, DHCP, guest IP steering, ...).
* generation: bumped on every switch (re)connection.  Flows are installed under
  the new generation, then flows of older generations are deleted by cookie mask
  (make before break, never a flush).
* subject: the OpenFlow port number of the guest a flow belongs to (0 for flows
  that belong to no single guest), so all flows of a guest go with one
  delete-by-cookie-mask.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

MAGIC = 0x574C
_MAGIC_SHIFT = 48
_PURPOSE_SHIFT = 40
_GEN_SHIFT = 24
MAGIC_MASK = 0xFFFF << _MAGIC_SHIFT
PURPOSE_MASK = 0xFF << _PURPOSE_SHIFT
GEN_MASK = 0xFFFF << _GEN_SHIFT
SUBJECT_MASK = 0xFFFFFF
MAX_GENERATION = 0xFFFF
MAX_SUBJECT = 0xFFFFFF


class Purpose(enum.IntEnum):
    """Why a flow exists (readable in `wlbridge flows`)."""

    PIPELINE = 1  # table plumbing: classification, table misses
    REFLECT = 2  # drop our own frames reflected by the AP
    EAPOL = 3  # 802.1X: station's only, never a guest's
    DHCP = 4  # DHCP messages to the controller
    GROUP = 5  # broadcast/multicast delivery (incl. AP unicast-converted)
    GUEST_PORT = 6  # per guest port: source MAC check, learning triggers
    GUEST_IP = 7  # per bound guest IP: ingress steering, egress source check
    GUEST_MAC = 8  # local delivery to a guest's MAC
    UPLINK_OUT = 9  # source MAC / ARP SHA rewrite towards the uplink
    LEARN = 10  # packet-in triggers for learning
    CONFLICT = 11  # uplink ARP claiming a guest IP


class Cookie(NamedTuple):
    purpose: Purpose
    generation: int
    subject: int = 0

    def encode(self) -> int:
        return make(self.purpose, self.generation, self.subject)


def make(purpose: Purpose, generation: int, subject: int = 0) -> int:
    """The cookie for a flow."""
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"generation {generation} out of range")
    if not 0 <= subject <= MAX_SUBJECT:
        raise ValueError(f"subject {subject} out of range")
    return (
        (MAGIC << _MAGIC_SHIFT)
        | (int(purpose) << _PURPOSE_SHIFT)
        | (generation << _GEN_SHIFT)
        | subject
    )


def decode(cookie: int) -> Cookie | None:
    """The parts of a wlbridge cookie, or None for a cookie that is not ours."""
    if (cookie & MAGIC_MASK) >> _MAGIC_SHIFT != MAGIC:
        return None
    try:
        purpose = Purpose((cookie & PURPOSE_MASK) >> _PURPOSE_SHIFT)
    except ValueError:
        return None
    return Cookie(purpose, (cookie & GEN_MASK) >> _GEN_SHIFT, cookie & SUBJECT_MASK)


def generation_match(generation: int) -> tuple[int, int]:
    """(cookie, mask) selecting every wlbridge flow of one generation."""
    return (MAGIC << _MAGIC_SHIFT) | (generation << _GEN_SHIFT), MAGIC_MASK | GEN_MASK


def subject_match(subject: int) -> tuple[int, int]:
    """(cookie, mask) selecting every wlbridge flow of one guest port, any generation."""
    return (MAGIC << _MAGIC_SHIFT) | subject, MAGIC_MASK | SUBJECT_MASK


def purpose_match(purpose: Purpose) -> tuple[int, int]:
    """(cookie, mask) selecting every wlbridge flow of one purpose, any generation."""
    return ((MAGIC << _MAGIC_SHIFT) | (int(purpose) << _PURPOSE_SHIFT),
            MAGIC_MASK | PURPOSE_MASK)


def ours_match() -> tuple[int, int]:
    """(cookie, mask) selecting every wlbridge flow."""
    return MAGIC << _MAGIC_SHIFT, MAGIC_MASK


def describe(cookie: int) -> str:
    """Human-readable name of a cookie: `guest_ip/gen3/port5`."""
    c = decode(cookie)
    if c is None:
        return f"foreign:{cookie:#x}"
    text = f"{c.purpose.name.lower()}/gen{c.generation}"
    if c.subject:
        text += f"/port{c.subject}"
    return text
