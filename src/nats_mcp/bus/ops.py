"""The NATS operations boundary: the JetStream management API, stored-message and KV reads, publish/request and
server information, as the ``nats_*`` tools need them (bounded scans; no policy here, see ``coord/ops.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, RawStreamMsg, StreamConfig, StreamInfo
from nats.js.errors import APIError, ServiceUnavailableError
from nats.js.kv import KeyValue

MONITOR_TIMEOUT_S = 3.0
MONITOR_MAX_BYTES = 1024 * 1024
"""A monitoring answer larger than this is not read (varz/jsz are a few KiB)."""


@dataclass(frozen=True)
class Names:
    """Names read from a paged ``*.NAMES`` API, sorted; ``complete`` is False when the scan stopped at its cap."""

    names: list[str]
    complete: bool


async def _api(nc: Client, subject: str, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    try:
        reply = await nc.request(subject, json.dumps(request).encode(), timeout=timeout)
    except NoRespondersError:
        raise ServiceUnavailableError from None
    answer: dict[str, Any] = json.loads(reply.data)
    error = answer.get("error")
    if error:
        raise APIError.from_error(error)
    return answer


async def _names(
    nc: Client, subject: str, key: str, max_scan: int, timeout: float, extra: Mapping[str, Any] | None = None
) -> Names:
    """Every name of a paged names API (the server pages by 1024), up to ``max_scan``."""
    found: list[str] = []
    while len(found) < max_scan:
        answer = await _api(nc, subject, {"offset": len(found), **(extra or {})}, timeout)
        page = answer.get(key) or []
        found.extend(str(n) for n in page)
        if not page or len(found) >= int(answer.get("total", 0)):
            return Names(sorted(found), True)
    return Names(sorted(found[:max_scan]), False)


async def stream_names(nc: Client, prefix: str, max_scan: int, timeout: float = 5.0) -> Names:
    return await _names(nc, f"{prefix}.STREAM.NAMES", "streams", max_scan, timeout)


async def consumer_names(nc: Client, prefix: str, stream: str, max_scan: int, timeout: float = 5.0) -> Names:
    return await _names(nc, f"{prefix}.CONSUMER.NAMES.{stream}", "consumers", max_scan, timeout)


async def stream_infos(js: JetStreamContext, names: list[str]) -> list[StreamInfo]:
    """Info of each stream, concurrently (a stream deleted meanwhile raises NotFoundError)."""
    return list(await asyncio.gather(*(js.stream_info(n) for n in names)))


async def consumer_infos(js: JetStreamContext, stream: str, names: list[str]) -> list[ConsumerInfo]:
    return list(await asyncio.gather(*(js.consumer_info(stream, n) for n in names)))


async def get_message(js: JetStreamContext, stream: str, seq: int | None, last_by_subject: str | None) -> RawStreamMsg:
    """One stored message through the stream leader (works without ``allow_direct``); NotFoundError if none."""
    if last_by_subject is not None:
        return await js.get_last_msg(stream, last_by_subject)
    return await js.get_msg(stream, seq=seq)


async def add_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    return await js.add_stream(config)


async def update_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    return await js.update_stream(config)


async def purge_stream(js: JetStreamContext, name: str, subject: str | None, keep: int | None) -> bool:
    return await js.purge_stream(name, subject=subject, keep=keep)


async def delete_stream(js: JetStreamContext, name: str) -> bool:
    return await js.delete_stream(name)


async def add_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> ConsumerInfo:
    return await js.add_consumer(stream, config)


async def delete_consumer(js: JetStreamContext, stream: str, name: str) -> bool:
    return await js.delete_consumer(stream, name)


# -- KV ---------------------------------------------------------------------------------------------


async def kv(js: JetStreamContext, bucket: str) -> KeyValue:
    """A bound bucket (one stream-info round trip); BucketNotFoundError if there is none."""
    return await js.key_value(bucket)


async def kv_keys(bucket: KeyValue, pattern: str, max_scan: int) -> Names:
    """Live keys matching ``pattern`` (NATS subject syntax), up to ``max_scan``, sorted. Headers only."""
    watcher = await bucket.watch(pattern, headers_only=True, ignore_deletes=True)
    keys: set[str] = set()
    try:
        while len(keys) < max_scan:
            entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
            if entry is None:  # the end of the initial values
                return Names(sorted(keys), True)
            keys.add(entry.key)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return Names(sorted(keys), False)


# -- core NATS --------------------------------------------------------------------------------------


async def publish(nc: Client, subject: str, payload: bytes, headers: dict[str, str] | None) -> None:
    """Publish and flush, so a call that returns has handed the message to the server."""
    await nc.publish(subject, payload, headers=headers)
    await nc.flush(timeout=5)


async def request(nc: Client, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float) -> Msg:
    """One request, its first reply (NoRespondersError / TimeoutError from nats-py otherwise)."""
    return await nc.request(subject, payload, timeout=timeout, headers=headers)


# -- server information -----------------------------------------------------------------------------


def connection_info(nc: Client) -> dict[str, Any]:
    """What the connected server said about itself in its INFO (no credentials are in it)."""
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    keep = (
        "server_id",
        "server_name",
        "version",
        "go",
        "cluster",
        "domain",
        "jetstream",
        "max_payload",
        "proto",
        "headers",
        "tls_required",
        "connect_urls",
    )
    return {k: info[k] for k in keep if k in info}


async def monitor(url: str, endpoint: str) -> dict[str, Any]:
    """One JSON document from nats-server's HTTP monitoring port (``varz``, ``jsz``, ...)."""
    import aiohttp  # only with a monitor_url: keeps it out of every server's start-up

    target = f"{url.rstrip('/')}/{endpoint}"
    timeout = aiohttp.ClientTimeout(total=MONITOR_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(target) as response:
        response.raise_for_status()
        body = await response.content.read(MONITOR_MAX_BYTES + 1)
    if len(body) > MONITOR_MAX_BYTES:
        raise ValueError(f"{endpoint} answered more than {MONITOR_MAX_BYTES} bytes")
    answer: dict[str, Any] = json.loads(body)
    return answer
