"""The objects the kubernetes mechanism sends (fleet/k8s_render.py), checked against the Kubernetes API schema.

Two independent checks of each rendered object: kubernetes-validate (the official OpenAPI-derived JSON schemas,
strict: unknown fields fail) and the official client's own models (``V1Job.from_dict``: wrong types and missing
required fields fail). Each is also shown to fail on a broken copy, so neither passes by construction.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import V1Job, V1Secret
from pydantic import ValidationError

from nats_mcp.fleet.k8s_render import RenderError, job_name, job_outcome, owned_by, render
from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.mechanism import StartSpec
from nats_mcp.fleet.targets import TargetsError, parse_targets

K8S_VERSION = "1.34"
SECRET_VALUE = "s3cr3t-Value-42"
URL_PASSWORD = "natsPw-77"


def valid(obj: dict[str, Any], model: Any) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    model.from_dict(obj)


def start(target: str = "py-k8s", env: dict[str, str] | None = None) -> StartSpec:
    base = {"NATS_URL": "nats://nats.nats-mcp.svc:4222", "NATS_MCP_NAMESPACE": "default", "LOOMINAL_AGENT_ID": "a" * 32}
    return StartSpec(target, "0123456789ab", "a" * 32, f"{target}-0123456789ab", ("python", "rust"), env or base)


def spec(**fields: Any) -> KubernetesSpec:
    data: dict[str, Any] = {
        "namespace": "agents",
        "image": "registry.example.com/agent:1.0",
        "command": ["python", "/app/worker.py", "--name", "{agent_name}", "--caps", "{capabilities}"],
        "serviceAccountName": "fleet-agent",
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi", "cpu": 1}},
        "env": {
            "WORK_MS": {"value": "200"},
            "API_TOKEN": {"fromEnv": "WORKER_TOKEN"},
            "DB_PASSWORD": {"fromFile": "/run/secrets/db"},
            "GH_TOKEN": {"secretKeyRef": {"name": "gh", "key": "token"}},
        },
    }
    data.update(fields)
    return KubernetesSpec.model_validate(data)


def test_job_and_secret_validate_and_hold_no_secret_in_the_job() -> None:
    resolved = {"API_TOKEN": SECRET_VALUE, "DB_PASSWORD": SECRET_VALUE + "-db"}
    s = start(env={"NATS_URL": f"nats://agent:{URL_PASSWORD}@nats:4222", "NATS_MCP_CONFIG": "/home/me/c.yaml"})
    out = render(spec(), s, resolved)
    job, secret = out.job, out.secret
    assert secret is not None
    valid(job, V1Job)
    valid(owned_by(secret, job["metadata"]["name"], "0f8fad5b-d9cb-469f-a165-70867728950e"), V1Secret)
    # No secret value anywhere in the Job (nor in the repr of what render returned, which a log line might show).
    text = json.dumps(job)
    for value in (SECRET_VALUE, URL_PASSWORD):
        assert value not in text and value not in repr(out)
    assert "NATS_MCP_CONFIG" not in text  # a path on the coordinator's host means nothing in a pod
    assert secret["stringData"] == {**resolved, "NATS_URL": f"nats://agent:{URL_PASSWORD}@nats:4222"}
    assert secret["immutable"] is True
    name = job["metadata"]["name"]
    assert name == "nmcp-py-k8s-0123456789ab" and secret["metadata"]["name"] == f"{name}-env"
    box = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in box["env"]}
    for var in ("API_TOKEN", "DB_PASSWORD", "NATS_URL"):
        assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": f"{name}-env", "key": var}}}
    assert env["GH_TOKEN"] == {"name": "GH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}}
    assert env["WORK_MS"] == {"name": "WORK_MS", "value": "200"}
    assert box["command"] == ["python", "/app/worker.py", "--name", "py-k8s-0123456789ab", "--caps", "python,rust"]
    assert box["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "512Mi", "cpu": "1"},
    }
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "fleet-agent"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["suspend"] is True  # resumed once its Secret exists (the mechanism's test)
    want = {
        "app.kubernetes.io/managed-by": "nats-mcp-fleet",
        "fleet.nats-mcp.io/target": "py-k8s",
        "fleet.nats-mcp.io/instance": "0123456789ab",
        "fleet.nats-mcp.io/agent-guid": "a" * 32,
    }
    assert job["metadata"]["labels"] == want == job["spec"]["template"]["metadata"]["labels"]


def test_without_secrets_there_is_no_secret_object_and_names_fit() -> None:
    plain = spec(env={"WORK_MS": {"value": "1"}}, command=None, resources=None)
    out = render(plain, start("t" * 63), {})
    assert out.secret is None and out.job["spec"]["suspend"] is False
    valid(out.job, V1Job)
    assert len(out.job["metadata"]["name"]) <= 63 and out.job["metadata"]["name"].endswith("-0123456789ab")
    assert "command" not in out.job["spec"]["template"]["spec"]["containers"][0]  # the image's entrypoint
    assert job_name("a-b", "x" * 12) == "nmcp-a-b-" + "x" * 12


def test_a_job_template_is_kept_and_completed(tmp_path: Path) -> None:
    template = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ignored", "labels": {"team": "ai"}, "annotations": {"owner": "me"}},
        "spec": {
            "backoffLimit": 6,
            "activeDeadlineSeconds": 3600,
            "template": {
                "metadata": {"labels": {"team": "ai"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "nodeSelector": {"pool": "agents"},
                    "containers": [
                        {"name": "sidecar", "image": "proxy:1"},
                        {
                            "name": "agent",
                            "image": "old:0",
                            "args": ["--old"],
                            "env": [{"name": "KEEP", "value": "1"}, {"name": "WORK_MS", "value": "9"}],
                            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                        },
                    ],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                },
            },
        },
    }
    before = copy.deepcopy(template)
    job = render(spec(), start(), {"API_TOKEN": "x", "DB_PASSWORD": "y"}, template).job
    assert template == before  # the user's template is copied, never changed
    valid(job, V1Job)
    assert job["metadata"]["name"] == "nmcp-py-k8s-0123456789ab" and job["metadata"]["labels"]["team"] == "ai"
    assert job["metadata"]["annotations"] == {"owner": "me"} and job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] == {"pool": "agents"}
    sidecar, agent = pod["containers"]
    assert sidecar == {"name": "sidecar", "image": "proxy:1"}
    assert agent["image"] == "registry.example.com/agent:1.0" and "args" not in agent
    env = [e["name"] for e in agent["env"]]
    assert env[0] == "KEEP" and env.count("WORK_MS") == 1
    assert {"name": "WORK_MS", "value": "200"} in agent["env"]
    # Refusals: not a Job; no image anywhere.
    with pytest.raises(RenderError, match="expected apiVersion batch/v1 and kind Job"):
        render(spec(), start(), {}, {**template, "kind": "Deployment"})
    bare = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}
    with pytest.raises(RenderError, match="has no image"):
        render(spec(image=None, jobTemplate=str(tmp_path / "t.yaml")), start(), {}, bare)


def test_the_schema_checks_can_fail() -> None:
    job = render(spec(), start(), {"API_TOKEN": "x", "DB_PASSWORD": "y"}).job
    typo = copy.deepcopy(job)
    typo["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagee"):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)
    wrong = copy.deepcopy(job)
    wrong["spec"]["backoffLimit"] = "zero"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSION, strict=True)
    with pytest.raises(ValidationError, match="backoffLimit"):
        V1Job.from_dict(wrong)
    nameless = copy.deepcopy(job)
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValidationError, match="name"):
        V1Job.from_dict(nameless)


def test_job_outcome_reads_conditions() -> None:
    assert job_outcome({"status": {"active": 1}}) == "running"
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "succeeded"
    assert job_outcome({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "failed"
    assert job_outcome({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) == "running"
    assert job_outcome({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}) == "deleting"


TARGET = """
version: 1
targets:
  - name: k
    capabilities: [python]
    max: 2
    mechanism: kubernetes
    kubernetes: {KUBE}
"""


@pytest.mark.parametrize(
    ("kube", "message"),
    [
        (
            "{image: x, env: {API_TOKEN: {value: abc}}}",
            "env API_TOKEN looks like a secret, so give it fromEnv, fromFile or",
        ),
        ("{image: x, env: {1BAD: {value: abc}}}", "env name .1BAD. is not a valid variable name"),
        ("{image: x, command: ['{nope}']}", "command placeholder {nope} unknown"),
        ("{namespace: agents}", "give an image, or a jobTemplate"),
        ("{image: x, namespace: Bad_NS}", "not a valid Kubernetes namespace"),
        ("{image: x, ttlSecondsAfterFinished: 5}", "greater than or equal to 30"),
        ("{image: x, env: {A: {fromEnv: B, value: c}}}", "exactly one of value, fromEnv, fromFile, secretKeyRef"),
        ("{image: x, env: {A: {secretKeyRef: {name: Bad_Name, key: k}}}}", "not a valid Kubernetes Secret name"),
        ("{image: x, resources: {limits: {cpu: lots}}}", "not a Kubernetes quantity"),
        ("{image: x, imagePullPolicy: Always}", "Extra inputs are not permitted"),
    ],
)
def test_the_section_refuses_bad_settings(kube: str, message: str) -> None:
    with pytest.raises(TargetsError, match=message):
        parse_targets(TARGET.replace("{KUBE}", kube))


def test_a_kubernetes_target_needs_its_section() -> None:
    with pytest.raises(TargetsError, match="mechanism kubernetes needs a `kubernetes:` section"):
        parse_targets(TARGET.replace("    kubernetes: {KUBE}\n", ""))
