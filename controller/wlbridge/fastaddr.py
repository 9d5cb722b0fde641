"""Faster address text conversion inside the framework's packet library.

os-ken's (and Ryu's) packet and OpenFlow parsers turn every MAC and IPv4 address into text
through ``lib.addrconv``, which goes through ``netaddr`` objects: ~8 µs per address, six to
ten addresses per ARP or DHCP packet-in, a third of the controller's time per packet-in.
`install` gives the framework's two converters (``addrconv.mac``, ``addrconv.ipv4``) a fast
path for the canonical cases — 6 or 4 bytes to text, ``aa:bb:cc:dd:ee:ff`` or dotted quad to
bytes — computed with ``bytes.hex``/``socket.inet_ntoa``/``inet_pton``, and hands anything
else to the original netaddr code, so results and errors are unchanged (the unit tests
compare both on random input).  The framework still parses every packet; only its address
formatting is quicker.
"""

from __future__ import annotations

import re
import socket
from types import ModuleType
from typing import Any

_MAC_TEXT = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\Z")


def _mac_class(base: type) -> type:
    class FastMac(base):  # type: ignore[misc, valid-type]
        """``addrconv.mac`` with a fast path for 6 bytes and colon-separated text."""

        def bin_to_text(self, bin: Any) -> str:
            if type(bin) is bytes and len(bin) == 6:
                return bin.hex(":")
            return super().bin_to_text(bin)

        def text_to_bin(self, text: Any) -> Any:
            if type(text) is str and len(text) == 17 and _MAC_TEXT.match(text):
                return bytes.fromhex(text.replace(":", ""))
            return super().text_to_bin(text)

    return FastMac


def _ipv4_class(base: type) -> type:
    class FastIPv4(base):  # type: ignore[misc, valid-type]
        """``addrconv.ipv4`` with a fast path for 4 bytes and dotted-quad text."""

        def bin_to_text(self, bin: Any) -> str:
            if type(bin) is bytes and len(bin) == 4:
                return socket.inet_ntoa(bin)
            return super().bin_to_text(bin)

        def text_to_bin(self, text: Any) -> Any:
            if type(text) is str and 7 <= len(text) <= 15:
                try:
                    return socket.inet_pton(socket.AF_INET, text)
                except OSError:
                    pass
            return super().text_to_bin(text)

    return FastIPv4


def install(addrconv: ModuleType) -> None:
    """Give ``addrconv.mac`` and ``addrconv.ipv4`` their fast paths (idempotent).  The
    instances keep their identity (their class is swapped for a subclass), so every
    reference the framework holds to them gets the fast path too."""
    for name, make in (("mac", _mac_class), ("ipv4", _ipv4_class)):
        conv = getattr(addrconv, name)
        if getattr(type(conv), "_wlbridge_fast", False):
            continue
        fast = make(type(conv))
        fast._wlbridge_fast = True
        conv.__class__ = fast


def originals(addrconv: ModuleType) -> dict[str, Any]:
    """Converters without the fast path, equal in configuration to the installed ones (for
    the tests that compare the two)."""
    out = {}
    for name in ("mac", "ipv4"):
        conv = getattr(addrconv, name)
        cls = type(conv)
        base = cls.__mro__[1] if getattr(cls, "_wlbridge_fast", False) else cls
        plain = object.__new__(base)
        plain.__dict__.update(conv.__dict__)
        out[name] = plain
    return out
