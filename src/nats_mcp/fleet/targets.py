"""The fleet targets boundary: the YAML file naming how to start agents for which capabilities, validated before use.

A targets file::

    version: 1
    targets:
      - name: py-workers
        capabilities: [python]          # queues this target serves (pending there asks for agents)
        boundaries: [open-source]       # work boundaries it may take ('*': all; default []: unbounded items only)
        min: 0                          # instances kept even when idle
        max: 2                          # never more, counting instances still starting
        pendingPerAgent: 5              # start another agent while pending / live agents is above this
        startupGraceS: 15               # a started agent may take this long to show up in the registry
        idleTimeoutS: 30                # no pending and nothing in flight this long: stop down to min
        restartBackoffS: 1              # after a crash: wait 1 s, doubling per crash in a row ...
        restartBackoffMaxS: 60          # ... up to this
        mechanism: local                # how to start it: local, ssh, webhook or kubernetes (docs/fleet.md)
        local:
          command: ["python", "examples/fleet_worker.py", "--name", "{agent_name}"]
          cwd: .
          env:                          # extra environment: every value from a file or the environment,
            WORK_MS: {value: "50"}      #   or inline only when the name does not look secret
            API_TOKEN: {fromEnv: PY_WORKER_TOKEN}
            DB_PASSWORD: {fromFile: /run/secrets/db}

Secrets are never inline: an ``env`` entry whose name looks secret (token, secret, password, key, credential)
must come ``fromEnv`` or ``fromFile``; the values are read at start time and never logged or audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from nats_mcp.config.documents import parse_document
from nats_mcp.core.names import InvalidNameError, validate_name, validate_type_name
from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.specparts import PLACEHOLDERS as PLACEHOLDERS
from nats_mcp.fleet.specparts import EnvValue, check_command, check_env
from nats_mcp.fleet.specparts import SpecModel as _Model
from nats_mcp.fleet.specparts import TargetsError as TargetsError
from nats_mcp.fleet.specparts import resolve_env as resolve_env
from nats_mcp.fleet.ssh import SshSpec
from nats_mcp.fleet.webhook import WebhookSpec

KNOWN_MECHANISMS = ("local", "ssh", "webhook", "kubernetes")


class LocalSpec(_Model):
    """The ``local`` mechanism: a command template run as a child process of the active coordinator."""

    command: list[str] = Field(min_length=1)
    cwd: Path | None = None
    env: dict[str, EnvValue] = Field(default_factory=dict)
    stop_timeout_s: float = Field(default=10.0, gt=0, le=300, alias="stopTimeoutS")

    @model_validator(mode="after")
    def _checks(self) -> LocalSpec:
        check_command(self.command)
        check_env(self.env)
        return self


class Target(_Model):
    """A named way to start agents for some capabilities, with its limits and timings."""

    name: str
    capabilities: list[str] = Field(min_length=1)
    boundaries: list[str] = Field(default_factory=list)
    """Work boundaries whose items its agents may take ('*': every one); pending items of others never start it."""
    min: int = Field(default=0, ge=0)
    max: int = Field(ge=1, le=1000)
    pending_per_agent: int = Field(default=1, ge=1, alias="pendingPerAgent")
    startup_grace_s: float = Field(default=15.0, gt=0, le=3600, alias="startupGraceS")
    idle_timeout_s: float = Field(default=60.0, gt=0, le=7 * 86400, alias="idleTimeoutS")
    restart_backoff_s: float = Field(default=1.0, gt=0, le=3600, alias="restartBackoffS")
    restart_backoff_max_s: float = Field(default=60.0, gt=0, le=86400, alias="restartBackoffMaxS")
    mechanism: str
    local: LocalSpec | None = None
    ssh: SshSpec | None = None
    webhook: WebhookSpec | None = None
    kubernetes: KubernetesSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _mechanism_known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            mech = data.get("mechanism")
            if mech is not None and mech not in KNOWN_MECHANISMS:
                raise ValueError(f"unknown mechanism {mech!r}; available: {', '.join(KNOWN_MECHANISMS)}")
        return data

    @model_validator(mode="after")
    def _checks(self) -> Target:
        try:
            validate_name(self.name, "target name")
            for cap in self.capabilities:
                validate_type_name(cap, "capability")
            for boundary in self.boundaries:
                if boundary != "*":
                    validate_name(boundary, "boundary")
        except InvalidNameError as exc:
            raise ValueError(str(exc)) from None
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restartBackoffMaxS is below restartBackoffS")
        if self.mechanism == "local" and self.local is None:
            raise ValueError("mechanism local needs a `local:` section with the command")
        for mech in ("ssh", "webhook", "kubernetes"):
            if self.mechanism == mech and getattr(self, mech) is None:
                raise ValueError(f"mechanism {mech} needs {'an' if mech == 'ssh' else 'a'} `{mech}:` section")
        return self


class TargetsDoc(_Model):
    version: Literal[1] = 1
    targets: list[Target] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> TargetsDoc:
        names = [t.name for t in self.targets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"target names must be unique: {', '.join(twice)}")
        return self


def parse_targets(text: str, where: str = "targets") -> TargetsDoc:
    """Parse and validate a targets document; TargetsError names the file, the place and the problem."""
    return parse_document(text, TargetsDoc, where, TargetsError, "version and targets", "targets")


def load_targets(path: Path) -> TargetsDoc:
    """The targets file at ``path`` (TargetsError if unreadable or invalid)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsError(f"cannot read {path}: {exc.strerror}") from None
    return parse_targets(text, str(path))
