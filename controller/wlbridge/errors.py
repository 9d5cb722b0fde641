"""Errors every layer may raise, at the bottom of the package (docs/architecture.md)."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; the CLI prints it in one line, without a traceback, and
    exits with status 2."""
