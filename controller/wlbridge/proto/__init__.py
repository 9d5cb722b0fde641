"""Protocols as bytes: frames, DHCP; parsing with os-ken's packet library."""
