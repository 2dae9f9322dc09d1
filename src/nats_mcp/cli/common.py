"""The CLI's shared plumbing: global options, loading settings once, printing and exit codes."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from nats_mcp.core.redact import redact

if TYPE_CHECKING:
    from nats_mcp.config.loader import LoadedSettings
    from nats_mcp.security.policy import Policy

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# Global flags and the setting each one sets (CLI flags have the highest precedence).
FLAG_KEYS = {
    "project_path": ("project.path", "--project-path"),
    "nats_url": ("nats.url", "--nats-url"),
    "namespace": ("namespace", "--namespace"),
    "log_level": ("logging.level", "--log-level"),
    "log_format": ("logging.format", "--log-format"),
}


@dataclass
class CliState:
    """What the root command collected: the config file and the setting overrides from flags."""

    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    _loaded: LoadedSettings | None = None

    def load(self, extra: dict[str, Any] | None = None, extra_flags: dict[str, str] | None = None) -> LoadedSettings:
        """The settings, or exit 2 with one clear message naming key, source and what is allowed."""
        if self._loaded is not None and not extra:
            return self._loaded
        # Imported here, as in build_state: pydantic-settings and the settings models cost ~0.3 s of CPU, which
        # `--help`, `--version` and a command's usage error should not pay.
        from nats_mcp.config.loader import ConfigError, load_settings

        overrides = {**self.overrides, **{k: v for k, v in (extra or {}).items() if v is not None}}
        try:
            loaded = load_settings(overrides, config_file=self.config_file, flags={**self.flags, **(extra_flags or {})})
        except ConfigError as exc:
            fail(str(exc), code=EXIT_USAGE)
        for warning in loaded.warnings:
            err.print(f"[yellow]warning:[/] {redact(warning)}", highlight=False)
        if not extra:
            self._loaded = loaded
        return loaded


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def build_state(config: Path | None, sets: list[str], **flags: Any) -> CliState:
    overrides: dict[str, Any] = {}
    if sets:  # the loader only when there is something to parse: the root runs before every command, --help too
        from nats_mcp.config.loader import ConfigError, parse_set_options

        try:
            overrides = dict(parse_set_options(sets))
        except ConfigError as exc:
            fail(str(exc), code=EXIT_USAGE)
    flag_names = {key: f"--set {key}" for key in overrides}
    for name, value in flags.items():
        if value is None:
            continue
        key, flag = FLAG_KEYS[name]
        overrides[key] = str(value)
        flag_names[key] = flag
    return CliState(config_file=config, overrides=overrides, flags=flag_names)


def fail(message: str, code: int = EXIT_FAIL) -> NoReturn:
    """Print one redacted error line to stderr and exit."""
    err.print(f"[bold red]nats-mcp: error:[/] {redact(message)}", highlight=False)
    raise typer.Exit(code)


def load_policy(path: Path | None) -> Policy:
    """The authorization policy of the settings (built-in without a file), or exit 2 saying what is wrong."""
    from nats_mcp.security.policy import Policy, PolicyError

    try:
        return Policy.load(path)
    except PolicyError as exc:
        fail(str(exc), code=EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read the policy file {path}: {exc.strerror}", code=EXIT_USAGE)


def imported(name: str) -> ModuleType:
    """Module ``name``, imported by the interpreter's own import statement path (``__import__``), which
    ``-X importtime`` reports (bench/startup.py, tests/e2e/test_startup_imports.py); ``importlib.import_module``'s
    is not reported."""
    __import__(name)
    return sys.modules[name]


def print_json(data: Any) -> None:
    """Machine output: one JSON document on stdout, secrets already removed by the caller."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def loopback_host(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (where --insecure-dev may run)."""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
