"""The needs boundary: what a tool declares it touches (beside its definition); the policy checks calls against it.

A tool names its needs next to its arguments (``api/tools/*``)::

    ToolSpec("channels_send", ..., ChannelsSendArgs, ..., needs=(ChannelSend("channel"),))

and the guard checks every call against the needs passed in with it (:meth:`~nats_mcp.security.guard.Guard.call`),
never against a table of tool names. An argument naming a guarded resource is marked (:class:`Touches`, through the
``Annotated`` aliases of ``api/schema.py``); :func:`check_declared` refuses a tool whose marked argument no need
names, or whose need names an argument it lacks, so a forgotten declaration fails at registration, not open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

AdminOp = Literal["dlq", "dashboard", "reservations"]
NatsNeed = Literal["read", "write", "server"]
NatsKind = Literal["subjects", "streams", "buckets"]
ResourceKind = Literal["channel", "capability", "stream", "bucket", "subject"]


@dataclass(frozen=True)
class Touches:
    """The mark of an argument that names a guarded resource: some need of its tool must name the argument."""

    kind: ResourceKind


@dataclass(frozen=True)
class ChannelSend:
    """Posting to the channel named by ``arg`` (required): a role must grant ``channels.send`` for it."""

    arg: str = "channel"


@dataclass(frozen=True)
class ChannelRead:
    """Reading the channel named by ``arg``: a role must grant ``channels.read`` for it; without the argument the
    call sees only the channels the principal may read."""

    arg: str = "channel"


@dataclass(frozen=True)
class CapabilityUse:
    """Broadcasting to or claiming from the queue of the capability named by ``arg`` (required): a role must grant
    ``capabilities.<action>`` for it; with ``boundary``, the work boundary that argument names (when given) too,
    in ``capabilities.boundaries`` of the same role."""

    arg: str
    action: Literal["broadcast", "claim"]
    boundary: str | None = None


@dataclass(frozen=True)
class CapabilityRead:
    """Reading the queue of the capability named by ``arg`` (its items, its dead letters): a role must grant claim or
    broadcast for it; without the argument the call sees only the queues the principal may read."""

    arg: str = "capability"


@dataclass(frozen=True)
class Admin:
    """An admin operation: a role must list ``op`` under ``admin`` (else the tool is not even shown)."""

    op: AdminOp


@dataclass(frozen=True)
class NatsAccess:
    """A ``nats_*`` operation: a role must grant the tool by name and ``access`` at all (else it is not shown), and
    each stream, bucket and subject the named arguments hold must be on its read (or write) list."""

    access: NatsNeed
    streams: str | None = None
    buckets: str | None = None
    subjects: str | None = None

    @property
    def checks(self) -> tuple[tuple[str, NatsKind], ...]:
        """(argument, the allow-list its value or values must match), streams first."""
        named: tuple[tuple[str | None, NatsKind], ...] = (
            (self.streams, "streams"),
            (self.buckets, "buckets"),
            (self.subjects, "subjects"),
        )
        return tuple((arg, kind) for arg, kind in named if arg is not None)


@dataclass(frozen=True)
class Reserve:
    """Reserving the project resources (paths, globs) listed in ``arg``: each must lie inside a glob of a role's
    ``reservations`` list (core/pathglob.py decides containment, conservatively)."""

    arg: str = "resources"


@dataclass(frozen=True)
class ReservationsRead:
    """Listing reservations: the call sees only those of paths a role's ``reservations`` globs overlap."""


@dataclass(frozen=True)
class Waits:
    """The call may wait up to ``arg`` ms (``default_ms`` when omitted): while it does, it holds a slot of the
    principal's share of ``pool`` (``claim_waits``: claims waiting for work; ``read_waits``: reads waiting for a
    message)."""

    arg: str = "timeout"
    default_ms: int = 5000
    pool: Literal["claim_waits", "read_waits"] = "claim_waits"


Need = (
    ChannelSend | ChannelRead | CapabilityUse | CapabilityRead | Admin | NatsAccess | Reserve | ReservationsRead | Waits
)
Needs = tuple[Need, ...]

_NATS_KIND: dict[NatsKind, ResourceKind] = {"streams": "stream", "buckets": "bucket", "subjects": "subject"}


def named_args(need: Need) -> tuple[tuple[str, ResourceKind], ...]:
    """The (argument, resource kind) pairs a need covers."""
    if isinstance(need, ChannelSend | ChannelRead):
        return ((need.arg, "channel"),)
    if isinstance(need, CapabilityUse | CapabilityRead):
        return ((need.arg, "capability"),)
    if isinstance(need, NatsAccess):
        return tuple((arg, _NATS_KIND[kind]) for arg, kind in need.checks)
    return ()


def waits(needs: Needs) -> Waits | None:
    """The tool's :class:`Waits`, if it declares one."""
    return next((n for n in needs if isinstance(n, Waits)), None)


def reads_channels(needs: Needs) -> bool:
    return any(isinstance(n, ChannelRead) for n in needs)


def reads_reservations(needs: Needs) -> bool:
    return any(isinstance(n, ReservationsRead) for n in needs)


def reads_capabilities(needs: Needs) -> bool:
    return any(isinstance(n, CapabilityRead) for n in needs)


def uses_queues(needs: Needs) -> bool:
    """Whether the tool reads or takes work items (and so sees only the work boundaries its caller is granted)."""
    return any(isinstance(n, CapabilityRead | CapabilityUse) for n in needs)


class UndeclaredNeed(ValueError):
    """A tool whose arguments and declared needs disagree: it must not be registered."""


def check_declared(tool: str, marked: Mapping[str, ResourceKind | None], needs: Needs) -> None:
    """Refuse a tool with an argument marked as naming a resource that no need covers, or a need naming an argument
    the tool lacks (or one not marked as that kind of resource).

    ``marked`` maps every argument of the tool to its :class:`Touches` kind (None: unmarked).
    """
    covered: set[str] = set()
    for need in needs:
        for arg, kind in named_args(need):
            if arg not in marked:
                raise UndeclaredNeed(f"tool {tool}: need {need!r} names argument {arg!r}, which the tool lacks")
            if marked[arg] != kind:
                raise UndeclaredNeed(
                    f"tool {tool}: need {need!r} takes argument {arg!r} as a {kind}, but the argument is not marked "
                    f"as one (mark it with a {kind} type of api/schema.py)"
                )
            covered.add(arg)
        if isinstance(need, Waits | Reserve) and need.arg not in marked:
            raise UndeclaredNeed(f"tool {tool}: need {need!r} names argument {need.arg!r}, which the tool lacks")
    for arg, touched in marked.items():
        if touched is not None and arg not in covered:
            raise UndeclaredNeed(
                f"tool {tool}: argument {arg!r} names a {touched} but no need covers it; declare one in its needs "
                "(security/needs.py)"
            )
