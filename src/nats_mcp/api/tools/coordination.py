"""The coordination tool table: every ``warp_*`` tool, assembled from its family's module, in the listed order.

Each family module (handles, channels, registry, direct, work, dlq) holds its tools whole: input model (validated
there: ``invalid_argument``), a handler calling the domain facade, output model (the ``outputSchema``; results are
validated against it before they leave), Markdown rendering, and the needs the guard checks (security/needs.py).
Names and argument names follow Warp's, so existing agent prompts keep working; the prefix (default ``warp_``)
comes from settings.
"""

from __future__ import annotations

from nats_mcp.api.tools.base import ToolSpec
from nats_mcp.api.tools.channels import CHANNEL_TOOLS
from nats_mcp.api.tools.direct import DIRECT_TOOLS
from nats_mcp.api.tools.dlq import DLQ_TOOLS
from nats_mcp.api.tools.handles import HANDLE_TOOLS
from nats_mcp.api.tools.natsops import OPS_TOOLS
from nats_mcp.api.tools.registry import REGISTRY_TOOLS
from nats_mcp.api.tools.reservations import RESERVATION_TOOLS
from nats_mcp.api.tools.work import WORK_TOOLS
from nats_mcp.security.needs import Needs

TOOLS: tuple[ToolSpec, ...] = HANDLE_TOOLS + CHANNEL_TOOLS + REGISTRY_TOOLS + DIRECT_TOOLS + WORK_TOOLS + DLQ_TOOLS
TOOLS += RESERVATION_TOOLS


def needs_of(suffix: str) -> Needs:
    """The needs a tool declares, by its name without prefix (``()`` for a name that is no tool: a fixture's, a
    query's), for requests that use a tool without calling it: prompts, completions, resource reads."""
    return _NEEDS.get(suffix, ())


_NEEDS: dict[str, Needs] = {spec.suffix: spec.needs for spec in TOOLS} | {spec.suffix: spec.needs for spec in OPS_TOOLS}
