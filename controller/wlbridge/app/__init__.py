"""The os-ken/Ryu shell: the switch connection, persistence, status, options."""
