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
