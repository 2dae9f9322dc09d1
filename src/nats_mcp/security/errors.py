"""The security error boundary: authentication failures with stable, non-revealing reason codes."""

from __future__ import annotations

from typing import Literal

from nats_mcp.core.errors import NatsMcpError

AuthFailure = Literal[
    "missing_credentials",
    "malformed",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "bad_issuer",
    "bad_audience",
    "algorithm_not_allowed",
    "unknown_key",
    "inactive",
    "revoked",
    "unavailable",
    "locked_out",
    "address_denied",
]


class AuthenticationError(NatsMcpError):
    """A credential was refused. ``reason`` goes to the audit log; callers see at most a fixed text per reason
    (HTTP's 401, ``transports/http/app.py``), never ``detail`` nor anything of the credential: ``message`` is that
    fixed, safe text, while ``str()`` (for logs) names the reason and detail."""

    code = "unauthenticated"

    def __init__(self, reason: AuthFailure, detail: str = "", *, subject: str | None = None) -> None:
        super().__init__("authentication failed")
        self.args = (f"{reason}: {detail}" if detail else reason,)
        self.reason: AuthFailure = reason
        self.detail = detail
        self.subject = subject
        """Who the credential claimed to be, when that is known without trusting it (for lockout and audit)."""
