"""Flow-table snapshot helpers shared by the core resync / resilience unit tests."""

from __future__ import annotations

from wlbridge.flows import cookies


def without_generation(snapshot) -> set:
    out = set()
    for spec in snapshot:
        c = cookies.decode(spec.cookie)
        out.add(spec._replace(cookie=(c.purpose, c.subject) if c else spec.cookie))
    return out
