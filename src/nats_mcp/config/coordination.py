"""The coordination settings boundary: the sections coord/ is tuned by (channels, work, presence, input limits)."""

from __future__ import annotations

from pydantic import Field, field_validator

from nats_mcp.config.section import Section, duration_seconds
from nats_mcp.core.names import NAME_PATTERN


class ChannelSettings(Section):
    """One configured channel (Warp's ``channels[]`` entry)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1, max_length=1024)
    max_messages: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_age: str = "24h"

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("description must not be blank")
        return value

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @property
    def max_age_seconds(self) -> float:
        return duration_seconds(self.max_age)


DEFAULT_CHANNELS = [
    ChannelSettings(name="roadmap", description="Discussion about project roadmap and planning"),
    ChannelSettings(name="parallel-work", description="Coordination for parallel work among agents"),
    ChannelSettings(name="errors", description="Error reporting and troubleshooting"),
]


class WorkSettings(Section):
    """Work-queue knobs (Warp's ``workQueue`` block and ``WORKQUEUE_*`` variables, which take effect here)."""

    ack_timeout_ms: int = Field(default=300_000, ge=1000, le=7 * 86_400_000)
    max_attempts: int = Field(default=3, ge=1, le=1000)
    dlq_ttl_ms: int = Field(default=604_800_000, ge=1000)
    retry_backoff_ms: list[int] = Field(default_factory=lambda: [5_000, 30_000, 120_000], min_length=1)
    max_bytes: int | None = Field(default=128 * 1024 * 1024, ge=64 * 1024)
    """Room for queued work per namespace (reserved in JetStream); when full, new work is refused with
    ``limit_exceeded`` and claiming, completing and failing go on — the queue never takes the room its item
    state needs. None: no limit of its own (then a full JetStream store could stop claims)."""

    @field_validator("retry_backoff_ms")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise ValueError("backoff steps must be >= 0 ms")
        return value


class PresenceSettings(Section):
    """Heartbeats, when an agent reads as offline, and how long offline entries are kept."""

    heartbeat_interval_s: float = Field(default=60.0, ge=0.05, le=3600)
    stale_after_intervals: int = Field(default=3, ge=2, le=100)
    retention_h: float = Field(default=24.0, gt=0, le=24 * 365)
    gc_interval_s: float = Field(default=300.0, ge=0.1, le=86_400)

    @property
    def stale_after_s(self) -> float:
        return self.heartbeat_interval_s * self.stale_after_intervals


class LimitsSettings(Section):
    """Input size limits (over a limit: ``limit_exceeded``, nothing written)."""

    message_bytes: int = Field(default=64 * 1024, ge=1, le=900 * 1024)
    description_bytes: int = Field(default=8 * 1024, ge=1, le=900 * 1024)
    metadata_bytes: int = Field(default=16 * 1024, ge=2, le=900 * 1024)
    metadata_depth: int = Field(default=16, ge=1, le=64)
    capabilities_max: int = Field(default=64, ge=1, le=1024)
    inbox_max_messages: int = Field(default=1000, ge=1, le=1_000_000)
    inbox_max_age: str = "7d"

    @field_validator("inbox_max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_seconds(value)
        return value
