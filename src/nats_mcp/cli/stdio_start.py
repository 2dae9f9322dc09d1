"""The stdio session's start from the fast path: the hand-over from the start-up cache's front, or the recording of
the cache entry for the next start (cli/fastpath.py makes the :class:`Startup`; cli/serve_cmd.py serves with it).

Imported on the front's path: only the standard library at the top, the rest inside the functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats_mcp.config.loader import LoadedSettings
    from nats_mcp.transports.stdio_front import Front

log = logging.getLogger("nats_mcp.serve")

RECORD_WAIT_S = 10
"""At the end of a stdio session, how long the start-up cache's recording (a few in-memory exchanges) may finish."""


@dataclass
class Startup:
    """How the fast path began: the front answering from the cache, or (no entry) the key to record one under."""

    key: str
    front: Front | None = None
    deps: dict[str, str | None] = field(default_factory=dict)


def cache_deps(loaded: LoadedSettings) -> dict[str, str | None]:
    """The files the answers depend on, by content hash (None: absent): the settings' files and the policy."""
    from nats_mcp.transports.startup_cache import file_hash

    paths = [*loaded.consulted]
    if loaded.settings.security.policy_file is not None:
        paths.append(str(loaded.settings.security.policy_file))
    return {path: file_hash(path) for path in paths}


async def record_answers(server: Any, startup: Startup) -> None:
    """The start-up cache entry of this key, written from the built server (a failure costs only the speed-up)."""
    from nats_mcp.transports import startup_cache
    from nats_mcp.transports.stdio_handover import capture

    try:
        startup_cache.store(startup.key, startup.deps, await capture(server))
    except Exception:  # an unwritable cache directory, an SDK that answers otherwise: serve as without a cache
        log.warning("could not record the start-up cache", exc_info=True)


async def serve_session(server: Any, startup: Startup) -> None:
    """``serve_stdio`` from where the front left the session; without a front, recording the entry for the next."""
    import asyncio  # here: the front's path (this module's import) stays on the standard library's light part
    import contextlib

    from nats_mcp.transports.stdio import serve_stdio

    opening = startup.front.handover() if startup.front is not None else None
    if opening is not None:
        log.info("the start-up cache answered %d message(s) before the server was ready", opening.answered)
    recording = asyncio.create_task(record_answers(server, startup)) if startup.front is None else None
    try:
        await serve_stdio(server, opening)
    finally:
        if recording is not None:  # a short session still leaves the entry for the next one
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recording, RECORD_WAIT_S)
