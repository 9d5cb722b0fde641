"""Fast paths equal the plain ones: fastof's OXM TLVs against os-ken's own encoding, and
sections remembered by their arguments against flows computed afresh (issue 6)."""

from __future__ import annotations

import gc
import types

import pytest
from ofsim import arp_request
from rig import Rig, ip, mac
from wlbridge.flows import wanted
from wlbridge.flows.pipeline import FlowSpec
from wlbridge.flows.sections import Sections
from wlbridge.openflow import fastof

G1, G2 = 2, 3

CANONICAL = [
    ("in_port", 5), ("in_port", 0xFFFFFFFE), ("eth_type", 0x0806), ("arp_op", 2),
    ("ip_proto", 17), ("udp_dst", 67), ("icmpv6_type", 134),
    ("eth_dst", "02:00:00:00:00:05"), ("arp_sha", "02:aa:bb:cc:dd:ee"),
    ("eth_dst", ("01:00:00:00:00:00", "01:00:00:00:00:00")),
    ("ipv4_dst", "10.1.2.3"), ("arp_spa", "0.0.0.0"), ("ipv4_dst", ("224.0.0.0", "240.0.0.0")),
]
TLV_CASES = CANONICAL + [  # odd values: each goes os-ken's way (or fails as os-ken fails)
    ("eth_dst", "02:AA:00:00:00:01"), ("eth_dst", "2:0:0:0:0:5"), ("eth_dst", "02:00:00:00:00"),
    ("eth_dst", "zz:00:00:00:00:05"), ("ipv4_dst", "10.1.2"), ("ipv4_dst", "10.1.2.300"),
    ("arp_op", True), ("arp_op", 70000), ("arp_op", -1), ("in_port", "5"), ("vlan_vid", 0x1005),
]


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - comparing what both raise
        return ("error", type(exc).__name__)


@pytest.mark.parametrize("name,value", TLV_CASES)
def test_oxm_tlv_equals_os_kens_encoding(name, value):
    assert outcome(fastof.oxm_tlv, name, value) == outcome(fastof.os_ken_tlv, name, value)


def test_canonical_values_never_take_os_kens_way(monkeypatch):
    def boom(*_a):
        raise AssertionError("slow TLV path used")

    monkeypatch.setattr(fastof, "os_ken_tlv", boom)
    for name, value in CANONICAL:
        assert fastof.oxm_tlv(name, value).startswith(b"\x80\x00")  # OFPXMC_OPENFLOW_BASIC


def test_a_section_remembers_its_arguments_and_diffs_like_recomputing():
    sections = Sections()
    section = wanted.BindingSection("10.0.0.5")
    first = (G1, mac(G1), "10.0.0.5", 300)
    adds, deletes = sections.update(section, first)
    assert adds == wanted.binding_flows(*first) and deletes == []
    assert sections.update(section, first) == ([], [])  # unchanged: nothing to send
    assert sections.specs() == wanted.binding_flows(*first)

    moved = (G2, mac(G2), "10.0.0.5", 300)
    adds, deletes = sections.update(section, moved)
    assert adds and deletes
    assert_minimal_diff(wanted.binding_flows(*first), wanted.binding_flows(*moved), adds, deletes)
    assert sections.specs() == wanted.binding_flows(*moved)
    # a guest port whose MAC becomes known: its MAC-independent flows are not sent again
    unknown, known = (G1, None, None), (G1, mac(G1), None)
    ports = Sections()
    ports.update(wanted.PortSection(G1), unknown)
    adds, deletes = ports.update(wanted.PortSection(G1), known)
    assert len(adds) < len(wanted.port_flows(*known))
    assert_minimal_diff(wanted.port_flows(*unknown), wanted.port_flows(*known), adds, deletes)

    adds, deletes = sections.update(section, None)
    assert adds == [] and deletes == wanted.binding_flows(*moved)
    assert list(sections) == [] and sections.specs() == []


def test_sections_of_different_kinds_with_equal_keys_stay_apart():
    """A binding and a group (or subnet broadcast) with the same address text are two
    sections: neither replaces the other's flows."""
    assert wanted.BindingSection("10.0.0.255") != wanted.GroupSection("10.0.0.255")
    assert len({wanted.BindingSection("10.0.0.255"), wanted.GroupSection("10.0.0.255"),
                wanted.PortSection(2), wanted.STATIC}) == 4


def assert_minimal_diff(old: list, new: list, adds: list, deletes: list) -> None:
    """Applying `deletes` then `adds` to a table holding `old` gives `new`, sending no flow
    that is already there and deleting none that is replaced."""
    table = {spec.key: spec for spec in old}
    for spec in deletes:
        assert table.pop(spec.key) == spec
    table.update((spec.key, spec) for spec in adds)
    assert set(table.values()) == set(new)
    assert not set(adds) & set(old)
    assert not {spec.key for spec in deletes} & {spec.key for spec in adds}


def _reachable(root: object) -> list:
    """Objects reachable from `root` through instances, containers and their attributes."""
    seen, todo, out = set(), [root], []
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType,
                                               types.MethodType)):
            continue
        seen.add(id(obj))
        out.append(obj)
        todo.extend(gc.get_referents(obj))
    return out


def test_the_core_keeps_no_flow_objects_alive():
    """A learned binding costs the core's long-lived state a few plain values, not six
    FlowSpecs with their matches and actions (garbage collection time, issue 6)."""
    rig = Rig()
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    assert len(rig.core.flow_specs()) > 20
    assert not [o for o in _reachable(rig.core) if isinstance(o, FlowSpec)]
