"""The command line: argument parsing, one-line refusals, the commands."""
