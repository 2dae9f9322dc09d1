"""The one error base: every refusal or failure a caller may see carries a stable ``code`` and a ``message``.

Bus failures (``bus/errors.py``), domain refusals (``coord/errors.py``), invalid names (``core/names.py``), the
guard's refusals and authentication failures (``security/``) all derive from :class:`NatsMcpError`, so the MCP layer
catches one family and answers ``Error: [code] message``. ``code`` is one of the tool contract's error codes.
"""

from __future__ import annotations


class NatsMcpError(Exception):
    """A refusal or failure with a stable ``code`` (the tool contract's) and a ``message`` safe to show the caller."""

    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
