"""Stream API calls nats-py does not make the way we need: deleting a message without erasing it, and
reading the next message of a subject through the stream leader (for streams without direct gets).

``$JS.API.STREAM.MSG.DELETE.<stream>`` with ``{"seq": N, "no_erase": true}`` answers
``{"success": true}`` to the one caller whose delete removed the message, so a delete is a claim:
two callers deleting the same sequence never both succeed. What the others get depends on the store
(nats-server 2.15, single server and R3 alike):

* file storage: ``{"error": {"code": 500, "err_code": 10057, "description": "no message found"}}``
  (10057 is "delete failed"; past the last sequence the description is ``stream store EOF`` instead);
* memory storage: ``{"error": {"code": 400, "err_code": 10043, "description": "sequence N not found"}}``
  (also past the last sequence);
* no such stream: ``{"error": {"code": 404, "err_code": 10059, "description": "stream not found"}}``.

``$JS.API.STREAM.MSG.GET.<stream>`` with ``{"seq": N, "next_by_subj": S}`` answers
``{"message": {"subject", "seq", "data" (base64), "hdrs" (base64, optional), "time"}}`` for the first
message on S at or after N, or ``404`` with err_code 10037 ("no message found") or 10059 (no stream).
It works whether or not the stream allows direct gets.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.errors import APIError, ServiceUnavailableError

from nats_mcp.bus.directget import StoredMsg

NO_MESSAGE_FOUND = 10037
SEQUENCE_NOT_FOUND = 10043
DELETE_FAILED = 10057
STREAM_NOT_FOUND = 10059
_GONE = frozenset({NO_MESSAGE_FOUND, SEQUENCE_NOT_FOUND, STREAM_NOT_FOUND})


async def delete_msg(
    nc: Client, stream: str, seq: int, *, erase: bool = False, prefix: str = "$JS.API", timeout: float = 5.0
) -> bool:
    """Delete one stored message: True if this call removed it, False if it was already gone.

    Without ``erase`` (``no_erase``) the message is unreachable at once but its bytes stay in the block
    file until the block is compacted or dropped; a secure erase costs ~10x per delete on file storage.
    Any other failure raises nats-py's :class:`~nats.js.errors.APIError` (the subclass for its code);
    no JetStream at all raises :class:`~nats.js.errors.ServiceUnavailableError`.
    """
    request = {"seq": seq} if erase else {"seq": seq, "no_erase": True}
    answer = await _api(nc, f"{prefix}.STREAM.MSG.DELETE.{stream}", request, timeout)
    if answer.get("success") is True:
        return True
    error = answer.get("error") or {}
    if already_gone(error):
        return False
    raise APIError.from_error(error)


async def delete_msgs(
    nc: Client,
    stream: str,
    seqs: Sequence[int],
    *,
    erase: bool = False,
    prefix: str = "$JS.API",
    timeout: float = 5.0,
) -> list[bool | BaseException]:
    """:func:`delete_msg` of each sequence, concurrently; each result is the delete's outcome or its error."""
    deletes = (delete_msg(nc, stream, seq, erase=erase, prefix=prefix, timeout=timeout) for seq in seqs)
    return list(await asyncio.gather(*deletes, return_exceptions=True))


def already_gone(error: Mapping[str, Any]) -> bool:
    """Whether a failed delete's error means the message was not there any more (someone else deleted it)."""
    code = error.get("err_code")
    description = str(error.get("description", "")).lower()
    return code in _GONE or (
        code == DELETE_FAILED and ("no message found" in description or "not found" in description)
    )


async def get_next(
    nc: Client, stream: str, seq: int, subject: str, *, prefix: str = "$JS.API", timeout: float = 5.0
) -> StoredMsg | None:
    """The first stored message on ``subject`` (wildcards allowed) with sequence >= ``seq``, through the
    stream leader's API: one message per round trip, but no need for ``allow_direct``.

    None when there is none, or no such stream. Other failures raise nats-py's
    :class:`~nats.js.errors.APIError` (:class:`~nats.js.errors.ServiceUnavailableError`: no JetStream).
    """
    answer = await _api(nc, f"{prefix}.STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject}, timeout)
    error = answer.get("error")
    if error:
        if error.get("code") == 404:  # 10037 no message found, 10059 stream not found
            return None
        raise APIError.from_error(error)
    found = answer["message"]
    return StoredMsg(
        seq=int(found["seq"]),
        subject=str(found.get("subject", "")),
        data=base64.b64decode(found.get("data") or ""),
        time=str(found.get("time", "")),
    )


async def _api(nc: Client, api_subject: str, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """One JetStream API request; its JSON answer. No responders (no JetStream) is ServiceUnavailableError."""
    try:
        reply = await nc.request(api_subject, json.dumps(request).encode(), timeout=timeout)
    except NoRespondersError:
        raise ServiceUnavailableError from None
    answer: dict[str, Any] = json.loads(reply.data)
    return answer
