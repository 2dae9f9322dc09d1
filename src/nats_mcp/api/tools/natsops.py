"""The ``nats_*`` tool table: the NATS operations group, assembled from its families, in the listed order.

Registered only when ``nats_ops.enabled`` is set, under the fixed prefix ``nats_``; every call still needs a
policy role that grants the tool and the streams, buckets or subjects it names (each tool's ``NatsAccess`` need,
checked by security/policy.py). The families: nats_messages (server info, publish, request), nats_streams,
nats_consumers, nats_kv; what they share is in nats_common.
"""

from __future__ import annotations

from nats_mcp.api.tools.base import OpsSpec
from nats_mcp.api.tools.nats_consumers import CONSUMER_READS, CONSUMER_WRITES
from nats_mcp.api.tools.nats_kv import KV_READS, KV_WRITES
from nats_mcp.api.tools.nats_messages import MESSAGE_TOOLS, SERVER_TOOLS
from nats_mcp.api.tools.nats_streams import STREAM_READS, STREAM_WRITES

__all__ = ["OPS_TOOLS", "PREFIX", "OpsSpec"]

PREFIX = "nats_"
OPS_TOOLS: list[OpsSpec] = [
    *SERVER_TOOLS,
    *STREAM_READS,
    *CONSUMER_READS,
    *KV_READS,
    *MESSAGE_TOOLS,
    *STREAM_WRITES,
    *CONSUMER_WRITES,
    *KV_WRITES,
]
