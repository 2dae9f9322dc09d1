"""The resource-setup boundary: create streams and KV buckets, and bring existing ones to the configured limits.

Settings apply to existing resources too, not only at creation (Warp never updated an existing
stream): the fields we manage are compared and, where they differ, the stream is updated and the
difference is logged.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from nats_mcp.bus.failover import LeaderFirstKeyValue

log = logging.getLogger("nats_mcp.bus.setup")

# Fields a running stream may change without being recreated; anything else we set is creation-only.
_UPDATABLE = (
    "description",
    "subjects",
    "max_msgs",
    "max_bytes",
    "max_age",
    "max_msgs_per_subject",
    "max_msg_size",
    "discard",
    "discard_new_per_subject",
    "num_replicas",
    "duplicate_window",
    "allow_direct",
    "allow_rollup_hdrs",
    "deny_delete",
    "deny_purge",
    "allow_msg_ttl",
    "allow_atomic",
)


def _differences(current: StreamConfig, wanted: StreamConfig) -> dict[str, tuple[Any, Any]]:
    diff: dict[str, tuple[Any, Any]] = {}
    for name in _UPDATABLE:
        want = getattr(wanted, name)
        if want is None:
            continue  # not managed by us
        have = getattr(current, name)
        if name == "subjects":
            have, want = sorted(have or []), sorted(want)
        if have != want:
            diff[name] = (have, want)
    return diff


async def ensure_stream(js: JetStreamContext, wanted: StreamConfig, *, replicas: int | None = None) -> StreamInfo:
    """Create ``wanted`` or update the existing stream's managed fields to match; returns the stream's info.

    ``replicas`` (``nats.replicas``) overrides the config's; an existing stream is scaled to it.
    """
    if replicas is not None:
        wanted = replace(wanted, num_replicas=replicas)
    assert wanted.name, "a stream config needs a name"
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        return await js.add_stream(wanted)
    diff = _differences(info.config, wanted)
    if not diff:
        return info
    merged = replace(info.config, **{k: v[1] for k, v in diff.items()})
    log.info(
        "updating stream %s to the configured settings: %s",
        wanted.name,
        ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in diff.items()),
    )
    return await js.update_stream(merged)


async def ensure_kv(
    js: JetStreamContext,
    bucket: str,
    *,
    history: int = 1,
    ttl: float | None = None,
    description: str = "",
    replicas: int = 1,
) -> KeyValue:
    """Open a KV bucket, creating it if needed; history, TTL and replicas of an existing bucket are brought in line.

    Buckets allow direct gets, and the returned KeyValue reads from a follower when no leader answers (see
    :mod:`nats_mcp.bus.failover`).
    """
    try:
        kv = await js.key_value(bucket)
    except NotFoundError:
        made = await js.create_key_value(
            bucket=bucket, history=history, ttl=ttl, description=description or None, replicas=replicas, direct=True
        )
        return LeaderFirstKeyValue(made)
    stream = f"KV_{bucket}"
    info = await js.stream_info(stream)
    wanted = replace(
        info.config,
        max_msgs_per_subject=history,
        max_age=ttl if ttl is not None else info.config.max_age,
        num_replicas=replicas,
        allow_direct=True,  # a follower answers a get while the bucket elects a leader (bus/failover.py)
    )
    diff = _differences(info.config, wanted)
    if set(diff) == {"allow_direct"}:
        # A bucket made before buckets allowed direct gets: an admin brings it over (`nats-mcp provision`), a
        # least-privilege agent may not update streams and goes on with it as it is (reads wait for its leader).
        try:
            await ensure_stream(js, wanted)
        except nats.errors.Error as exc:
            log.warning(
                "KV bucket %s does not allow direct gets and could not be changed (%s): while it elects a leader "
                "its reads wait; run `nats-mcp provision` as the admin user",
                bucket,
                type(exc).__name__,
            )
    elif diff:
        await ensure_stream(js, wanted)
    return LeaderFirstKeyValue(kv)


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> ConsumerInfo:
    """Create the durable consumer ``config`` of ``stream``, or update it to match (the server's create is idempotent
    for an equal config and updates the fields a consumer may change)."""
    return await js.add_consumer(stream, config)


def stream_config(**params: Any) -> StreamConfig:
    """A StreamConfig from keyword arguments, rejecting unknown names (typos would be silently ignored)."""
    known = {f.name for f in fields(StreamConfig)}
    unknown = set(params) - known
    if unknown:
        raise TypeError(f"unknown stream settings: {', '.join(sorted(unknown))}")
    return StreamConfig(**params)
