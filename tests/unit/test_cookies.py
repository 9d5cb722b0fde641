"""Cookies are read back from the switch, also by another controller version: the layout of
cookies.py's docstring, pinned."""

from __future__ import annotations

import pytest
from wlbridge.flows import cookies, wanted
from wlbridge.flows.cookies import Cookie, Purpose


def test_layout_is_pinned():
    # | magic 0x574c | purpose 8 | generation 16 | subject 24 |
    assert cookies.make(Purpose.GUEST_IP, 0x1234, 0xABCDEF) == 0x574C_07_1234_ABCDEF
    assert cookies.make(Purpose.PIPELINE, 1) == 0x574C_01_0001_000000
    assert cookies.ours_match() == (0x574C_00_0000_000000, 0xFFFF_00_0000_000000)
    assert cookies.generation_match(3) == (0x574C_00_0003_000000, 0xFFFF_00_FFFF_000000)
    assert cookies.subject_match(5) == (0x574C_00_0000_000005, 0xFFFF_00_0000_FFFFFF)
    assert [int(p) for p in Purpose] == list(range(1, 12))
    assert Cookie(Purpose.PIPELINE, 3) == Cookie(Purpose.PIPELINE, 3, 0)  # no subject: 0
    assert Cookie(Purpose.PIPELINE, 3).encode() == cookies.make(Purpose.PIPELINE, 3)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_round_trip_at_the_limits(purpose):
    for gen, sub in ((0, 0), (cookies.MAX_GENERATION, cookies.MAX_SUBJECT), (1, 1)):
        assert cookies.decode(cookies.make(purpose, gen, sub)) == Cookie(purpose, gen, sub)
        assert Cookie(purpose, gen, sub).encode() == cookies.make(purpose, gen, sub)


def test_out_of_range_and_foreign():
    for gen, sub, what in ((-1, 0, "generation -1"),
                           (cookies.MAX_GENERATION + 1, 0, "generation 65536"),
                           (0, -1, "subject -1"), (0, cookies.MAX_SUBJECT + 1, "subject 16777216")):
        with pytest.raises(ValueError, match=f"^{what} out of range$"):
            cookies.make(Purpose.GUEST_IP, gen, sub)
    assert cookies.decode(0) is None
    assert cookies.decode(0x574D_07_0001_000001) is None  # another magic
    assert cookies.decode(0x574C_00_0001_000001) is None  # no such purpose
    assert cookies.decode(0x574C_0C_0001_000001) is None
    assert cookies.describe(0x1234) == "foreign:0x1234"
    assert cookies.describe(cookies.make(Purpose.GUEST_IP, 3, 5)) == "guest_ip/gen3/port5"
    assert cookies.describe(cookies.make(Purpose.PIPELINE, 3)) == "pipeline/gen3"


def test_matches_select_exactly_their_flows():
    def selected(match, cookie):
        value, mask = match
        return cookie & mask == value

    mine = cookies.make(Purpose.GUEST_IP, 3, 5)
    assert selected(cookies.ours_match(), mine)
    assert not selected(cookies.ours_match(), 0x1234)
    assert selected(cookies.generation_match(3), mine)
    assert not selected(cookies.generation_match(4), mine)
    assert selected(cookies.subject_match(5), mine)
    assert not selected(cookies.subject_match(6), mine)
    assert not selected(cookies.subject_match(5), 0x574D_07_0003_000005)


def test_a_guest_ports_subject_is_its_number_when_it_fits():
    assert [wanted.subject(p) for p in (0, 1, cookies.MAX_SUBJECT, cookies.MAX_SUBJECT + 1)] == [
        0, 1, cookies.MAX_SUBJECT, 0]
