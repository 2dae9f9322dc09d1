"""The pieces mechanism sections share: command templates, and environment values and secrets kept out of the file.

``targets.py`` assembles the targets document from the mechanisms' sections (``local`` there, ``ssh`` in
``ssh.py``, ``webhook`` in ``webhook.py``); they all build on this module, which imports none of them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLACEHOLDERS = frozenset({"agent_name", "agent_guid", "target", "instance", "capabilities"})
"""What a command template may name: ``{agent_name}`` etc. (``{{`` for a literal brace)."""
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetsError(ValueError):
    """A targets file that cannot be used; the message says where and why."""


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvValue(SpecModel):
    """One environment value: inline (non-secret names only), from another environment variable, or from a file."""

    value: str | None = None
    from_env: str | None = Field(default=None, alias="fromEnv")
    from_file: Path | None = Field(default=None, alias="fromFile")

    @model_validator(mode="after")
    def _one_source(self) -> EnvValue:
        given = [x for x in (self.value, self.from_env, self.from_file) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, fromEnv, fromFile")
        return self


class SecretSource(SpecModel):
    """A secret: from an environment variable or a file, never inline."""

    from_env: str | None = Field(default=None, alias="fromEnv")
    from_file: Path | None = Field(default=None, alias="fromFile")

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.from_env is None) == (self.from_file is None):
            raise ValueError("give exactly one of fromEnv, fromFile (a secret is never inline)")
        return self

    def read(self, what: str, environ: Mapping[str, str]) -> str:
        """The secret now (TargetsError naming ``what`` and the source, never the value)."""
        if self.from_env is not None:
            if self.from_env not in environ:
                raise TargetsError(f"{what} (fromEnv {self.from_env}) is not set in this environment")
            return environ[self.from_env]
        assert self.from_file is not None
        try:
            return self.from_file.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise TargetsError(f"{what} (fromFile {self.from_file}) cannot be read ({exc.strerror})") from None


class HasEnv(Protocol):
    @property
    def env(self) -> Mapping[str, EnvValue]: ...


def check_command(command: list[str]) -> None:
    """ValueError if a command template names an unknown placeholder."""
    check_placeholders(command, PLACEHOLDERS, "command")


def check_placeholders(parts: list[str], known: frozenset[str], what: str) -> None:
    for part in parts:
        for _, field, _, _ in string.Formatter().parse(part):
            if field is not None and field not in known:
                raise ValueError(f"{what} placeholder {{{field}}} unknown; known: {', '.join(sorted(known))}")


class Valued(Protocol):
    """An env entry of any mechanism's section: what matters here is whether it is given inline."""

    @property
    def value(self) -> str | None: ...


def check_env(env: Mapping[str, Valued], sources: str = "fromEnv or fromFile") -> None:
    """ValueError for an invalid variable name or a secret-looking one given inline (``sources``: what to use)."""
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"env name {name!r} is not a valid variable name")
        if value.value is not None and _SECRET_NAME.search(name):
            raise ValueError(f"env {name} looks like a secret, so give it {sources}, never inline")


def resolve_env(spec: HasEnv, environ: Mapping[str, str]) -> dict[str, str]:
    """The extra environment of one start, secrets read now (TargetsError naming the variable, never its value;
    worded so that the redaction of logged text, which masks ``<secret-like name>: <value>``, leaves it readable)."""
    resolved: dict[str, str] = {}
    for name, src in spec.env.items():
        if src.value is not None:
            resolved[name] = src.value
        else:
            resolved[name] = SecretSource(fromEnv=src.from_env, fromFile=src.from_file).read(f"env {name}", environ)
    return resolved
