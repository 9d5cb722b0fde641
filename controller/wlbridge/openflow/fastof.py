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

from wlbridge.compat import ofp, parser

_HDR = struct.Struct("!I")
_MATCH_HDR = struct.Struct("!HH")


def _field_encoder(name: str):
    """(oxm number, value -> OXM TLV) for a field os-ken encodes as a MAC, an IPv4 address
    or an integer of fixed size, or None.  The plain (unmasked) value of the field's type
    takes one call; anything else goes through `enc`, and to os-ken if that fails."""
    try:
        num, kind = ofp.oxm_get_field_info_by_name(name)
    except KeyError:
        return None
    size = getattr(kind, "size", None)
    kind_name = getattr(kind, "__name__", type(kind).__name__)
    if not isinstance(num, int) or size is None:
        return None
    plain, masked = _HDR.pack((num << 9) | size), _HDR.pack((num << 9) | 256 | 2 * size)
    if kind_name == "MacAddr" and size == 6:
        def enc(v: Any) -> bytes:
            out = bytes.fromhex(v.replace(":", ""))
            if len(out) != 6:
                raise ValueError(v)
            return out

        def tlv(value: Any) -> bytes:
            if type(value) is str and len(value) == 17 and value.count(":") == 5:
                try:
                    return plain + bytes.fromhex(value.replace(":", ""))
                except ValueError:
                    pass
            return other(value)
    elif kind_name == "IPv4Addr" and size == 4:
        def enc(v: Any) -> bytes:
            if v.count(".") != 3:
                raise ValueError(v)
            return socket.inet_aton(v)

        def tlv(value: Any) -> bytes:
            if type(value) is str and value.count(".") == 3:
                try:
                    return plain + socket.inet_aton(value)
                except OSError:
                    pass
            return other(value)
    elif kind_name == "IntDescr" and size in (1, 2, 4, 8):
        def enc(v: Any) -> bytes:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(v)
            return v.to_bytes(size, "big")

        def tlv(value: Any) -> bytes:
            if type(value) is int and 0 <= value < 1 << 8 * size:
                return plain + value.to_bytes(size, "big")
            return other(value)
    else:
        return None

    def other(value: Any) -> bytes:
        try:
            if isinstance(value, (tuple, list)):
                return masked + enc(value[0]) + enc(value[1])
            return plain + enc(value)
        except (ValueError, TypeError, OSError, OverflowError, AttributeError, IndexError):
            return os_ken_tlv(name, value)
    return num, tlv


_ENCODERS: dict[str, Any] = {}
_TLVS: dict[str, Any] = {}  # field name -> its fast TLV function (fields that have one)


def _encoder(name: str):
    try:
        return _ENCODERS[name]
    except KeyError:
        found = _ENCODERS[name] = _field_encoder(name)
        if found is not None:
            _TLVS[name] = found[1]
        return found


def oxm_tlv(name: str, value: Any) -> bytes:
    """One OXM TLV (header, value, mask) exactly as os-ken serialises it."""
    found = _ENCODERS.get(name) or _encoder(name)
    return found[1](value) if found else os_ken_tlv(name, value)


def os_ken_tlv(name: str, value: Any) -> bytes:
    """One OXM TLV serialised by the framework itself: the slow way `oxm_tlv` falls back to
    (odd values, fields without a fast encoder), and the reference the tests compare with."""
    n, v, m = ofp.oxm_from_user(name, value)
    buf = bytearray()
    length = ofp.oxm_serialize(n, v, m, buf, 0)
    return bytes(buf[:length])


def _put(buf: bytearray, offset: int, blob: bytes) -> None:
    if offset == len(buf):  # the usual case: appending
        buf += blob
        return
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
        tlvs = _TLVS
        body = b"".join([tlvs[k](v) if k in tlvs else oxm_tlv(k, v) for k, v in self._fields2])
        length = 4 + len(body)
        pad = _pad8(length)
        _put(buf, offset, _MATCH_HDR.pack(ofp.OFPMT_OXM, length) + body + bytes(pad))
        self.length = length
        return length + pad


class _PackedOnce:
    """Pack once: our instruction objects are shared between flow-mods (see
    `pipeline._instructions`) and never change."""

    def serialize(self, buf, offset):
        packed = self.__dict__.get("_packed")
        if packed is None:
            tmp = bytearray()
            super().serialize(tmp, 0)  # type: ignore[misc]
            packed = self.__dict__["_packed"] = bytes(tmp[:self.len])  # type: ignore[attr-defined]
        _put(buf, offset, packed)


class OFPInstructionActions(_PackedOnce, parser.OFPInstructionActions):
    """``OFPInstructionActions``, packed once."""


class OFPInstructionGotoTable(_PackedOnce, parser.OFPInstructionGotoTable):
    """``OFPInstructionGotoTable``, packed once."""


class OFPInstructionMeter(_PackedOnce, parser.OFPInstructionMeter):
    """``OFPInstructionMeter``, packed once."""


class OFPActionSetField(parser.OFPActionSetField):
    """``OFPActionSetField(field=value)`` serialised with `struct`."""

    def serialize(self, buf, offset):
        tlv = oxm_tlv(self.key, self.value)
        self.len = 4 + len(tlv) + _pad8(4 + len(tlv))
        _put(buf, offset, struct.pack("!HH", self.type, self.len) + tlv
             + bytes(self.len - 4 - len(tlv)))


def instructions(meter: int | None, actions: list, goto_table: int | None) -> list:
    """A flow's instructions in OpenFlow's order: meter, apply-actions, goto (each only if
    there is one)."""
    insts: list = []
    if meter is not None:
        insts.append(OFPInstructionMeter(meter, ofp.OFPIT_METER))
    if actions:
        insts.append(OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    if goto_table is not None:
        insts.append(OFPInstructionGotoTable(goto_table))
    return insts


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
_FLOW_MOD_BODY = struct.Struct(ofp.OFP_FLOW_MOD_PACK_STR0)


class OFPFlowMod(parser.OFPFlowMod):
    """An ``OFPFlowMod`` whose fixed fields pack with one precompiled `struct` (os-ken's
    ``msg_pack_into`` recompiles the format and pads the buffer first)."""

    def _serialize_body(self):
        buf = self.buf
        assert len(buf) == ofp.OFP_HEADER_SIZE
        buf += _FLOW_MOD_BODY.pack(
            self.cookie, self.cookie_mask, self.table_id, self.command, self.idle_timeout,
            self.hard_timeout, self.priority, self.buffer_id, self.out_port, self.out_group,
            self.flags)
        offset = len(buf)
        offset += self.match.serialize(buf, offset)
        for inst in self.instructions:
            inst.serialize(buf, offset)
            offset += inst.len


_FLOW_MOD_TEMPLATE = dict(OFPFlowMod(datapath=None).__dict__)


def flow_mod(cookie: int, table_id: int, command: int, idle_timeout: int, hard_timeout: int,
             priority: int, flags: int, match: Any, instructions: list) -> OFPFlowMod:
    """``OFPFlowMod(datapath=None, ...)`` (no buffer) built from a template of the attributes
    its ``__init__`` sets: the same object for a fraction of the cost."""
    msg = OFPFlowMod.__new__(OFPFlowMod)
    d = msg.__dict__
    d.update(_FLOW_MOD_TEMPLATE)
    d["cookie"], d["table_id"], d["command"] = cookie, table_id, command
    d["idle_timeout"], d["hard_timeout"], d["priority"] = idle_timeout, hard_timeout, priority
    d["flags"], d["match"], d["instructions"] = flags, match, instructions
    return msg
