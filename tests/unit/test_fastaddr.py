"""wlbridge.fastaddr: the framework's address converters give the same results (and the same
errors) with the fast path as netaddr does without it, and the fast path is in use."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wlbridge import fastaddr
from wlbridge.compat import addrconv, arp, ethernet

ORIG = fastaddr.originals(addrconv)


def outcome(fn, arg):
    try:
        return ("ok", fn(arg))
    except Exception as exc:  # noqa: BLE001 - comparing what both raise
        return ("error", type(exc).__name__)


def test_installed_on_the_framework_converters():
    assert getattr(type(addrconv.mac), "_wlbridge_fast", False)
    assert getattr(type(addrconv.ipv4), "_wlbridge_fast", False)
    fastaddr.install(addrconv)  # idempotent: no subclass of the subclass
    assert type(addrconv.mac).__mro__[1] is type(ORIG["mac"])


def test_fast_path_skips_netaddr(monkeypatch):
    """The usual cases never reach the netaddr-based original."""
    def boom(*_a, **_k):
        raise AssertionError("netaddr path used")

    for name in ("mac", "ipv4"):
        monkeypatch.setattr(type(ORIG[name]), "bin_to_text", boom)
        monkeypatch.setattr(type(ORIG[name]), "text_to_bin", boom)
    assert addrconv.mac.bin_to_text(b"\x02\x00\xab\xcd\xef\x01") == "02:00:ab:cd:ef:01"
    assert addrconv.mac.text_to_bin("02:00:AB:cd:ef:01") == b"\x02\x00\xab\xcd\xef\x01"
    assert addrconv.ipv4.bin_to_text(b"\x0a\x00\x00\x01") == "10.0.0.1"
    assert addrconv.ipv4.text_to_bin("10.0.0.1") == b"\x0a\x00\x00\x01"
    eth, _, _ = ethernet.ethernet.parser(bytes(range(12)) + b"\x08\x06")
    assert (eth.dst, eth.src) == ("00:01:02:03:04:05", "06:07:08:09:0a:0b")


@settings(max_examples=400)
@given(st.binary(min_size=0, max_size=8))
def test_bin_to_text_same_as_netaddr(raw):
    for name in ("mac", "ipv4"):
        assert outcome(getattr(addrconv, name).bin_to_text, raw) == \
            outcome(ORIG[name].bin_to_text, raw)


HEXISH = st.text(alphabet="0123456789abcdefABCDEFgx:-. ", min_size=0, max_size=20)
DOTTED = st.lists(st.sampled_from(["0", "1", "01", "10", "255", "256", "999", "00", "", " 1",
                                   "0x1", "127"]), min_size=1, max_size=5).map(".".join)


@settings(max_examples=600)
@given(st.one_of(HEXISH, DOTTED, st.just("02:00:ab:cd:ef:01"), st.just("10.1.2.3/24")))
def test_text_to_bin_same_as_netaddr(text):
    for name in ("mac", "ipv4"):
        assert outcome(getattr(addrconv, name).text_to_bin, text) == \
            outcome(ORIG[name].text_to_bin, text)


def test_random_addresses_round_trip_like_netaddr():
    rnd = random.Random(4)
    for _ in range(2000):
        mac = bytes(rnd.randrange(256) for _ in range(6))
        ip = bytes(rnd.randrange(256) for _ in range(4))
        text = addrconv.mac.bin_to_text(mac)
        assert text == ORIG["mac"].bin_to_text(mac) == mac.hex(":")
        assert addrconv.mac.text_to_bin(text.upper()) == ORIG["mac"].text_to_bin(text.upper())
        itext = addrconv.ipv4.bin_to_text(ip)
        assert itext == ORIG["ipv4"].bin_to_text(ip) == str(ipaddress.IPv4Address(ip))
        assert addrconv.ipv4.text_to_bin(itext) == ORIG["ipv4"].text_to_bin(itext) == ip


def test_packet_library_parses_as_before():
    frame = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x07" + b"\x08\x06"
             + bytes.fromhex("0001080006040001") + b"\x02\x00\x00\x00\x00\x07"
             + bytes([10, 0, 0, 7]) + bytes(6) + bytes([10, 0, 0, 1]))
    eth, _cls, rest = ethernet.ethernet.parser(frame)
    a, _, _ = arp.arp.parser(rest)
    assert (eth.src, a.src_mac, a.src_ip, a.dst_ip) == (
        "02:00:00:00:00:07", "02:00:00:00:00:07", "10.0.0.7", "10.0.0.1")
    assert bytes(a.serialize(bytearray(), None)) == frame[14:42]


@pytest.mark.parametrize("bad", [b"\x00" * 5, bytearray(6), memoryview(b"\x00" * 7)])
def test_unusual_input_goes_to_the_original(bad):
    assert outcome(addrconv.mac.bin_to_text, bad) == outcome(ORIG["mac"].bin_to_text, bad)
