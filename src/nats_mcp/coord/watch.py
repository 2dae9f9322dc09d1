"""The change-signal boundary of the domain: "tell me when a channel gets a message", "... when my inbox gets mail".

Built on :mod:`nats_mcp.bus.subjects` (one core subscription per subject, signals only, replayed after
reconnects); callers name channels and callers here, never subjects.
"""

from __future__ import annotations

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.subjects import Listener, SubjectWatcher, Watch
from nats_mcp.coord.context import Caller

__all__ = ["ChangeWatcher", "Listener", "Watch"]


class ChangeWatcher:
    """The domain's view of change signals: "tell me when a channel gets a message", "... when my inbox gets mail".

    Callers name channels and callers, never subjects; the subjects are the ones the channel and inbox
    services write to (:class:`~nats_mcp.bus.layout.Layout`).
    """

    def __init__(self, conn: NatsConnection, layout: Layout) -> None:
        self._layout = layout
        self.subjects = SubjectWatcher(conn)

    async def channel(self, channel: str, listener: Listener) -> Watch:
        """Signals for every message sent to ``channel`` of this namespace (the name is validated here)."""
        return await self.subjects.watch(self._layout.channel_subject(channel), listener)

    async def inbox(self, caller: Caller, listener: Listener) -> Watch:
        """Signals for every DM stored in ``caller``'s own inbox (only the owner's subject is ever watched)."""
        return await self.subjects.watch(Layout(caller.namespace).inbox_subject(caller.guid), listener)

    async def reservations(self, listener: Listener) -> Watch:
        """Signals for every change of the namespace's reservation table (coord/reservations)."""
        return await self.subjects.watch(self._layout.reservations_subject, listener)

    async def close(self) -> None:
        await self.subjects.close()
