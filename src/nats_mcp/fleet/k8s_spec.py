"""The ``kubernetes:`` section of a fleet target: its schema only (no Kubernetes client here; see fleet/kubernetes.py).

::

    mechanism: kubernetes
    kubernetes:
      namespace: agents                 # the Kubernetes namespace of the Jobs (and their env Secrets)
      image: registry.example.com/agent:1.0
      command: ["python", "/app/worker.py", "--name", "{agent_name}"]   # optional: the image's entrypoint else
      serviceAccountName: fleet-agent
      resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {memory: 512Mi}}
      env:
        WORK_MS: {value: "200"}                         # inline: non-secret names only
        API_TOKEN: {fromEnv: WORKER_TOKEN}              # read by the coordinator -> a per-instance Secret
        DB_PASSWORD: {fromFile: /run/secrets/db}        # the same
        GH_TOKEN: {secretKeyRef: {name: gh, key: token}}  # a Secret already in the cluster: referenced only
      jobTemplate: deploy/agent-job.yaml  # optional: a Job of yours; we set name, labels, env, command into it
      ttlSecondsAfterFinished: 600
      backoffLimit: 0                   # the fleet restarts crashed agents itself (with its backoff)
      stopTimeoutS: 30                  # the pods' termination grace on a stop
      natsUrl: nats://nats.nats-mcp.svc:4222   # NATS_URL as seen from the pods (else the coordinator's)
      kubeconfig: ~/.kube/config        # optional: in-cluster config when absent and running in a pod
      context: prod

Secrets never appear in the Job: ``fromEnv``/``fromFile`` values go into a Secret of the instance (owned by the Job,
so deleted with it) and the Job names them by ``secretKeyRef``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator

from nats_mcp.fleet.specparts import SpecModel as _Model
from nats_mcp.fleet.specparts import check_command, check_env

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_QUANTITY = re.compile(r"^[0-9.]+([eE][0-9]+|[numkMGTPE]|[KMGTPE]i)?$")


class SecretKeyRef(_Model):
    """A key of a Secret that already exists in the Job's namespace (the cluster holds the value, we never see it)."""

    name: str
    key: str
    optional: bool | None = None

    @model_validator(mode="after")
    def _checks(self) -> SecretKeyRef:
        if not _DNS_SUBDOMAIN.match(self.name):
            raise ValueError(f"secretKeyRef name {self.name!r} is not a valid Kubernetes Secret name")
        if not _SECRET_KEY.match(self.key):
            raise ValueError(f"secretKeyRef key {self.key!r} is not a valid Secret key")
        return self


class KubeEnvValue(_Model):
    """One environment value: inline (non-secret names), fromEnv/fromFile (read by the coordinator at each start,
    passed through a per-instance Secret), or a secretKeyRef into a Secret of the cluster."""

    value: str | None = None
    from_env: str | None = Field(default=None, alias="fromEnv")
    from_file: Path | None = Field(default=None, alias="fromFile")
    secret_key_ref: SecretKeyRef | None = Field(default=None, alias="secretKeyRef")

    @model_validator(mode="after")
    def _one_source(self) -> KubeEnvValue:
        given = [x for x in (self.value, self.from_env, self.from_file, self.secret_key_ref) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, fromEnv, fromFile, secretKeyRef")
        return self


class Resources(_Model):
    """Container requests and limits (Kubernetes quantities: ``250m``, ``512Mi``, ``1``)."""

    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _quantities(self) -> Resources:
        for name, value in (*self.requests.items(), *self.limits.items()):
            if not _QUANTITY.match(str(value)):
                raise ValueError(f"resources: {name}: {value!r} is not a Kubernetes quantity")
        return self


class KubernetesSpec(_Model):
    """The ``kubernetes`` mechanism: one Job per instance, created through the official Kubernetes client."""

    namespace: str = "default"
    image: str | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    resources: Resources | None = None
    env: dict[str, KubeEnvValue] = Field(default_factory=dict)
    job_template: Path | None = Field(default=None, alias="jobTemplate")
    ttl_seconds_after_finished: int | None = Field(default=600, ge=30, alias="ttlSecondsAfterFinished")
    """At least 30 s: the fleet must see a finished Job (and its exit code) before the TTL controller deletes it."""
    backoff_limit: int = Field(default=0, ge=0, le=100, alias="backoffLimit")
    stop_timeout_s: float = Field(default=30.0, gt=0, le=3600, alias="stopTimeoutS")
    nats_url: str | None = Field(default=None, alias="natsUrl")
    kubeconfig: Path | None = None
    context: str | None = None
    container: str = "agent"
    """The container that runs the agent (in a jobTemplate: the one of this name, else the first)."""

    @model_validator(mode="after")
    def _checks(self) -> KubernetesSpec:
        if not _DNS_LABEL.match(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is not a valid Kubernetes namespace name")
        if self.service_account_name is not None and not _DNS_SUBDOMAIN.match(self.service_account_name):
            raise ValueError(f"serviceAccountName {self.service_account_name!r} is not a valid name")
        if not _DNS_LABEL.match(self.container):
            raise ValueError(f"container {self.container!r} is not a valid container name")
        if self.image is None and self.job_template is None:
            raise ValueError("give an image, or a jobTemplate whose container has one")
        check_command(self.command or [])
        check_env(self.env, "fromEnv, fromFile or secretKeyRef")
        return self
