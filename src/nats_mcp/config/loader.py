"""The loading boundary: settings read from every source into one validated model, each value's source recorded.

Precedence (highest first): CLI flags > environment (``NATS_MCP_*``, then Warp's names) > YAML file
(``--config`` / ``NATS_MCP_CONFIG``) > project file ``.mcp-config.json`` (Warp's schema, searched in the
project path and up to 4 parents) > user files (``~/.config/nats-mcp/config.yaml`` in our schema,
``~/.nats-mcp/config.json`` in Warp's) > defaults. Every value remembers where it came from, so an
invalid one is reported with its key, its source and what is allowed, and ``config show`` can say
where each value was set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from nats_mcp.config.leaves import ENV_PREFIX, LEAVES, SPECIAL_ENV, WARP_ENV, KeyPath, Leaf
from nats_mcp.config.settings import Settings
from nats_mcp.core.redact import MASK, redact

PROJECT_FILE = ".mcp-config.json"
PROJECT_SEARCH_PARENTS = 4


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key, its source and what is allowed."""


# --------------------------------------------------------------------------------------------------
# Layers


@dataclass
class Layer:
    """One source of settings: a nested dict and, per leaf path, a human label of where it came from."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    sources: dict[KeyPath, str] = field(default_factory=dict)

    def set(self, path: KeyPath, value: Any, source: str) -> None:
        node = self.data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        self.sources[path] = source

    def get(self, path: KeyPath) -> Any:
        node: Any = self.data
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def _flatten(data: Mapping[str, Any], prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
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
    known = set(by_env) | {f"{v}_FILE" for v in by_env} | SPECIAL_ENV
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
    import yaml  # here: most processes read no YAML file, and PyYAML costs ~10 ms of a CLI command's start (issue 22)

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


def project_candidates(project_path: Path) -> list[Path]:
    """Where ``.mcp-config.json`` is looked for: the project path and up to 4 parents (Warp's search)."""
    found = []
    current = project_path
    for _ in range(PROJECT_SEARCH_PARENTS + 1):
        found.append(current / PROJECT_FILE)
        if current.parent == current:
            break
        current = current.parent
    return found


def find_project_file(project_path: Path) -> Path | None:
    """The first project file of :func:`project_candidates` that exists."""
    return next((candidate for candidate in project_candidates(project_path) if candidate.is_file()), None)


def user_candidates(environ: Mapping[str, str]) -> list[tuple[Path, str]]:
    """The user files that may exist, lowest precedence first."""
    home = Path(environ.get("HOME") or Path.home())
    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [(home / ".nats-mcp" / "config.json", "warp"), (xdg / "nats-mcp" / "config.yaml", "yaml")]


def user_files(environ: Mapping[str, str]) -> list[tuple[Path, str]]:
    """The user files that exist, lowest precedence first."""
    return [(p, kind) for p, kind in user_candidates(environ) if p.is_file()]


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
    consulted: list[str] = field(default_factory=list)
    """Every file whose content or existence the settings depend on (read or looked for)."""

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


def _merge(layers: list[Layer]) -> tuple[dict[str, Any], dict[KeyPath, str]]:
    merged: dict[str, Any] = {}
    sources: dict[KeyPath, str] = {}
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


def _keep_defaults(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with what a section given only in part must keep of its field's own default.

    A layer that sets one key of a section (``security.pools.claim_waits.per_principal``) gives pydantic a partial
    dict, which it validates against the section's class alone: keys without a class default were "required", and
    keys whose field default differs from the class's (``rate_per_address`` is 50/s, a ``RateSettings`` 20/s)
    silently took the class's. Those keys are filled from the field's default; every other key is left to pydantic.
    """
    out = dict(data)
    for name, info in model.model_fields.items():
        part = out.get(name)
        section = info.annotation
        if not isinstance(part, dict) or not (isinstance(section, type) and issubclass(section, BaseModel)):
            continue
        default = info.get_default(call_default_factory=True)
        filled = dict(part)
        if isinstance(default, section):
            for key, sub in section.model_fields.items():
                if key in filled:
                    continue
                value = getattr(default, key)
                if sub.is_required() or value != sub.get_default(call_default_factory=True):
                    filled[key] = value
        out[name] = _keep_defaults(section, filled)
    return out


def _source_for(loc: tuple[int | str, ...], sources: Mapping[KeyPath, str]) -> tuple[str, str]:
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


def _describe(error: Mapping[str, Any], sources: Mapping[KeyPath, str]) -> str:
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
        settings = Settings(**_keep_defaults(Settings, merged))
    except ValidationError as exc:
        messages = [_describe(err, sources) for err in exc.errors()]
        raise ConfigError("; ".join(dict.fromkeys(messages))) from None
    consulted = [str(p) for p, _ in user_candidates(env)] + [str(p) for p in project_candidates(project_path)]
    if yaml_path is not None:
        consulted.append(str(yaml_path))
    return LoadedSettings(settings, {".".join(k): v for k, v in sources.items()}, files, warnings, consulted)


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
