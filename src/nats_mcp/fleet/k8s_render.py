"""The Kubernetes objects of one fleet instance, as plain dicts (pure: no client, no cluster): its Job and env Secret.

:func:`render` is all the ``kubernetes`` mechanism sends: a ``batch/v1`` Job (from the target's ``jobTemplate`` or
built from scratch) and, when the target has values the coordinator reads itself (``fromEnv``/``fromFile``, or a
``NATS_URL`` carrying a password), a ``v1`` Secret of the instance that the Job's container reads by
``secretKeyRef``. So no secret value is ever in the Job spec (visible to whoever may read Jobs, and in every
``kubectl describe``). Such a Job is created suspended; the Secret follows, owned by the Job (so the garbage
collector deletes it with the Job), then the Job is resumed: no pod ever starts before its Secret exists, and the
coordinator needs no right to change or delete Secrets. :func:`job_outcome` and :func:`exit_code` read the answers
back, also as dicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.mechanism import StartSpec

Obj = dict[str, Any]

LABEL_PREFIX = "fleet.nats-mcp.io/"
MANAGED_BY = {"app.kubernetes.io/managed-by": "nats-mcp-fleet"}
NOT_PASSED = frozenset({"NATS_MCP_CONFIG"})
"""Coordinator-side values that mean nothing in a pod: a config file path on the coordinator's host."""


class RenderError(ValueError):
    """A jobTemplate or env value that cannot make a Job; the message names it, never a secret value."""


@dataclass(frozen=True)
class Rendered:
    job: Obj
    secret: Obj | None = field(default=None, repr=False)  # holds the secret values: never logged


def job_name(target: str, instance: str) -> str:
    """``nmcp-<target>-<instance>``, cut to the 63 characters a Job's name may have (its pods' ``job-name`` label)."""
    head = f"nmcp-{target}"[: 63 - len(instance) - 1].rstrip("-")
    return f"{head}-{instance}"


def secret_name(job: str) -> str:
    return f"{job}-env"


def labels(start: StartSpec) -> dict[str, str]:
    """The labels of the Job, its pods and its Secret: what finds them again (a successor's ``find``, kubectl)."""
    return {
        **MANAGED_BY,
        f"{LABEL_PREFIX}target": start.target,
        f"{LABEL_PREFIX}instance": start.instance,
        f"{LABEL_PREFIX}agent-guid": start.agent_guid,
    }


def instance_selector(target: str, instance: str) -> str:
    return f"{LABEL_PREFIX}target={target},{LABEL_PREFIX}instance={instance}"


def _has_credentials(url: str) -> bool:
    """A NATS URL with user info (``user:password@`` or a ``token@``) carries a secret."""
    return any(urlsplit(part.strip()).username is not None for part in url.split(",") if part.strip())


def render(spec: KubernetesSpec, start: StartSpec, resolved: dict[str, str], template: Obj | None = None) -> Rendered:
    """The Job (and Secret) of ``start``. ``start.env`` is what the coordinator gives every agent (identity, NATS
    settings); ``resolved`` the target's ``fromEnv``/``fromFile`` values, read now (secrets, by rule)."""
    name = job_name(start.target, start.instance)
    tags = labels(start)
    base = {k: v for k, v in start.env.items() if k not in NOT_PASSED}
    if spec.nats_url is not None:
        base["NATS_URL"] = spec.nats_url
    hidden = dict(resolved)
    if "NATS_URL" not in spec.env and _has_credentials(base.get("NATS_URL", "")):
        hidden["NATS_URL"] = base.pop("NATS_URL")
    entries: dict[str, Obj] = {k: {"name": k, "value": v} for k, v in base.items()}  # the target's env wins
    for var, src in spec.env.items():
        if src.value is not None:
            entries[var] = {"name": var, "value": src.value}
        elif src.secret_key_ref is not None:
            entries[var] = {
                "name": var,
                "valueFrom": {"secretKeyRef": src.secret_key_ref.model_dump(exclude_none=True)},
            }
    secret: Obj | None = None
    if hidden:
        sname = secret_name(name)
        for var in hidden:
            entries[var] = {"name": var, "valueFrom": {"secretKeyRef": {"name": sname, "key": var}}}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": sname, "namespace": spec.namespace, "labels": dict(tags)},
            "type": "Opaque",
            "immutable": True,
            "stringData": hidden,
        }
    command = start.command(spec.command) if spec.command is not None else None
    job = _job(spec, template, name, tags, list(entries.values()), command, secret=secret is not None)
    return Rendered(job, secret)


def _job(
    spec: KubernetesSpec,
    template: Obj | None,
    name: str,
    tags: dict[str, str],
    env: list[Obj],
    cmd: list[str] | None,
    *,
    secret: bool,
) -> Obj:
    job: Obj = copy.deepcopy(template) if template is not None else {"apiVersion": "batch/v1", "kind": "Job"}
    if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
        raise RenderError("jobTemplate: expected apiVersion batch/v1 and kind Job")
    job.pop("status", None)
    meta = job.setdefault("metadata", {})
    for generated in ("generateName", "uid", "resourceVersion", "creationTimestamp"):
        meta.pop(generated, None)
    meta.update(name=name, namespace=spec.namespace, labels={**(meta.get("labels") or {}), **tags})
    jspec = job.setdefault("spec", {})
    jspec["backoffLimit"] = spec.backoff_limit  # the fleet restarts, with its own backoff
    jspec["suspend"] = secret  # with a Secret: no pod until the Secret, made after the Job (its owner), exists
    if spec.ttl_seconds_after_finished is not None:
        jspec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    for key in ("selector", "manualSelector"):  # the Job controller makes its own selector
        jspec.pop(key, None)
    pod = jspec.setdefault("template", {})
    pmeta = pod.setdefault("metadata", {})
    pmeta["labels"] = {**(pmeta.get("labels") or {}), **tags}
    pspec = pod.setdefault("spec", {})
    pspec["restartPolicy"] = "Never"  # a crashed agent is the fleet's to restart, not the kubelet's
    pspec["terminationGracePeriodSeconds"] = int(spec.stop_timeout_s)
    if spec.service_account_name is not None:
        pspec["serviceAccountName"] = spec.service_account_name
    containers: list[Obj] = pspec.setdefault("containers", [])
    if not containers:
        containers.append({"name": spec.container})
    box = next((c for c in containers if c.get("name") == spec.container), containers[0])
    if spec.image is not None:
        box["image"] = spec.image
    if not box.get("image"):
        raise RenderError(f"container {box.get('name')!r} has no image: give kubernetes.image")
    if cmd is not None:
        box["command"] = cmd
        box.pop("args", None)  # args belong to the command they were written for
    if spec.resources is not None:
        box["resources"] = {k: {n: str(q) for n, q in v.items()} for k, v in spec.resources.model_dump().items() if v}
    ours = {e["name"] for e in env}
    box["env"] = [e for e in box.get("env") or [] if e.get("name") not in ours] + env
    return job


def owned_by(secret: Obj, job: str, uid: str) -> Obj:
    """``secret`` owned by the Job ``job``/``uid``: the garbage collector deletes it with the Job (stop or TTL)."""
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid}
    return {**secret, "metadata": {**secret["metadata"], "ownerReferences": [owner]}}


def job_outcome(job: Obj) -> str:
    """``running``, ``succeeded``, ``failed`` or ``deleting`` (someone deleted it; its pods are ending)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return "succeeded" if cond["type"] == "Complete" else "failed"
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "deleting"
    return "running"


def exit_code(pods: list[Obj], container: str) -> int | None:
    """The agent container's exit code in the newest pod that ended, if the API still shows it."""
    ended: list[tuple[str, int]] = []
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        mine = next((s for s in statuses if s.get("name") == container), statuses[0] if statuses else None)
        term = ((mine or {}).get("state") or {}).get("terminated")
        if term is not None and term.get("exitCode") is not None:
            ended.append((str(term.get("finishedAt") or ""), int(term["exitCode"])))
    return max(ended)[1] if ended else None
