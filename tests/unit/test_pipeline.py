"""The pipeline's declaration is enforced when a flow is declared (`pipeline.flow`) or built
(`build_add`): a flow outside its table's matches, set-fields, gotos, priorities or OpenFlow's
match prerequisites raises `PipelineError` here, in the unit tests, not on the switch."""

from __future__ import annotations

import pytest
from wlbridge.flows.pipeline import (
    BY_NAME,
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_UDP,
    PORT_LOCAL,
    TABLES,
    FlowSpec,
    Move,
    Output,
    PipelineError,
    SetField,
    build_add,
    flow,
    miss_flows,
)

MAC = "02:00:00:00:00:05"


@pytest.mark.parametrize("kwargs,why", [
    ({"table": "nope", "priority": 1}, "unknown table"),
    ({"table": "classify", "priority": 1, "match": {"ipv4_src": "10.0.0.1"}},
     "match on ipv4_src not allowed"),
    ({"table": "from_guest", "priority": 1, "match": {"arp_spa": "10.0.0.1"}},
     "arp_spa needs eth_type"),
    ({"table": "from_guest", "priority": 1, "match": {"eth_type": ETH_IPV4, "arp_spa": "10.0.0.1"}},
     "arp_spa needs eth_type"),
    ({"table": "from_guest", "priority": 1, "match": {"eth_type": ETH_IPV4, "udp_dst": 67}},
     "udp_dst needs ip_proto"),
    ({"table": "from_guest", "priority": 1,
          "match": {"eth_type": ETH_IPV4, "ip_proto": 6, "udp_dst": 67}}, "udp_dst needs ip_proto"),
    ({"table": "from_guest", "priority": 1, "match": {"ip_proto": IPPROTO_UDP, "udp_dst": 67}},
     "ip_proto needs eth_type"),  # prerequisites are followed down the chain
    ({"table": "from_guest", "priority": 1, "match": {"eth_type": ETH_ARP, "ip_proto": 17}},
     "ip_proto needs eth_type"),
    ({"table": "to_uplink", "priority": 1, "actions": [SetField("eth_dst", MAC)]},
     "set_field eth_dst not allowed"),
    ({"table": "to_uplink", "priority": 1, "actions": [SetField("arp_sha", MAC)]},
     "set_field arp_sha needs eth_type"),
    ({"table": "classify", "priority": 1, "goto": "to_uplink"}, "goto to_uplink not allowed"),
    ({"table": "classify", "priority": 0x10000}, "priority 65536 out of range"),
    ({"table": "classify", "priority": -1}, "priority -1 out of range"),
])
def test_a_flow_outside_the_declaration_is_refused(kwargs, why):
    with pytest.raises(PipelineError, match=why):
        flow(**kwargs)


def test_flows_inside_the_declaration_pass():
    flow("classify", 0)
    flow("classify", 0xFFFF, {"in_port": 1}, goto="from_uplink")
    flow("from_guest", 10, {"eth_type": ETH_ARP, "arp_spa": "10.0.0.1"})
    flow("from_guest", 10, {"eth_type": ETH_IPV4, "ip_proto": IPPROTO_UDP, "udp_dst": 67})
    flow("from_guest", 10, {"eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6,
                            "icmpv6_type": 134})
    flow("to_uplink", 10, {"eth_type": ETH_ARP},
         actions=[SetField("eth_src", MAC), SetField("arp_sha", MAC), Output(1)])
    with pytest.raises(TypeError):
        flow("classify", 1, bogus=1)


V4_GROUP = {"eth_type": ETH_IPV4, "ipv4_dst": ("224.0.0.0", "240.0.0.0")}


@pytest.mark.parametrize("match,move,why", [
    ({}, Move("ipv4_dst", "eth_dst", 23), "move ipv4_dst needs eth_type"),
    ({"eth_type": ETH_IPV6}, Move("ipv4_dst", "eth_dst", 23), "move ipv4_dst needs eth_type"),
    ({"eth_type": ETH_IPV4}, Move("ipv6_dst", "eth_dst", 32), "move ipv6_dst needs eth_type"),
    (V4_GROUP, Move("eth_src", "ipv4_dst", 23), "move into ipv4_dst not allowed"),
    (V4_GROUP, Move("ipv4_dst", "eth_src", 23), "move into eth_src not allowed"),
    (V4_GROUP, Move("ipv4_dst", "eth_dst", 33), "outside ipv4_dst's 32"),
    (V4_GROUP, Move("ipv4_dst", "eth_dst", 23, src_ofs=10), "outside ipv4_dst's 32"),
    (V4_GROUP, Move("ipv4_dst", "eth_dst", 23, dst_ofs=30), "outside eth_dst's 48"),
    (V4_GROUP, Move("ipv4_dst", "eth_dst", 0), "bits 0..-1"),
    (V4_GROUP, Move("ipv4_dst", "eth_dst", 8, src_ofs=-1), "outside ipv4_dst"),
    (V4_GROUP, Move("udp_dst", "eth_dst", 8), "move of udp_dst not supported"),
])
def test_a_move_is_checked_like_a_set_field(match, move, why):
    with pytest.raises(PipelineError, match=why):
        flow("from_uplink", 10, match, [SetField("eth_dst", MAC), move, Output(1)])


def test_a_move_inside_the_declaration_passes_and_builds():
    ok = flow("from_uplink", 10, V4_GROUP,
              [SetField("eth_dst", "01:00:5e:00:00:00"), Move("ipv4_dst", "eth_dst", 23),
               Output(1)])
    acts = build_add(ok, 1).instructions[0].actions
    assert [type(a).__name__ for a in acts] == [
        "OFPActionSetField", "NXActionRegMove", "OFPActionOutput"]
    assert (acts[1].src_field, acts[1].dst_field, acts[1].n_bits) == ("ipv4_dst", "eth_dst", 23)
    # a flow of the same shape with another move is validated anew (not taken from the cache)
    with pytest.raises(PipelineError, match="outside"):
        flow("from_uplink", 10, V4_GROUP,
             [SetField("eth_dst", "01:00:5e:00:00:00"), Move("ipv4_dst", "eth_dst", 40),
              Output(1)])


def test_a_spec_made_by_hand_is_checked_when_built():
    spec = FlowSpec("classify", 1, (("ipv4_src", "10.0.0.1"),))
    with pytest.raises(PipelineError):
        build_add(spec, 1)
    good = FlowSpec("classify", 1, (("in_port", 1),), goto="from_uplink")
    assert build_add(good, 1).table_id == BY_NAME["classify"].table_id


def test_every_table_gets_its_declared_miss():
    misses = {spec.table: spec for spec in miss_flows()}
    assert set(misses) == {t.name for t in TABLES}
    for table in TABLES:
        spec = misses[table.name]
        assert (spec.priority, spec.match) == (0, ())
        if table.miss == "drop":
            assert (spec.actions, spec.goto) == ((), None)
        elif table.miss == "local":
            assert (spec.actions, spec.goto) == ((Output(PORT_LOCAL),), None)
        else:
            assert (spec.actions, spec.goto) == ((), table.miss.removeprefix("goto:"))
