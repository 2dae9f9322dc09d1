"""Resource URIs and errors: ``nats-mcp://channels/{channel}``, ``nats-mcp://inbox``, ``nats-mcp://reservations``;
failures as JSON-RPC errors (``-32002`` or ``INVALID_PARAMS`` for a resource that does not exist, as the revision
says)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict

from nats_mcp.api.tools.base import contract_error
from nats_mcp.coord.models import DirectMessage
from nats_mcp.core.names import InvalidNameError, validate_name
from nats_mcp.core.redact import redact

log = logging.getLogger("nats_mcp.api.resources")

SCHEME = "nats-mcp://"
CHANNEL_PREFIX = SCHEME + "channels/"
CHANNEL_TEMPLATE = CHANNEL_PREFIX + "{channel}"
INBOX_URI = SCHEME + "inbox"
RESERVATIONS_URI = SCHEME + "reservations"
MAX_URI_LENGTH = 512


RESOURCE_NOT_FOUND = -32002
"""The 2025-11-25 code of a ``resources/read`` of a resource that does not exist (retired in 2026-07-28)."""
NOT_FOUND_AS_INVALID_PARAMS = "2026-07-28"
"""The first revision whose unknown-resource error is ``INVALID_PARAMS`` (revisions are dates: they sort)."""

_CLIENT_FAULTS = frozenset(
    {"invalid_name", "invalid_argument", "invalid_cursor", "not_found", "forbidden", "rate_limited", "limit_exceeded"}
)


# -- URIs -----------------------------------------------------------------------------------------


class ResourceUriError(ValueError):
    """Not a URI of this server."""


@dataclass(frozen=True)
class ChannelResource:
    channel: str

    @property
    def uri(self) -> str:
        return CHANNEL_PREFIX + self.channel


@dataclass(frozen=True)
class InboxResource:
    @property
    def uri(self) -> str:
        return INBOX_URI


@dataclass(frozen=True)
class ReservationsResource:
    @property
    def uri(self) -> str:
        return RESERVATIONS_URI


ResourceRef = ChannelResource | InboxResource | ReservationsResource


def channel_uri(channel: str) -> str:
    return ChannelResource(validate_name(channel, "channel")).uri


def parse_uri(uri: object) -> ResourceRef:
    """The resource a URI names: exact forms only (no query, fragment, trailing slash or escapes)."""
    if not isinstance(uri, str):
        raise ResourceUriError("a resource URI must be a string")
    if len(uri) > MAX_URI_LENGTH:
        raise ResourceUriError(f"resource URI longer than {MAX_URI_LENGTH} characters")
    if uri == INBOX_URI:
        return InboxResource()
    if uri == RESERVATIONS_URI:
        return ReservationsResource()
    if uri.startswith(CHANNEL_PREFIX):
        try:
            return ChannelResource(validate_name(uri.removeprefix(CHANNEL_PREFIX), "channel"))
        except InvalidNameError as exc:
            raise ResourceUriError(f"{_shown(uri)}: {exc}") from None
    raise ResourceUriError(
        f"unknown resource URI {_shown(uri)}; expected {CHANNEL_TEMPLATE}, {INBOX_URI} or {RESERVATIONS_URI}"
    )


def _shown(uri: str) -> str:
    return repr(uri if len(uri) <= 80 else uri[:80] + "...")


# -- bodies ---------------------------------------------------------------------------------------


class InboxPeek(BaseModel):
    """The inbox resource: nothing in it has been consumed."""

    model_config = ConfigDict(extra="forbid")

    agentGuid: str
    count: int
    messages: list[DirectMessage]
    hasMore: bool


# -- errors ---------------------------------------------------------------------------------------


def _invalid(message: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, redact(message))


def mcp_error(exc: Exception) -> MCPError:
    """A failure as a JSON-RPC error: client faults are INVALID_PARAMS, the rest INTERNAL_ERROR; ``data.code``
    carries the tool contract's stable code."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, ResourceUriError):
        return MCPError(types.INVALID_PARAMS, redact(str(exc)), {"code": "invalid_name"})
    if isinstance(exc, InvalidNameError):
        return MCPError(types.INVALID_PARAMS, redact(str(exc)), {"code": "invalid_name"})
    known = contract_error(exc)
    if known is None:
        log.error("resource request failed", exc_info=exc)
        return MCPError(types.INTERNAL_ERROR, "the server failed to complete this request; it has been logged")
    code, message = known
    wire = types.INVALID_PARAMS if code in _CLIENT_FAULTS else types.INTERNAL_ERROR
    return MCPError(wire, redact(message), {"code": code})


def not_found(exc: MCPError, uri: str, protocol_version: str) -> MCPError:
    """A ``resources/read`` of a URI naming no resource, as the client's revision expects it.

    Only an over-long URI stays a plain INVALID_PARAMS: it is refused before anything is looked up.
    """
    if len(uri) > MAX_URI_LENGTH:
        return exc
    code = types.INVALID_PARAMS if protocol_version >= NOT_FOUND_AS_INVALID_PARAMS else RESOURCE_NOT_FOUND
    data = exc.error.data if isinstance(exc.error.data, dict) else {}
    return MCPError(code, exc.error.message, {**data, "uri": uri})
