"""The bus's names for nats-py's client and JetStream types, for the domain's annotations (coord/ has no nats-py)."""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, StreamConfig, StreamInfo, StreamState
from nats.js.kv import KeyValue

__all__ = [
    "Client",
    "ConsumerConfig",
    "ConsumerInfo",
    "JetStreamContext",
    "KeyValue",
    "Msg",
    "StreamConfig",
    "StreamInfo",
    "StreamState",
]
