"""The model: guests, bindings, ports and addresses as plain data; no I/O, no framework."""
