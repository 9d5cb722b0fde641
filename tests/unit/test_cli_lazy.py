"""`wlbridge COMMAND` builds only that command's parser (its module is what it imports), and
`wlbridge --help` still lists every command as the full parser does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from wlbridge.cli.main import COMMANDS, build_parser, chosen_command


@pytest.mark.parametrize(("argv", "name"), [
    (["run", "--bridge", "x"], "run"), (["-v", "--debug-libraries", "status"], "status"),
    (["--help"], ""), ([], ""), (["stauts"], ""), (["--", "run"], ""),
])
def test_the_command_is_the_first_word_that_is_not_an_option(argv, name):
    assert chosen_command(argv) == name


def test_help_lists_every_command_as_the_full_parser_does():
    full = build_parser().format_help()
    assert all(name in full for name in COMMANDS)
    for only in ("", "run", "flows"):
        assert build_parser(only).format_help() == full


def test_a_command_loads_only_its_own_module():
    code = ("import json, sys\n"
            "from wlbridge.cli.main import build_parser, chosen_command\n"
            "argv = ['-v', 'status', '--json']\n"
            "args = build_parser(chosen_command(argv)).parse_args(argv)\n"
            "print(json.dumps([args.command, args.json, sorted(sys.modules)]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    command, as_json, modules = json.loads(out)
    assert (command, as_json) == ("status", True)
    assert "wlbridge.cli.status_client" in modules
    others = {m for n, (m, _) in COMMANDS.items() if n != "status"}
    assert not others & set(modules), others & set(modules)
