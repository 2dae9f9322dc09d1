"""The settings boundary: one model composing every section (``config/*.py``), validated as a whole.

Build it with :func:`nats_mcp.config.loader.load_settings`, which layers CLI flags, environment, YAML, project and
user files over the defaults and records where each value came from.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from nats_mcp.config.coordination import (
    DEFAULT_CHANNELS,
    ChannelSettings,
    LimitsSettings,
    PresenceSettings,
    WorkSettings,
)
from nats_mcp.config.dashboard import DashboardSettings
from nats_mcp.config.grpc import GrpcSettings
from nats_mcp.config.http import HttpSettings
from nats_mcp.config.nats import EmbeddedSettings, NatsSettings
from nats_mcp.config.observe import LoggingSettings, ObserveSettings
from nats_mcp.config.ops import NatsOpsSettings
from nats_mcp.config.project import IdentitySettings, ProjectSettings
from nats_mcp.config.security import SecuritySettings
from nats_mcp.core.names import NAME_PATTERN, RESERVED_NAMESPACES


class Settings(BaseSettings):
    """Every setting of nats-mcp. Build it with :func:`load_settings`, which records each value's source."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    namespace: str | None = Field(default=None, pattern=NAME_PATTERN)
    channels: list[ChannelSettings] = Field(default_factory=lambda: [c.model_copy() for c in DEFAULT_CHANNELS])
    tool_prefix: str = Field(default="warp_", pattern=r"^[a-z][a-z0-9_]{0,15}$")
    transport: Literal["stdio", "http", "grpc"] = "stdio"

    @field_validator("namespace")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        if value in RESERVED_NAMESPACES:  # it would sit under a deployment-wide subject
            raise ValueError(f"namespace {value!r} is reserved; choose another name")
        return value

    nats: NatsSettings = Field(default_factory=NatsSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    project: ProjectSettings = Field(default_factory=ProjectSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    work: WorkSettings = Field(default_factory=WorkSettings)
    presence: PresenceSettings = Field(default_factory=PresenceSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    grpc: GrpcSettings = Field(default_factory=GrpcSettings)
    nats_ops: NatsOpsSettings = Field(default_factory=NatsOpsSettings)
    observe: ObserveSettings = Field(default_factory=ObserveSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The layers are merged by load_settings (which tracks provenance); the model only validates.
        return (init_settings,)

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[ChannelSettings]) -> list[ChannelSettings]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate channel names: {', '.join(dupes)}")
        return value

    @property
    def resolved_namespace(self) -> str:
        """The configured namespace, else Warp's derivation: sha256(project path)[:16]."""
        if self.namespace:
            return self.namespace
        return hashlib.sha256(str(self.project.path).encode()).hexdigest()[:16]

    @property
    def resolved_project_id(self) -> str:
        """``LOOMINAL_PROJECT_ID`` when set, else sha256(project path)[:16] (as Warp)."""
        return self.project.id or hashlib.sha256(str(self.project.path).encode()).hexdigest()[:16]
