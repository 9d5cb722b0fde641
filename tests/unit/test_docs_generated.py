"""The docs say what the code does: generated parts up to date, examples valid, one name each.

The generated parts of docs/usage.md and docs/pipeline.md (synopsis, options, flow tables
and counts, output examples) must be what `python -m wlbridge.cli.docgen` makes of the code
now; when a test here fails after a change, run it and review the diff.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from wlbridge.app import config
from wlbridge.cli import docgen, status_client
from wlbridge.cli.main import build_parsers
from wlbridge.flows import wanted
from wlbridge.proto import groupmsg

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(docgen.BLOCKS))
def test_generated_parts_match_the_code(name: str) -> None:
    text = (ROOT / "docs" / name).read_text()
    assert docgen.render(name, text) == text, (
        f"docs/{name} is out of date: run `python -m wlbridge.cli.docgen` and review the diff")


@pytest.mark.parametrize("name", sorted(docgen.FILES))
def test_generated_package_files_match_the_parser(name: str) -> None:
    """The man page and the bash completion (package data) are what the parser says now.
    Generated on Python >= 3.10 (the development venv): argparse's headings differ before."""
    if sys.version_info < (3, 10):
        pytest.skip("generated with Python >= 3.10's argparse (the Ryu venv is 3.9)")
    assert (docgen.DATA / name).read_text() == docgen.FILES[name](), (
        f"wlbridge/data/{name} is out of date: run `python -m wlbridge.cli.docgen`")


def test_the_man_page_has_every_command_and_option() -> None:
    text = (docgen.DATA / "wlbridge.8").read_text().replace("\\-", "-")
    _, commands = build_parsers()
    for name, parser in commands.items():
        assert f"wlbridge {name}" in text
        for action in parser.options:
            for option in set(action.option_strings) - {"-h", "--help"}:
                assert option in text, f"wlbridge {name} {option} is not in wlbridge.8"


def complete(words: list[str]) -> list[str]:
    """What bash offers for the last of `words`, with the shipped completion loaded."""
    script = (f"source {docgen.DATA / 'wlbridge.bash'}; COMP_WORDS=({' '.join(words)}); "
              f"COMP_CWORD={len(words) - 1}; COMP_LINE='{' '.join(words)}'; "
              "COMP_POINT=${#COMP_LINE}; _shtab_wlbridge; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completes_commands_and_their_options() -> None:
    assert complete(["wlbridge", "doc"]) == ["docker-plugin", "doctor"]
    assert complete(["wlbridge", "install-service", "--unin"]) == ["--uninstall"]
    assert "--address-manager" in complete(["wlbridge", "setup", "--"])


def test_a_drifted_doc_is_noticed() -> None:
    text = (ROOT / "docs" / "usage.md").read_text()
    drifted = text.replace("[--idle-timeout IDLE_TIMEOUT]", "", 1)
    assert drifted != text and docgen.render("usage.md", drifted) != drifted


def test_the_synopsis_has_every_option_of_every_command() -> None:
    text = (ROOT / "docs" / "usage.md").read_text()
    _, commands = build_parsers()
    for name, parser in commands.items():
        for action in parser.options:
            for option in action.option_strings:
                assert option in text, f"wlbridge {name} {option} is not in docs/usage.md"


def test_flow_counts_are_the_builders() -> None:
    """11 flows per guest port with a known MAC (with the DHCP-server and RA guards),
    6 per binding, and the annotated two-guest dump has all of them."""
    view = wanted.View(uplink=1, station_mac="02:00:00:00:00:aa", guest_ports=(2, 3))
    per_port = len(wanted.port_flows(2, "02:00:00:00:00:bb", None))
    per_ip = len(wanted.binding_flows(2, "02:00:00:00:00:bb", "192.0.2.1", 300))
    per_ip6 = len(wanted.binding_flows(2, "02:00:00:00:00:bb", "2001:db8::1", 300))
    assert docgen.counts() == {"static": len(wanted.static_flows(view)), "port": per_port,
                               "port_unknown_mac": 1, "ip": per_ip, "ip6": per_ip6, "group": 1,
                               "well_known": len(groupmsg.WELL_KNOWN)}
    pipeline_md = (ROOT / "docs" / "pipeline.md").read_text()
    dump = pipeline_md.split("## An annotated dump")[1].split("### The same bridge")[0]
    lines = re.findall(r"^cookie=", dump, re.MULTILINE)
    # two guests, each with an IPv4 address and its IPv6 link-local one
    assert len(lines) == docgen.total(guests=2, bindings=2, bindings6=2)
    for purpose in ("router advertisement", "udp_src`=67, `udp_dst`=68"):
        assert purpose in pipeline_md


def test_help_names_each_concept_once() -> None:
    """`--uplink` is UPLINK and `--bridge` BRIDGE in every command; every option with a
    default shows it."""
    _, commands = build_parsers()
    for name, parser in commands.items():
        for action in parser.options:
            if "--uplink" in action.option_strings:
                assert action.metavar == "UPLINK", name
            if "--bridge" in action.option_strings:
                assert action.metavar == "BRIDGE", name
            if action.default not in (None, False, "==SUPPRESS==") and action.help:
                assert "default" in action.help, (name, action.option_strings)
        text = parser.format_help()
        assert "IFACE" not in text
    metavars: dict[str, set] = {}
    for parser in commands.values():
        for action in parser.options:
            for option in action.option_strings:
                metavars.setdefault(option, set()).add(action.metavar)
    assert {o: m for o, m in metavars.items() if len(m) > 1} == {}  # one name per option


def test_status_default_url_is_the_configured_default() -> None:
    assert status_client.default_url() == "http://127.0.0.1:9654"


def test_the_example_config_file_is_valid_and_complete() -> None:
    path = docgen.DATA / "wlbridge.ini"
    values = config.check_file(str(path), ["ofp_tcp_listen_port"])
    text = path.read_text()
    for opt in config.options():
        found = re.search(rf"^#?{opt.dest} =", text, re.MULTILINE)
        assert found, f"{opt.dest} not in {path.name}"
        if opt.dest in values:
            assert values[opt.dest] == opt.default, opt.dest  # the values shown are defaults


def test_make_help_describes_the_demo() -> None:
    makefile = (ROOT / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if "make demo " in x)
    assert "plain bridge" in line  # what `wlbridge demo` shows first (see test_operator)
