"""The project settings boundary: the project this process serves and the local agent's identity overrides."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from nats_mcp.config.section import Section, name_check
from nats_mcp.core.names import TYPE_NAME_PATTERN, validate_guid, validate_project_id


class ProjectSettings(Section):
    """Which project this process serves (Warp: ``MCP_PROJECT_PATH``, ``LOOMINAL_PROJECT_ID``)."""

    path: Path = Field(default_factory=Path.cwd)
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else name_check(validate_project_id, value)

    @field_validator("path")
    @classmethod
    def _abs(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class IdentitySettings(Section):
    """Local (stdio) agent identity overrides (Warp: ``LOOMINAL_AGENT_ID``, ``LOOMINAL_SUBAGENT_TYPE``)."""

    agent_id: str | None = None
    subagent_type: str | None = Field(default=None, pattern=TYPE_NAME_PATTERN)

    @field_validator("agent_id")
    @classmethod
    def _guid(cls, value: str | None) -> str | None:
        return None if value is None else name_check(validate_guid, value)

    @field_validator("subagent_type", mode="before")
    @classmethod
    def _empty(cls, value: object) -> object:
        return None if value == "" else value
