"""Random mutations of valid frames for the property-based tests (hypothesis): bit flips,
byte changes, truncation, insertion, deletion, random or zeroed runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

KINDS = ("flip", "set", "truncate", "insert", "delete", "splice", "zero")


def mutate(draw: Callable[[Any], Any], seed: bytes, steps: tuple[int, int],
           kinds: Sequence[str] = KINDS, chunk: int = 16) -> bytes:
    """`seed` after ``steps`` (a range) mutations of the given kinds; inserted, deleted,
    random (``splice``: 4 bytes) or zeroed runs are at most `chunk` (``zero``: 40) long."""
    buf = bytearray(seed)
    for _ in range(draw(st.integers(*steps))):
        kind = draw(st.sampled_from(list(kinds)))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=chunk))
        elif kind == "delete":
            del buf[pos:pos + draw(st.integers(1, chunk))]
        elif kind == "splice":
            buf[pos:pos + 4] = draw(st.binary(min_size=4, max_size=4))
        elif kind == "zero" and buf:
            buf[pos:pos + draw(st.integers(1, 40))] = bytes(min(40, len(buf) - pos))
    return bytes(buf)
