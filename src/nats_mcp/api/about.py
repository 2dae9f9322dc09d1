"""The server's self-description in ``initialize`` (``serverInfo``): name, title, description, website and icon."""

from __future__ import annotations

import base64

import mcp_types as types

NAME = "nats-mcp"
TITLE = "NATS MCP Server"
DESCRIPTION = (
    "Coordination for AI agents over NATS JetStream: channels, an agent registry with presence, direct "
    "messages and work queues with leases and a dead-letter queue."
)
WEBSITE_URL = "https://pypi.org/project/nats-mcp-server/"
"""The distribution's page (the package is ``nats-mcp-server``); the one place to change it."""

# A 32x32 mark, inlined so that showing it needs no request to anywhere.
_ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
    'fill="#27aae1"/><path d="M9 23V9l14 14V9" fill="none" stroke="#fff" stroke-width="3" '
    'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)
ICONS = [
    types.Icon(
        src="data:image/svg+xml;base64," + base64.b64encode(_ICON_SVG.encode()).decode(),
        mime_type="image/svg+xml",
        sizes=["any"],
    )
]
