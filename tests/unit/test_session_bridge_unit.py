"""The session bridge's ACL file edits and name checks (issue 22, item 2): qemu-bridge-helper's
/etc/qemu/bridge.conf gets our ``allow NAME`` line and loses exactly it, the user's lines byte
for byte as they were."""

from __future__ import annotations

import os

import pytest
from wlbridge.errors import UserError
from wlbridge.host import session_bridge as sb

USERS = "# mine\ninclude /etc/qemu/alice.conf\nallow virbr0\n  allow   wlvm0x\n"


@pytest.mark.parametrize("before", ["", USERS, USERS.rstrip("\n")], ids=["empty", "nl", "no-nl"])
def test_our_line_is_added_and_removed_leaving_the_users_lines(before):
    after = sb.acl_added(before, "wlvm0")
    assert sb.allows(after, "wlvm0") and not sb.allows(before, "wlvm0")
    assert after.startswith(before) and after.endswith("allow wlvm0\n")
    back = sb.acl_removed(after, "wlvm0")
    assert back == (before + "\n" if before and not before.endswith("\n") else before)


def test_only_lines_allowing_exactly_that_bridge_count():
    assert sb.allows(USERS, "wlvm0x") and sb.allows(USERS, "virbr0")
    assert not sb.allows(USERS, "wlvm0") and not sb.allows("deny wlvm0\n", "wlvm0")
    assert sb.acl_removed(USERS, "virbr0") == USERS.replace("allow virbr0\n", "")


@pytest.mark.parametrize("bad", ["", "a" * 14, "-x", "br wl", "a/b", "ä"])
def test_a_bad_name_is_refused_in_one_line(bad):
    with pytest.raises(UserError, match="nothing changed"):
        sb.check_name(bad)


def test_names_of_its_ports_fit_the_kernels_limit():
    name = sb.check_name("a" * 13)
    assert max(len(sb.ovs_port(name)), len(sb.bridge_end(name))) <= 15


def test_a_helper_without_setuid_is_pointed_out(tmp_path):
    helper = tmp_path / "qemu-bridge-helper"
    helper.write_text("")
    helper.chmod(0o755)
    assert "dpkg-statoverride" in sb.helper_note((str(helper),))
    os.chmod(helper, 0o4755)
    assert sb.helper_note((str(helper),)) is None
    assert sb.helper_note((str(tmp_path / "none"),)) is None
