"""The CLI's documented refusals, and what a refusal looks like (unit and integration tests).

docs/usage.md lists, per command, a table whose first column is ``refusal``;
`documented_refusals` reads them as (command, refusal) pairs.  The unit test
(tests/unit/test_cli_refusals.py) walks those needing no root and checks that, with
`ROOT_CASES` (walked by tests/integration/test_cli_refusals_root.py), every documented
refusal is run by some test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"

# refusals that need root and Open vSwitch: tests/integration/test_cli_refusals_root.py
ROOT_CASES = {
    ("setup", "Open vSwitch is not running"),
    ("setup", "the uplink does not exist"),
    ("setup", "the uplink already belongs to another OVS bridge"),
    ("setup", "the uplink is enslaved to a Linux bridge or bond"),
    ("setup", "the bridge exists but was not created by wlbridge"),
    ("setup", "a non-OVS interface has the bridge's name"),
    ("setup", "the bridge was set up by wlbridge for another uplink"),
    ("setup", "`--datapath system` without the kernel module"),
    ("setup", "`--packet-in-rate` between 1 and 99"),
    ("teardown", "the bridge was not created by wlbridge"),
    ("teardown", "the bridge's controller is still running"),
}


# refusals walked by tests of their own features: (command, refusal) -> "file::test"
FEATURE_CASES = {
    ("run", "another controller runs for the same bridge or state file"):
        "tests/integration/test_controller_lifetime.py::"
        "test_a_second_controller_refuses_and_changes_nothing",
    ("run", "`listen_host` is not a loopback address"):
        "tests/integration/test_controller_lifetime.py::"
        "test_a_non_loopback_listen_host_needs_tls_or_insecure_listen",
    ("run", "a corrupt state file cannot be moved aside"):
        "tests/unit/test_state_lifetime.py::"
        "test_a_corrupt_state_file_that_cannot_be_moved_is_a_startup_error",
    ("setup", "the address hand-off is not safe"):
        "tests/unit/test_addr_handoff_unit.py::test_setup_refusal_changes_nothing",
}


def assert_refused(res: subprocess.CompletedProcess, what: str) -> None:
    """A refusal: exit status 2, exactly one line on stderr containing `what`, no traceback."""
    lines = res.stderr.splitlines()
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert len(lines) == 1, res.stderr
    assert what in lines[0], lines[0]
    assert "Traceback" not in res.stdout + res.stderr


def documented_refusals(text: str | None = None) -> set[tuple[str, str]]:
    """(command, refusal) for every row of every ``| refusal |`` table in docs/usage.md;
    the command is the one of the enclosing ``## `wlbridge X` `` heading, else
    ``wlbridge``."""
    text = USAGE.read_text() if text is None else text
    found: set[tuple[str, str]] = set()
    command, in_table = "wlbridge", False
    for line in text.splitlines():
        heading = re.match(r"##\s+(.*)", line)
        if heading:
            name = re.fullmatch(r"`wlbridge (\w+)`", heading.group(1).strip())
            command = name.group(1) if name else "wlbridge"
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if not line.startswith("|"):
            in_table = False
        elif cells[0] == "refusal":
            in_table = True
        elif in_table and not set(cells[0]) <= set("-:| "):
            found.add((command, cells[0].replace("\\|", "|")))
    return found
