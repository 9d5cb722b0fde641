"""The OpenFlow messages other than flow-adds, built (and checked) in one place.

With `fastof` (flow-mods, matches, set-fields), this is the openflow layer: the only code
that builds the framework's message objects.  The core and its helpers say *what* to send
(a frame out of a port, a meter of so many packets per second, the flows of ours); these
functions build the os-ken message, refusing what the switch would reject or misread
(`MessageError`, raised in the unit tests rather than answered by an OpenFlow error on the
switch): a packet-out from or to a port that cannot be one, an empty frame, a meter id out
of OpenFlow's range.
"""

from __future__ import annotations

from typing import Any

from wlbridge.compat import ofp, parser


class MessageError(ValueError):
    """A message the switch would refuse (or misread)."""


# reserved ports a packet-out may name as its input port (besides a real port number)
_IN_RESERVED = frozenset({ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL})
# reserved ports a packet-out may output to
_OUT_RESERVED = frozenset({ofp.OFPP_IN_PORT, ofp.OFPP_TABLE, ofp.OFPP_NORMAL, ofp.OFPP_FLOOD,
                           ofp.OFPP_ALL, ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL})
FRAME_MIN = 14  # an Ethernet header


def _real_port(port_no: Any) -> bool:
    return type(port_no) is int and 0 < port_no <= ofp.OFPP_MAX


def packet_out(in_port: int, out_port: int, data: bytes):
    """Send the frame `data` out of `out_port` as if it came from `in_port`.  Output to
    ``OFPP_TABLE`` runs it through the tables from table 0: that needs a real input port
    (or the controller); output to ``OFPP_IN_PORT`` needs a real input port."""
    if not (_real_port(in_port) or in_port in _IN_RESERVED):
        raise MessageError(f"packet-out from port {in_port!r}")
    if not (_real_port(out_port) or out_port in _OUT_RESERVED):
        raise MessageError(f"packet-out to port {out_port!r}")
    if out_port == in_port:
        raise MessageError(f"packet-out to its own input port {in_port} (use OFPP_IN_PORT)")
    if out_port == ofp.OFPP_IN_PORT and not _real_port(in_port):
        raise MessageError(f"packet-out back to port {in_port!r}")
    if not isinstance(data, (bytes, bytearray)) or len(data) < FRAME_MIN:
        raise MessageError(f"packet-out of {len(data) if data else 0} bytes: not a frame")
    return parser.OFPPacketOut(datapath=None, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=[output(out_port)], data=bytes(data))


def port_mod(port_no: int, hw_addr: str, down: bool):
    """Take switch port `port_no` (whose MAC is `hw_addr`: the switch checks it) down or
    bring it up again (``OFPPC_PORT_DOWN``; Open vSwitch sets the interface down, so the
    other end of a veth loses its carrier)."""
    if not _real_port(port_no) or port_no == ofp.OFPP_MAX:
        raise MessageError(f"port-mod of port {port_no!r}")
    return parser.OFPPortMod(datapath=None, port_no=port_no, hw_addr=hw_addr,
                             config=ofp.OFPPC_PORT_DOWN if down else 0,
                             mask=ofp.OFPPC_PORT_DOWN, advertise=0)


def output(port_no: int, max_len: int = ofp.OFPCML_MAX):
    """The output action of a flow or a packet-out (`max_len`: bytes sent to the controller)."""
    return parser.OFPActionOutput(port_no, max_len)


def reg_move(src: str, dst: str, n_bits: int, src_ofs: int = 0, dst_ofs: int = 0):
    """Nicira ``reg_move`` (OVS's ``move:src[src_ofs..]->dst[dst_ofs..]``) of `n_bits` between
    two OXM fields, refused unless both are fields the framework knows and the bits lie
    inside each (OVS would answer ``OFPBAC_BAD_SET_LEN``)."""
    for name, ofs in ((src, src_ofs), (dst, dst_ofs)):
        try:
            _num, kind = ofp.oxm_get_field_info_by_name(name)
        except KeyError:
            raise MessageError(f"move: unknown field {name!r}") from None
        width = 8 * getattr(kind, "size", 0)
        if (type(n_bits) is not int or type(ofs) is not int or n_bits < 1 or ofs < 0
                or ofs + n_bits > width):
            raise MessageError(f"move: bits {ofs}..{ofs + n_bits - 1} outside {name} "
                               f"({width} bits)")
    return parser.NXActionRegMove(src_field=src, dst_field=dst, n_bits=n_bits,
                                  src_ofs=src_ofs, dst_ofs=dst_ofs)


def _meter_id(meter_id: Any) -> int:
    if type(meter_id) is not int or not 0 < meter_id <= ofp.OFPM_MAX:
        raise MessageError(f"meter id {meter_id!r} out of range")
    return meter_id


def meter_set(meter_id: int, pps: int, exists: bool):
    """Create (or, if it `exists`, reconfigure) a meter dropping above `pps` packets per
    second (burst the same)."""
    if type(pps) is not int or pps <= 0:
        raise MessageError(f"meter rate {pps!r} packets/s")
    band = parser.OFPMeterBandDrop(rate=pps, burst_size=pps)
    return parser.OFPMeterMod(datapath=None,
                              command=ofp.OFPMC_MODIFY if exists else ofp.OFPMC_ADD,
                              flags=ofp.OFPMF_PKTPS | ofp.OFPMF_BURST,
                              meter_id=_meter_id(meter_id), bands=[band])


def meter_delete(meter_id: int):
    """Delete a meter."""
    return parser.OFPMeterMod(datapath=None, command=ofp.OFPMC_DELETE,
                              meter_id=_meter_id(meter_id))


def flow_stats_request(cookie: int, cookie_mask: int):
    """Ask for the flows, in every table, whose cookie matches under the mask (0, 0: all)."""
    if cookie & ~cookie_mask & 0xFFFFFFFFFFFFFFFF:
        raise MessageError(f"cookie {cookie:#x} has bits outside its mask {cookie_mask:#x}")
    return parser.OFPFlowStatsRequest(
        datapath=None, flags=0, table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, cookie=cookie, cookie_mask=cookie_mask,
        match=parser.OFPMatch())


def flow_delete(cookie: int, cookie_mask: int, table_id: int = ofp.OFPTT_ALL,
                priority: int | None = None, match: Any = None):
    """Delete flows whose cookie matches under the mask: every flow of theirs in every table
    (no `priority`), or exactly the one of this table, priority and match (strict)."""
    if priority is None:
        return parser.OFPFlowMod(datapath=None, cookie=cookie, cookie_mask=cookie_mask,
                                 table_id=table_id, command=ofp.OFPFC_DELETE,
                                 out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                 match=match if match is not None else parser.OFPMatch())
    if table_id == ofp.OFPTT_ALL or match is None:
        raise MessageError("a strict delete names its table and match")
    return parser.OFPFlowMod(datapath=None, cookie=cookie, cookie_mask=cookie_mask,
                             table_id=table_id, command=ofp.OFPFC_DELETE_STRICT,
                             priority=priority, out_port=ofp.OFPP_ANY,
                             out_group=ofp.OFPG_ANY, match=match)


# ---- the handshake: after the switch's features reply, before the core hears of it -------

MISS_SEND_LEN = 0xFFFF  # packet-ins carry the whole frame (no buffering on the switch)


def set_config(miss_send_len: int = MISS_SEND_LEN):
    """Normal fragment handling; packet-ins (table misses) carry `miss_send_len` bytes."""
    if type(miss_send_len) is not int or not 0 <= miss_send_len <= 0xFFFF:
        raise MessageError(f"miss_send_len {miss_send_len!r} out of range")
    return parser.OFPSetConfig(None, ofp.OFPC_FRAG_NORMAL, miss_send_len)


def meter_features_request():
    """Ask for the switch's meter support (its ``max_meter``)."""
    return parser.OFPMeterFeaturesStatsRequest(None, 0)


def meter_config_request():
    """Ask for the meters that exist on the switch (all of them)."""
    return parser.OFPMeterConfigStatsRequest(None, 0, ofp.OFPM_ALL)


def port_desc_request():
    """Ask for the switch's ports (the reply completes the handshake)."""
    return parser.OFPPortDescStatsRequest(None, 0)


def handshake() -> list:
    """What follows the features reply, in this order: the configuration, the meter
    support and the existing meters (their replies come before the ports'), the ports."""
    return [set_config(), meter_features_request(), meter_config_request(),
            port_desc_request()]
