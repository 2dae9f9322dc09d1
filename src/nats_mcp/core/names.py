"""The identifier boundary: the one definition of every user-supplied token's format, and its validation.

Namespaces, channels, handles, capabilities and agent GUIDs become NATS subject tokens, so they are
validated here and nowhere else, never escaped ad hoc. This module imports nothing of the project:
settings use it, and ``bus/layout.py`` (which builds every NATS name) builds only from validated tokens.
"""

from __future__ import annotations

import re

from nats_mcp.core.errors import NatsMcpError

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""handle, channel, namespace."""
TYPE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""capability, agentType (may also contain ``_``)."""
GUID_PATTERN = r"^[0-9a-f]{32}$"
PROJECT_ID_PATTERN = r"^[0-9a-f]{16}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""message, work item and DLQ item ids (lowercase)."""

RESERVED_NAMESPACES = frozenset({"audit"})
"""Namespaces that would sit under a deployment-wide subject (``nmcp.audit.*``): refused."""

_NAME = re.compile(NAME_PATTERN)
_TYPE_NAME = re.compile(TYPE_NAME_PATTERN)
_GUID = re.compile(GUID_PATTERN)
_PROJECT_ID = re.compile(PROJECT_ID_PATTERN)
_UUID = re.compile(UUID_PATTERN)


class InvalidNameError(NatsMcpError, ValueError):
    """A token that may not become part of a NATS subject or resource name."""

    code = "invalid_name"


def _check(value: object, regex: re.Pattern[str], what: str, rule: str) -> str:
    if not isinstance(value, str) or not regex.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:80]}..."
        raise InvalidNameError(f"invalid {what} {shown!r}: {rule}")
    return value


def validate_name(value: object, what: str = "name") -> str:
    """Validate a handle, channel or namespace."""
    return _check(value, _NAME, what, "use 1-63 characters a-z, 0-9 and '-', starting with a letter or digit")


def validate_type_name(value: object, what: str = "name") -> str:
    """Validate a capability or agent type."""
    return _check(value, _TYPE_NAME, what, "use 1-63 characters a-z, 0-9, '-' and '_', starting with a letter or digit")


def validate_guid(value: object, what: str = "agent GUID") -> str:
    """Validate an agent GUID (32 lowercase hex characters, the one format used everywhere)."""
    return _check(value, _GUID, what, "expected 32 lowercase hexadecimal characters")


def validate_project_id(value: object, what: str = "project id") -> str:
    """Validate a project id (16 lowercase hex characters, as Warp derives it)."""
    return _check(value, _PROJECT_ID, what, "expected 16 lowercase hexadecimal characters")


def validate_uuid(value: object, what: str = "id") -> str:
    """Validate a message, work item or DLQ item id (a lowercase UUID)."""
    return _check(value, _UUID, what, "expected a lowercase UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e")
