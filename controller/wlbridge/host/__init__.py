"""Host integration: OVSDB, netlink, isolation, the host's address management."""
