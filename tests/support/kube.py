"""A FAKE Kubernetes API for the fleet's kubernetes mechanism tests (there is no cluster in the test environment).

:class:`FakeCluster` stands in for ``BatchV1Api`` and ``CoreV1Api`` only: it stores the objects it is sent as
dicts, gives each a uid, deletes what a deleted Job owns (the garbage collector) and answers with the official
client's exceptions. The bodies still go through the client's real models (``V1Job.from_dict`` ...) and come back
through its real serializer, so the shapes are the client's own.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient, V1DeleteOptions, V1Job, V1Secret
from kubernetes.client.exceptions import ApiException

from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.kubernetes import Apis

serialize = ApiClient().sanitize_for_serialization


class FakeCluster:
    """A BatchV1Api- and CoreV1Api-shaped fake: dict objects by (kind, namespace, name), a call log, failures."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, ApiException] = {}
        self.pods: list[dict[str, Any]] = []
        self._uid = 0

    def _maybe_fail(self, call: str) -> None:
        if call in self.fail:
            raise self.fail[call]

    def _create(self, kind: str, ns: str, body: Any) -> Any:
        obj = serialize(body)
        key = (kind, ns, obj["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="Conflict")
        self._uid += 1
        obj["metadata"]["uid"] = f"uid-{self._uid}"
        self.objects[key] = obj
        return type(body).from_dict(obj)

    # BatchV1Api
    def create_namespaced_job(self, namespace: str, body: V1Job, **kw: Any) -> V1Job:
        self.calls.append(("create_job", body))
        self._maybe_fail("create_job")
        return self._create("Job", namespace, body)

    def read_namespaced_job(self, name: str, namespace: str, **kw: Any) -> V1Job:
        self._maybe_fail("read_job")
        if ("Job", namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return V1Job.from_dict(self.objects["Job", namespace, name])

    def patch_namespaced_job(self, name: str, namespace: str, body: dict[str, Any], **kw: Any) -> None:
        self.calls.append(("patch_job", body))
        self._maybe_fail("patch_job")
        self.objects["Job", namespace, name]["spec"].update(body["spec"])

    def list_namespaced_job(self, namespace: str, label_selector: str, **kw: Any) -> dict[str, Any]:
        want = dict(pair.split("=") for pair in label_selector.split(","))
        items = [
            o
            for (kind, ns, _), o in self.objects.items()
            if kind == "Job" and ns == namespace and want.items() <= o["metadata"]["labels"].items()
        ]
        return {"items": items}

    def delete_namespaced_job(self, name: str, namespace: str, body: V1DeleteOptions, **kw: Any) -> None:
        self.calls.append(("delete_job", serialize(body)))
        self._maybe_fail("delete_job")
        obj = self.objects.get(("Job", namespace, name))
        if obj is None:
            raise ApiException(status=404, reason="Not Found")
        if obj["metadata"]["uid"] != body.preconditions.uid:  # type: ignore[union-attr]
            raise ApiException(status=409, reason="Conflict")
        del self.objects["Job", namespace, name]
        for key, dependent in list(self.objects.items()):  # the garbage collector, following ownerReferences
            if any(o["uid"] == obj["metadata"]["uid"] for o in dependent["metadata"].get("ownerReferences") or []):
                del self.objects[key]

    # CoreV1Api
    def create_namespaced_secret(self, namespace: str, body: V1Secret, **kw: Any) -> V1Secret:
        self.calls.append(("create_secret", body))
        self._maybe_fail("create_secret")
        return self._create("Secret", namespace, body)

    def list_namespaced_pod(self, namespace: str, label_selector: str, **kw: Any) -> dict[str, Any]:
        return {"items": self.pods}

    def apis(self, _spec: KubernetesSpec) -> Apis:
        """What the mechanism calls for any target: this fake, with the client's real models and serializer."""
        return Apis(self, self, serialize, V1Job.from_dict, V1Secret.from_dict, V1DeleteOptions.from_dict)
