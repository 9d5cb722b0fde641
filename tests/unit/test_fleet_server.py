"""`wlbridge fleet`'s command lines (no root, nothing run): what ovsdb-tool and
ovsdb-server are given for a standalone store, a cluster's first member and a joining one,
with and without TLS, and the refusals (one line, exit 2, nothing made)."""

from __future__ import annotations

from pathlib import Path

import pytest
from wlbridge.cli.main import main
from wlbridge.errors import UserError
from wlbridge.host import fleet_server as fs

SCHEMA = "/s/wlbridge.ovsschema"


def test_a_standalone_store_is_created_with_ovsdb_tool_create(tmp_path: Path):
    d = str(tmp_path / "m")
    assert fs.plan_create(d, SCHEMA, None, []) == [
        ["ovsdb-tool", "create", f"{d}/wlbridge.db", SCHEMA]]


def test_the_first_member_creates_the_cluster_and_the_others_join_it(tmp_path: Path):
    d = str(tmp_path / "m")
    assert fs.plan_create(d, SCHEMA, "tcp:10.0.0.1:6643", []) == [
        ["ovsdb-tool", "create-cluster", f"{d}/wlbridge.db", SCHEMA, "tcp:10.0.0.1:6643"]]
    assert fs.plan_create(d, SCHEMA, "tcp:10.0.0.2:6643",
                          ["tcp:10.0.0.1:6643", "tcp:10.0.0.3:6643"]) == [
        ["ovsdb-tool", "join-cluster", f"{d}/wlbridge.db", "wlbridge", "tcp:10.0.0.2:6643",
         "tcp:10.0.0.1:6643", "tcp:10.0.0.3:6643"]]


def test_an_existing_database_is_restarted_not_created_again(tmp_path: Path):
    (tmp_path / "wlbridge.db").write_text("x")
    assert fs.plan_create(str(tmp_path), SCHEMA, "tcp:10.0.0.1:6643", []) == []


def test_the_server_listens_where_controllers_connect_with_tls_if_given(tmp_path: Path):
    d = str(tmp_path)
    cmd = fs.plan_server(d, ["tcp:127.0.0.1:6641", "ssl:[::1]:6642"], fs.Tls("k", "c", "ca"))
    assert "--remote=ptcp:6641:127.0.0.1" in cmd and "--remote=pssl:6642:[::1]" in cmd
    assert ["--private-key=k", "--certificate=c", "--ca-cert=ca"] == \
        [a for a in cmd if a.startswith(("--private-key", "--certificate", "--ca-cert"))]
    assert cmd[:2] == ["ovsdb-server", "--detach"] and cmd[-1] == f"{d}/wlbridge.db"
    assert f"--pidfile={d}/ovsdb-server.pid" in cmd


@pytest.mark.parametrize("args, says", [
    (["--listen", "tcp:1.2.3.4"], "is not tcp:IP:PORT"),
    (["--listen", "udp:1.2.3.4:5"], "is not tcp:IP:PORT"),
    (["--listen", "tcp:1.2.3.4:0"], "is not tcp:IP:PORT"),
    (["--listen", "tcp:1.2.3.4:6641", "--join", "tcp:1.2.3.4:6643"], "--join needs --cluster"),
    (["--listen", "tcp:1.2.3.4:6641", "--cluster", "tcp:1.2.3.4"], "--cluster"),
    (["--listen", "ssl:1.2.3.4:6641"], "needs --private-key"),
    (["--listen", "tcp:1.2.3.4:6641", "--ca-cert", "x"], "all three"),
    ([], "needs --listen"),
])
def test_bad_start_arguments_are_refused_in_one_line_and_make_nothing(tmp_path, capsys, args,
                                                                        says):
    d = tmp_path / "m"
    assert main(["fleet", "start", "--dir", str(d), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert not d.exists()


def test_fleet_commands_need_a_directory_and_pki_names(capsys):
    assert main(["fleet", "stop"]) == 2
    assert main(["fleet", "pki", "--dir", "/nonexistent-xf"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "needs --dir" in err[0] and "--name" in err[1]


def test_the_schema_ships_with_the_package(capsys):
    assert main(["fleet", "schema"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "wlbridge.ovsschema" and '"name": "wlbridge"' in path.read_text()


def test_a_bad_certificate_name_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(UserError, match="letters, digits"):
        fs.pki(str(tmp_path / "pki"), ["ok", "../x"])
    assert not (tmp_path / "pki").exists()
