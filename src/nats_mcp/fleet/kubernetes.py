"""The ``kubernetes`` mechanism boundary: one Job per instance, through the official Kubernetes Python client.

The client (``pip install 'nats-mcp-server[kubernetes]'``) is imported here only, when a kubernetes target is used:
``nats-mcp`` runs without it. Its calls block, so each runs in a thread. The objects sent are those of
:func:`~nats_mcp.fleet.k8s_render.render` (a Job, and a Secret of the instance holding the values the coordinator
read itself, owned by the Job so the garbage collector deletes it with the Job; such a Job is created suspended and
resumed once its Secret exists). The handle is the namespace, Job name and uid (plain data: any coordinator with the
same cluster access polls and stops it).

- poll: the Job's conditions: ``Complete`` / ``Failed`` -> :class:`Exit` with the agent container's exit code
  when the pod still shows it (else 0 / 1); gone, replaced (another uid) or being deleted -> ``Exit(None)``; an API
  error -> None (the coordinator falls back on the agent's registry presence). A running Job is read again at most
  every ``poll_every_s``.
- stop: delete with propagation ``Background`` and the uid as precondition (never someone else's Job of that
  name); the pods get ``stopTimeoutS`` of grace (also their ``terminationGracePeriodSeconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nats_mcp.fleet.k8s_render import (
    Obj,
    Rendered,
    RenderError,
    exit_code,
    instance_selector,
    job_outcome,
    owned_by,
    render,
)
from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.targets import TargetsDoc, TargetsError

log = logging.getLogger("nats_mcp.fleet")

INSTALL_HINT = (
    "the kubernetes mechanism needs the Kubernetes Python client: pip install 'nats-mcp-server[kubernetes]' "
    "(or pip install 'kubernetes>=37,<38' beside nats-mcp)"
)
MERGE_PATCH = "application/merge-patch+json"
"""Named, not left to the client, whose default is JSON Patch (a list of operations; its transport then swaps in a
strategic merge for a mapping body): a merge patch of one field means the same on every API server."""
JSON = {"Content-Type": "application/json"}
"""The client (37.x) sends a create's or delete's body with no Content-Type at all: say what it is."""
TIMEOUT_S = 10.0
"""Each API call's limit: a hung API server must not hold a round (or the lease keeper's thread) for long."""


@dataclass(frozen=True)
class Apis:
    """What the mechanism calls: ``batch`` (BatchV1Api-shaped), ``core`` (CoreV1Api-shaped), and how to turn the
    objects they return into plain dicts, and the rendered dicts into the bodies they take."""

    batch: Any
    core: Any
    to_dict: Callable[[Any], Obj]
    job_body: Callable[[Obj], Any]
    secret_body: Callable[[Obj], Any]
    delete_body: Callable[[Obj], Any]


def client_available() -> bool:
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        return False
    return True


def real_apis(spec: KubernetesSpec) -> Apis:
    """The official client's APIs for ``spec``'s cluster: in-cluster config when no kubeconfig or context is named
    and this runs in a pod, else the kubeconfig (``kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``)."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise MechanismError(INSTALL_HINT) from None
    try:
        if spec.kubeconfig is None and spec.context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            conf = client.Configuration()
            config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
            api = client.ApiClient(conf)
        else:
            path = str(spec.kubeconfig.expanduser()) if spec.kubeconfig is not None else None
            api = config.new_client_from_config(config_file=path, context=spec.context)  # type: ignore[no-untyped-call]
    except Exception as exc:  # a missing file, an unknown context: the start fails with the reason
        raise MechanismError(f"kubernetes: cannot load the cluster configuration: {exc}") from None
    return Apis(
        client.BatchV1Api(api),
        client.CoreV1Api(api),
        api.sanitize_for_serialization,
        client.V1Job.from_dict,
        client.V1Secret.from_dict,
        client.V1DeleteOptions.from_dict,
    )


def resolve_values(spec: KubernetesSpec, environ: dict[str, str]) -> dict[str, str]:
    """The ``fromEnv``/``fromFile`` values of one start, read now (TargetsError naming the variable, never a value)."""
    resolved: dict[str, str] = {}
    for name, src in spec.env.items():
        if src.from_env is not None:
            if src.from_env not in environ:
                raise TargetsError(f"env {name} (fromEnv {src.from_env}) is not set in this environment")
            resolved[name] = environ[src.from_env]
        elif src.from_file is not None:
            try:
                resolved[name] = src.from_file.read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise TargetsError(f"env {name} (fromFile {src.from_file}) cannot be read ({exc.strerror})") from None
    return resolved


def load_template(path: Path) -> Obj:
    """A target's ``jobTemplate`` file as a dict (MechanismError if unreadable or not a mapping)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MechanismError(f"jobTemplate {path} cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise MechanismError(f"jobTemplate {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MechanismError(f"jobTemplate {path}: expected a Job (a mapping)")
    return data


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _why(exc: BaseException, *, detail: bool) -> str:
    """An API error for a log line: the HTTP status and reason; the server's message only for calls whose body
    holds no secret (a Job's validation errors are worth reading; a Secret's answer is never echoed)."""
    status, reason = _status(exc), getattr(exc, "reason", None)
    if status is None:
        return type(exc).__name__
    text = f"{status} {reason or ''}".strip()
    body = getattr(exc, "body", None)
    if detail and body:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            text += f": {json.loads(body).get('message', '')}"
    return text


class KubernetesMechanism:
    """Jobs for the targets' ``kubernetes`` sections (``specs``: target name -> its section)."""

    name = "kubernetes"

    def __init__(
        self,
        specs: dict[str, KubernetesSpec],
        environ: dict[str, str] | None = None,
        *,
        apis: Callable[[KubernetesSpec], Apis] = real_apis,
        poll_every_s: float = 2.0,
    ) -> None:
        self.specs = specs
        self.environ = dict(os.environ if environ is None else environ)
        self._make_apis = apis
        self._apis: dict[tuple[str | None, str | None], Apis] = {}
        self.poll_every_s = poll_every_s
        self._running_seen: dict[str, float] = {}

    def _apis_for(self, spec: KubernetesSpec) -> Apis:
        key = (str(spec.kubeconfig) if spec.kubeconfig else None, spec.context)
        if key not in self._apis:
            self._apis[key] = self._make_apis(spec)
        return self._apis[key]

    def render(self, spec: StartSpec) -> tuple[KubernetesSpec, Rendered]:
        """What a start of ``spec`` would send (reads the secrets and the template now)."""
        k = self.specs[spec.target]
        resolved = resolve_values(k, self.environ)
        template = load_template(k.job_template) if k.job_template is not None else None
        try:
            return k, render(k, spec, resolved, template)
        except RenderError as exc:
            raise MechanismError(str(exc)) from None

    async def start(self, spec: StartSpec) -> Handle:
        k, rendered = self.render(spec)
        return await asyncio.to_thread(self._create, k, spec, rendered)

    def _create(self, k: KubernetesSpec, spec: StartSpec, rendered: Rendered) -> Handle:
        apis = self._apis_for(k)
        ns, name = k.namespace, str(rendered.job["metadata"]["name"])
        try:
            created = apis.to_dict(
                apis.batch.create_namespaced_job(
                    ns, apis.job_body(rendered.job), _headers=JSON, _request_timeout=TIMEOUT_S
                )
            )
        except Exception as exc:
            raise MechanismError(f"kubernetes: cannot create Job {ns}/{name}: {_why(exc, detail=True)}") from None
        uid = str(created["metadata"]["uid"])
        if rendered.secret is not None:  # the Job waits suspended: its Secret, owned by it, then resume it
            what = f"create Secret {ns}/{rendered.secret['metadata']['name']}"
            try:
                body = apis.secret_body(owned_by(rendered.secret, name, uid))
                apis.core.create_namespaced_secret(ns, body, _headers=JSON, _request_timeout=TIMEOUT_S)
                what = f"resume Job {ns}/{name}"
                resume = {"spec": {"suspend": False}}
                apis.batch.patch_namespaced_job(name, ns, resume, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT_S)
            except Exception as exc:
                self._delete_job(apis, ns, name, uid, 0)  # its Secret goes with it: nothing half-made remains
                raise MechanismError(f"kubernetes: cannot {what}: {_why(exc, detail=False)}") from None
        ref = {"target": spec.target, "instance": spec.instance, "namespace": ns, "name": name, "uid": uid}
        return Handle(self.name, {**ref, "container": k.container})

    def find(self, target: str, instance: str) -> Handle | None:
        """The Job of ``instance`` when its starter died before recording the handle (found by its labels).
        Blocking (one list call, bounded by TIMEOUT_S): the engine calls it only for such unrecorded instances."""
        k = self.specs.get(target)
        if k is None:
            return None
        try:
            apis = self._apis_for(k)
            found = apis.to_dict(
                apis.batch.list_namespaced_job(
                    k.namespace, label_selector=instance_selector(target, instance), _request_timeout=TIMEOUT_S
                )
            )
        except Exception as exc:
            log.warning("kubernetes: cannot look for instance %s of %s: %s", instance, target, _why(exc, detail=False))
            return None
        items = found.get("items") or []
        if len(items) != 1:
            return None
        meta = items[0]["metadata"]
        if (items[0].get("spec") or {}).get("suspend"):  # its start stopped before its Secret: never ran, drop it
            self._delete_job(apis, k.namespace, meta["name"], meta["uid"], 0)
            return None
        ref = {"target": target, "instance": instance, "namespace": k.namespace, "name": meta["name"]}
        return Handle(self.name, {**ref, "uid": meta["uid"], "container": k.container})

    async def poll(self, handle: Handle) -> Exit | bool | None:
        k = self.specs.get(str(handle.ref.get("target")))
        uid = str(handle.ref.get("uid"))
        if k is None:  # its target left the targets file: this process has no cluster access configured for it
            return None
        seen = self._running_seen.get(uid)
        if seen is not None and time.monotonic() - seen < self.poll_every_s:
            return True
        state = await asyncio.to_thread(self._poll, k, handle)
        if state is True:
            self._running_seen[uid] = time.monotonic()
        else:
            self._running_seen.pop(uid, None)
        return state

    def _poll(self, k: KubernetesSpec, handle: Handle) -> Exit | bool | None:
        ns, name, uid = str(handle.ref["namespace"]), str(handle.ref["name"]), str(handle.ref["uid"])
        try:
            apis = self._apis_for(k)
            job = apis.to_dict(apis.batch.read_namespaced_job(name, ns, _request_timeout=TIMEOUT_S))
        except MechanismError:
            return None
        except Exception as exc:
            if _status(exc) == 404:
                return Exit(None)
            log.warning("kubernetes: cannot read Job %s/%s: %s", ns, name, _why(exc, detail=False))
            return None
        if str((job.get("metadata") or {}).get("uid")) != uid:
            return Exit(None)  # gone and replaced by another Job of the same name
        outcome = job_outcome(job)
        if outcome == "running":
            return True
        if outcome == "deleting":
            return Exit(None)
        code = None
        selector = instance_selector(str(handle.ref.get("target")), str(handle.ref.get("instance")))
        with contextlib.suppress(Exception):  # the pod may be gone already: the Job's outcome then says 0 or 1
            pods = apis.to_dict(apis.core.list_namespaced_pod(ns, label_selector=selector, _request_timeout=TIMEOUT_S))
            code = exit_code(pods.get("items") or [], str(handle.ref.get("container", "agent")))
        if code is None:
            code = 0 if outcome == "succeeded" else 1
        return Exit(code)

    async def stop(self, handle: Handle) -> None:
        k = self.specs.get(str(handle.ref.get("target")))
        if k is None:
            return
        self._running_seen.pop(str(handle.ref.get("uid")), None)
        await asyncio.to_thread(self._stop, k, handle)

    def _stop(self, k: KubernetesSpec, handle: Handle) -> None:
        ns, name = str(handle.ref["namespace"]), str(handle.ref["name"])
        try:
            apis = self._apis_for(k)
        except MechanismError as exc:
            log.warning("kubernetes: cannot stop Job %s/%s: %s", ns, name, exc)
            return
        self._delete_job(apis, ns, name, str(handle.ref["uid"]), int(k.stop_timeout_s))

    @staticmethod
    def _delete_job(apis: Apis, ns: str, name: str, uid: str, grace_s: int) -> None:
        """Delete the Job ``uid`` (never another of that name), its pods and Secret by the garbage collector."""
        options = {"propagationPolicy": "Background", "gracePeriodSeconds": grace_s, "preconditions": {"uid": uid}}
        try:
            body = apis.delete_body(options)
            apis.batch.delete_namespaced_job(name, ns, body=body, _headers=JSON, _request_timeout=TIMEOUT_S)
        except Exception as exc:
            if _status(exc) not in (404, 409):  # gone already, or another Job of that name now (uid precondition)
                log.warning("kubernetes: cannot delete Job %s/%s: %s", ns, name, _why(exc, detail=False))


def problems(doc: TargetsDoc) -> list[str]:
    """What keeps the kubernetes targets of ``doc`` from starting, found without a cluster (``fleet check``): the
    client missing, a jobTemplate unreadable, or a Job the client's own models refuse (wrong types, required
    fields missing). Secrets are not read here (``fleet run`` does, before connecting)."""
    kube = {t.name: t for t in doc.targets if t.kubernetes is not None}
    if not kube:
        return []
    if not client_available():
        return [f"target {', '.join(kube)}: {INSTALL_HINT}"]
    from kubernetes.client import V1Job

    found: list[str] = []
    for name, target in kube.items():
        k = target.kubernetes
        assert k is not None
        sample = StartSpec(name, "0" * 12, "0" * 32, f"{name}-sample", tuple(target.capabilities), {})
        placeholders = {var: "-" for var, src in k.env.items() if src.from_env is not None or src.from_file is not None}
        try:
            template = load_template(k.job_template) if k.job_template is not None else None
            V1Job.from_dict(render(k, sample, placeholders, template).job)
        except (MechanismError, RenderError) as exc:
            found.append(f"target {name}: {exc}")
        except ValueError as exc:  # pydantic's ValidationError: the first problem is enough to find it
            found.append(f"target {name}: the Job is not valid: {' '.join(str(exc).split()[:40])}")
    return found
