"""The direct-message format boundary: what a sender gives checked (type, content size, read limit), the
filters of a read, and stored inbox payloads parsed back into messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats_mcp.coord.errors import InvalidArgument, InvalidName, LimitExceeded
from nats_mcp.coord.models import DirectMessage
from nats_mcp.core.names import InvalidNameError, validate_guid, validate_type_name, validate_uuid

MAX_READ_LIMIT = 100


# -- validation ----------------------------------------------------------------------------------


def check_message_type(message_type: object) -> str:
    try:
        return validate_type_name(message_type, "messageType")
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


def check_sender_filter(sender_guid: object) -> str:
    try:
        return validate_guid(sender_guid, "senderGuid")
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


def check_message_id(value: object, what: str) -> str:
    """A thread id or a message id (``threadId``, ``inReplyTo``): the UUID form the server gives both."""
    try:
        return validate_uuid(value, what)
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


def check_content(content: object, max_bytes: int) -> str:
    if not isinstance(content, str) or not content.strip():
        raise InvalidArgument("message must not be empty (nor white space only), as a channel message")
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON escapes can carry
        raise InvalidArgument("message must be valid Unicode text") from None
    if size > max_bytes:
        raise LimitExceeded(
            f"message is {size} bytes; the limit is {max_bytes} bytes (limits.message_bytes): "
            "shorten it, or send a pointer to where the full text lives"
        )
    return content


def check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_READ_LIMIT:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_READ_LIMIT}")
    return limit


# -- stored messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What a read keeps: mail of one message type, from one sender and/or of one thread."""

    message_type: str | None = None
    sender_guid: str | None = None
    thread_id: str | None = None

    @classmethod
    def of(cls, message_type: str | None, sender_guid: str | None, thread_id: str | None = None) -> Filters:
        return cls(
            check_message_type(message_type) if message_type is not None else None,
            check_sender_filter(sender_guid) if sender_guid is not None else None,
            check_message_id(thread_id, "threadId") if thread_id is not None else None,
        )

    @property
    def active(self) -> bool:
        return self.message_type is not None or self.sender_guid is not None or self.thread_id is not None

    def matches(self, message: DirectMessage) -> bool:
        return (
            (self.message_type is None or message.messageType == self.message_type)
            and (self.sender_guid is None or message.senderGuid == self.sender_guid)
            and (self.thread_id is None or message.threadId == self.thread_id)
        )

    def binding(self, owner: str) -> dict[str, str | None]:
        """What a cursor is bound to besides tool and namespace: the inbox owner and these filters."""
        binding = {"owner": owner, "messageType": self.message_type, "senderGuid": self.sender_guid}
        if self.thread_id is not None:  # only then: cursors made before threads existed stay valid
            binding["threadId"] = self.thread_id
        return binding


_FIELDS = (
    "id",
    "senderGuid",
    "senderHandle",
    "messageType",
    "content",
    "metadata",
    "timestamp",
    "threadId",
    "inReplyTo",
)


def parse_stored(data: bytes, owner: str) -> DirectMessage | None:
    """The DM in a stored payload, or None when it is not one of ours (or not addressed to ``owner``).

    Unknown fields are ignored, so mail written by a newer server version is still readable.
    """
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("recipientGuid") != owner:
            return None
        return DirectMessage.model_validate({k: body[k] for k in _FIELDS if k in body})
    except ValueError:  # JSONDecodeError, UnicodeDecodeError and pydantic's ValidationError
        return None
