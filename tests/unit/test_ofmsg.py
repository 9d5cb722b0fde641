"""`ofmsg` builds the messages other than flow-adds and refuses what a switch would reject:
a packet-out from or to a port that cannot be one, a meter id out of range, ..."""

from __future__ import annotations

import importlib

import pytest
from wlbridge.compat import FRAMEWORK, ofp, parser
from wlbridge.openflow import ofmsg
from wlbridge.openflow.ofmsg import MessageError

FRAME = bytes.fromhex("ffffffffffff525400123456" "0806") + bytes(46)


def wire(msg) -> bytes:
    proto = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_protocol")
    msg.datapath = proto.ProtocolDesc(version=ofp.OFP_VERSION)
    msg.set_xid(7)
    msg.serialize()
    return bytes(msg.buf)


@pytest.mark.parametrize("in_port,out_port", [
    (2, 1), (2, ofp.OFPP_TABLE), (ofp.OFPP_CONTROLLER, 1), (ofp.OFPP_CONTROLLER, ofp.OFPP_TABLE),
    (1, ofp.OFPP_LOCAL), (2, ofp.OFPP_IN_PORT), (ofp.OFPP_MAX, 1)])
def test_a_packet_out_is_the_frameworks_own(in_port, out_port):
    msg = ofmsg.packet_out(in_port, out_port, FRAME)
    same = parser.OFPPacketOut(datapath=None, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=[parser.OFPActionOutput(out_port)], data=FRAME)
    assert wire(msg) == wire(same)


@pytest.mark.parametrize("in_port,out_port,data", [
    (0, 1, FRAME),                     # no port 0
    (ofp.OFPP_ANY, 1, FRAME),          # "any" is no input port
    (ofp.OFPP_MAX + 1, 1, FRAME),      # between the real and the reserved ports
    (2, 0, FRAME),
    (2, ofp.OFPP_ANY, FRAME),
    (2, 2, FRAME),                     # to its own input port: the switch drops it
    (ofp.OFPP_CONTROLLER, ofp.OFPP_IN_PORT, FRAME),
    (2, 1, b""),                       # no frame
    (2, 1, FRAME[:13]),                # shorter than an Ethernet header
    ("2", 1, FRAME),                   # not a number
    (True, 1, FRAME),
])
def test_a_packet_out_that_cannot_be_is_refused(in_port, out_port, data):
    with pytest.raises(MessageError):
        ofmsg.packet_out(in_port, out_port, data)


def test_meter_mods():
    add = ofmsg.meter_set(5, 200, exists=False)
    assert (add.command, add.meter_id, add.flags) == (
        ofp.OFPMC_ADD, 5, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST)
    assert [(b.rate, b.burst_size) for b in add.bands] == [(200, 200)]
    assert ofmsg.meter_set(5, 200, exists=True).command == ofp.OFPMC_MODIFY
    gone = ofmsg.meter_delete(ofp.OFPM_MAX)
    assert (gone.command, gone.meter_id) == (ofp.OFPMC_DELETE, ofp.OFPM_MAX)
    for bad in (0, ofp.OFPM_MAX + 1, ofp.OFPM_ALL, -1, 1.0):
        with pytest.raises(MessageError):
            ofmsg.meter_delete(bad)
        with pytest.raises(MessageError):
            ofmsg.meter_set(bad, 200, exists=False)
    for rate in (0, -5, 2.5):
        with pytest.raises(MessageError):
            ofmsg.meter_set(1, rate, exists=False)


def test_flow_stats_request_and_deletes():
    req = ofmsg.flow_stats_request(0x1000, 0xF000)
    assert (req.table_id, req.out_port, req.cookie, req.cookie_mask) == (
        ofp.OFPTT_ALL, ofp.OFPP_ANY, 0x1000, 0xF000)
    assert ofmsg.flow_stats_request(0, 0).cookie_mask == 0  # every flow
    with pytest.raises(MessageError):  # a cookie bit the mask ignores: a mistake
        ofmsg.flow_stats_request(0x1001, 0xF000)
    every = ofmsg.flow_delete(0x1000, 0xF000)
    assert (every.command, every.table_id) == (ofp.OFPFC_DELETE, ofp.OFPTT_ALL)
    match = parser.OFPMatch(in_port=1)
    strict = ofmsg.flow_delete(0x1000, 0xF000, 0, 100, match)
    assert (strict.command, strict.table_id, strict.priority, strict.match) == (
        ofp.OFPFC_DELETE_STRICT, 0, 100, match)
    with pytest.raises(MessageError):
        ofmsg.flow_delete(0x1000, 0xF000, ofp.OFPTT_ALL, 100, match)
    with pytest.raises(MessageError):
        ofmsg.flow_delete(0x1000, 0xF000, 0, 100)


def test_a_move_is_the_frameworks_reg_move_and_checked():
    act = ofmsg.reg_move("ipv6_dst", "eth_dst", 32)
    ref = parser.NXActionRegMove(src_field="ipv6_dst", dst_field="eth_dst", n_bits=32,
                                 src_ofs=0, dst_ofs=0)
    a, b = bytearray(), bytearray()
    act.serialize(a, 0)
    ref.serialize(b, 0)
    assert bytes(a) == bytes(b) and len(a) == 24
    for bad in [("nope", "eth_dst", 8, 0, 0), ("ipv4_dst", "eth_dst", 33, 0, 0),
                ("ipv4_dst", "eth_dst", 23, 0, 26), ("ipv4_dst", "eth_dst", 0, 0, 0),
                ("ipv4_dst", "eth_dst", 8, -1, 0)]:
        with pytest.raises(MessageError, match="move"):
            ofmsg.reg_move(*bad)


def test_the_handshake_is_set_config_meter_features_meters_then_ports():
    """After the features reply: normal fragments and whole frames in packet-ins, then the
    meter support, the existing meters, the ports (their reply ends the handshake)."""
    bufs = [wire(m) for m in ofmsg.handshake()]
    assert [b[1] for b in bufs] == [ofp.OFPT_SET_CONFIG] + [ofp.OFPT_MULTIPART_REQUEST] * 3
    assert int.from_bytes(bufs[0][8:10], "big") == ofp.OFPC_FRAG_NORMAL
    assert int.from_bytes(bufs[0][10:12], "big") == 0xFFFF   # the whole frame, unbuffered
    kinds = [int.from_bytes(b[8:10], "big") for b in bufs[1:]]
    assert kinds == [ofp.OFPMP_METER_FEATURES, ofp.OFPMP_METER_CONFIG, ofp.OFPMP_PORT_DESC]
    assert int.from_bytes(bufs[2][16:20], "big") == ofp.OFPM_ALL
    with pytest.raises(MessageError):
        ofmsg.set_config(0x10000)
