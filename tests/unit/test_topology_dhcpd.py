"""ISC dhcpd for the Mininet topology's dhcp=isc (topologies.dhcpd): its configuration from a
router's `dhcp` settings, and its leases file."""

from topologies.dhcpd import dhcpd_argv, dhcpd_conf, parse_leases

CONF = {"range": ("10.231.7.100", "10.231.7.199"), "lease_time": 300}


def test_conf_serves_the_range_with_no_router_or_dns_unless_asked():
    text = dhcpd_conf("10.231.7.1/24", CONF)
    assert "subnet 10.231.7.0 netmask 255.255.255.0 {" in text
    assert "range 10.231.7.100 10.231.7.199;" in text
    assert "default-lease-time 300;" in text and "max-lease-time 300;" in text
    assert "option routers" not in text and "domain-name-servers" not in text
    assert "ping-check false;" in text
    both = dhcpd_conf("10.231.7.1/24", {**CONF, "router_option": True, "dns_option": True})
    assert "option routers 10.231.7.1;" in both
    assert "option domain-name-servers 10.231.7.1;" in both


def test_argv_runs_in_the_foreground_on_one_interface(tmp_path):
    argv = dhcpd_argv("eth0", tmp_path / "dhcpd.conf", tmp_path)
    assert argv[:4] == ["dhcpd", "-4", "-f", "-d"] and argv[-1] == "eth0"
    assert str(tmp_path / "dhcpd.leases") in argv


LEASES = """# The format of this file is documented in the dhcpd.leases(5) manual page.
lease 10.231.7.100 {
  starts 1 2026/12/07 20:00:00;
  binding state active;
  hardware ethernet 02:57:4C:00:04:01;
}
lease 10.231.7.101 {
  binding state active;
  hardware ethernet 02:57:4c:00:04:02;
}
lease 10.231.7.101 {
  binding state free;
  hardware ethernet 02:57:4c:00:04:02;
}
"""


def test_leases_the_last_record_of_an_address_wins():
    leases = parse_leases(LEASES)
    assert [(lease.mac, lease.ip) for lease in leases] == [("02:57:4c:00:04:01", "10.231.7.100")]
