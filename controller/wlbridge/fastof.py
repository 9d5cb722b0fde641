"""Fast construction and serialisation of the OpenFlow matches and set-fields wlbridge sends.

os-ken's ``OFPMatch(**fields)`` and its ``serialize`` pass every field through netaddr
(about 70 us to build a match, 40 us to serialise one); a learned binding needs six
flow-mods, and a resync thousands.  The values in wlbridge's `FlowSpec`s are already in
os-ken's canonical user form (lower-case MACs, dotted IPv4, ints), so:

* `match` builds an ``OFPMatch`` straight from the fields in OXM order;
* the subclasses here (named like their os-ken parents, so that code and JSON keyed on class
  names still work) pack the OXM TLVs with `struct`, and shared instructions pack once.

The result is the same object model (tests, ofsim and logging read ``match.items()``,
``action.key``/``value``) and byte for byte the same wire format; the unit tests compare
both against os-ken's own classes.  Anything outside the fast path (an unknown field or
type, a non-canonical value) falls back to os-ken.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from .compat import ofp, parser

_HDR = struct.Struct("!I")


def _field_encoder(name: str):
    """(oxm number, encoder value -> bytes, value size) for a field, or None."""
    try:
        num, kind = ofp.oxm_get_field_info_by_name(name)
    except KeyError:
        return None
    size = getattr(kind, "size", None)
    kind_name = getattr(kind, "__name__", type(kind).__name__)
    if not isinstance(num, int) or size is None:
        return None
    if kind_name == "MacAddr" and size == 6:
        def enc(v: Any) -> bytes:
            out = bytes.fromhex(v.replace(":", ""))
            if len(out) != 6:
                raise ValueError(v)
            return out
    elif kind_name == "IPv4Addr" and size == 4:
        def enc(v: Any) -> bytes:
            if v.count(".") != 3:
                raise ValueError(v)
            return socket.inet_aton(v)
    elif kind_name == "IntDescr" and size in (1, 2, 4, 8):
        def enc(v: Any) -> bytes:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(v)
            return v.to_bytes(size, "big")
    else:
        return None
    return num, enc, size, _HDR.pack((num << 9) | size), _HDR.pack((num << 9) | 256 | 2 * size)


_ENCODERS: dict[str, Any] = {}


def _encoder(name: str):
    if name not in _ENCODERS:
        _ENCODERS[name] = _field_encoder(name)
    return _ENCODERS[name]


def oxm_tlv(name: str, value: Any) -> bytes:
    """One OXM TLV (header, value, mask) exactly as os-ken serialises it."""
    found = _encoder(name)
    if found is None:
        return _slow_tlv(name, value)
    enc, plain, masked = found[1], found[3], found[4]
    try:
        if isinstance(value, (tuple, list)):
            return masked + enc(value[0]) + enc(value[1])
        return plain + enc(value)
    except (ValueError, TypeError, OSError, OverflowError, AttributeError, IndexError):
        return _slow_tlv(name, value)


def _slow_tlv(name: str, value: Any) -> bytes:
    n, v, m = ofp.oxm_from_user(name, value)
    buf = bytearray()
    length = ofp.oxm_serialize(n, v, m, buf, 0)
    return bytes(buf[:length])


def _put(buf: bytearray, offset: int, blob: bytes) -> None:
    end = offset + len(blob)
    if len(buf) < end:
        buf += bytes(end - len(buf))
    buf[offset:end] = blob


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8 - n


class OFPMatch(parser.OFPMatch):
    """An ``OFPMatch`` built from canonical fields, serialised with `struct`."""

    def __init__(self, fields: list) -> None:
        super().__init__(_ordered_fields=fields)

    @classmethod
    def quick(cls, fields: list) -> OFPMatch:
        """``OFPMatch(fields)`` from a template of the attributes ``__init__`` sets (its
        old-API helper objects are shared: only the old API, which we never use, writes
        them)."""
        obj = cls.__new__(cls)
        obj.__dict__.update(_MATCH_TEMPLATE)
        obj.fields = []
        obj._fields2 = fields
        return obj

    def serialize(self, buf, offset):
        body = b"".join(oxm_tlv(k, v) for k, v in self._fields2)
        length = 4 + len(body)
        pad = _pad8(length)
        _put(buf, offset, struct.pack("!HH", ofp.OFPMT_OXM, length) + body + bytes(pad))
        self.length = length
        return length + pad


class OFPInstructionActions(parser.OFPInstructionActions):
    """``OFPInstructionActions`` that packs itself once: our instruction objects are shared
    between flow-mods (see `pipeline._instructions`) and never change."""

    def serialize(self, buf, offset):
        packed = self.__dict__.get("_packed")
        if packed is None:
            tmp = bytearray()
            super().serialize(tmp, 0)
            packed = self.__dict__["_packed"] = bytes(tmp[:self.len])
        _put(buf, offset, packed)


class OFPActionSetField(parser.OFPActionSetField):
    """``OFPActionSetField(field=value)`` serialised with `struct`."""

    def serialize(self, buf, offset):
        tlv = oxm_tlv(self.key, self.value)
        self.len = 4 + len(tlv) + _pad8(4 + len(tlv))
        _put(buf, offset, struct.pack("!HH", self.type, self.len) + tlv
             + bytes(self.len - 4 - len(tlv)))


_ORDER: dict[tuple[str, ...], tuple[int, ...] | None] = {}


def _canonical(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_canonical(v) for v in value)
    return not isinstance(value, str) or value == value.lower()


def oxm_order(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """Indexes of `names` in OXM order (how os-ken orders a match), or None when a field
    is not one the fast path encodes."""
    order = _ORDER.get(names, ())
    if order == ():
        nums = [_encoder(n) for n in names]
        order = None if None in nums else tuple(
            sorted(range(len(names)), key=lambda i: nums[i][0]))  # type: ignore[index]
        _ORDER[names] = order
    return order


def match(fields: tuple[tuple[str, Any], ...], canonical: bool = False,
          order: tuple[int, ...] | None = None):
    """The ``OFPMatch`` of `fields` ((name, value) pairs).  `canonical`: the caller vouches
    that every value is in os-ken's canonical user form (else it is checked); `order`: the
    fields' `oxm_order`, if the caller knows it."""
    if order is None:
        order = oxm_order(tuple([name for name, _ in fields]))
    if order is None or not (canonical or all(_canonical(v) for _, v in fields)):
        return parser.OFPMatch(**dict(fields))
    return OFPMatch.quick([fields[i] for i in order])


def set_field(name: str, value: Any):
    """``OFPActionSetField(name=value)``, fast when the field and value allow it."""
    if _encoder(name) is None or not _canonical(value):
        return parser.OFPActionSetField(**{name: value})
    return OFPActionSetField(**{name: value})


_MATCH_TEMPLATE = dict(OFPMatch([]).__dict__)
_FLOW_MOD_TEMPLATE = dict(parser.OFPFlowMod(datapath=None).__dict__)


def flow_mod(**fields: Any):
    """``OFPFlowMod(datapath=None, **fields)`` (an exact ``OFPFlowMod``) built from a
    template of the attributes its ``__init__`` sets: the same object for less than a
    third of the cost.  ``match`` and ``instructions`` must be given."""
    msg = parser.OFPFlowMod.__new__(parser.OFPFlowMod)
    d = msg.__dict__
    d.update(_FLOW_MOD_TEMPLATE)
    for name in fields:
        if name not in _FLOW_MOD_TEMPLATE:
            raise TypeError(f"OFPFlowMod has no attribute {name!r}")
    d.update(fields)
    return msg
