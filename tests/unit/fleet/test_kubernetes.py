"""The kubernetes mechanism's start/poll/stop logic, against a FAKE cluster (pure-logic unit test: no API server).

The fake (tests/support/kube.py) stands in for ``BatchV1Api``/``CoreV1Api`` only. `fleet check` and the lazy
import are tested through the real CLI.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from nats_mcp.cli.main import app
from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.kubernetes import INSTALL_HINT, KubernetesMechanism
from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.targets import TargetsError
from tests.support.kube import FakeCluster, serialize

ROOT = Path(__file__).resolve().parents[3]
SECRET_VALUE = "tok-Very-Secret-9"


def mechanism(cluster: FakeCluster, **kube: Any) -> KubernetesMechanism:
    data: dict[str, Any] = {
        "namespace": "agents",
        "image": "agent:1",
        "env": {"API_TOKEN": {"fromEnv": "WORKER_TOKEN"}, "WORK_MS": {"value": "5"}},
        **kube,
    }
    specs = {"k": KubernetesSpec.model_validate(data)}
    return KubernetesMechanism(specs, {"WORKER_TOKEN": SECRET_VALUE}, apis=cluster.apis, poll_every_s=0)


def start_spec(instance: str = "0123456789ab") -> StartSpec:
    return StartSpec("k", instance, "b" * 32, f"k-{instance}", ("python",), {"NATS_MCP_NAMESPACE": "default"})


async def test_start_poll_stop_against_the_fake(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cluster = FakeCluster()
    mech = mechanism(cluster)
    handle = await mech.start(start_spec())
    job = cluster.objects["Job", "agents", "nmcp-k-0123456789ab"]
    secret = cluster.objects["Secret", "agents", "nmcp-k-0123456789ab-env"]
    assert handle == Handle(
        "kubernetes",
        {
            "target": "k",
            "instance": "0123456789ab",
            "namespace": "agents",
            "name": "nmcp-k-0123456789ab",
            "uid": job["metadata"]["uid"],
            "container": "agent",
        },
    )
    # The Job suspended, then its Secret, owned by it, then the Job resumed: no pod runs before its Secret exists.
    assert [c for c, _ in cluster.calls] == ["create_job", "create_secret", "patch_job"]
    assert serialize(cluster.calls[0][1])["spec"]["suspend"] is True
    assert cluster.calls[2][1] == {"spec": {"suspend": False}} and job["spec"]["suspend"] is False
    owner = secret["metadata"]["ownerReferences"]
    assert owner == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
    ]
    assert secret["stringData"] == {"API_TOKEN": SECRET_VALUE}
    assert SECRET_VALUE not in json.dumps(job) and SECRET_VALUE not in json.dumps(handle.to_json())

    assert await mech.poll(handle) is True
    job["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    cluster.pods = [
        {"status": {"containerStatuses": [{"name": "agent", "state": {"terminated": {"exitCode": 3}}}]}},
    ]
    assert await mech.poll(handle) == Exit(3)
    cluster.pods = []  # the pod is gone: the Job's outcome says 1 (failed) or 0 (complete)
    assert await mech.poll(handle) == Exit(1)
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert await mech.poll(handle) == Exit(0)

    await mech.stop(handle)
    deleted = next(body for call, body in cluster.calls if call == "delete_job")
    assert deleted["propagationPolicy"] == "Background" and deleted["gracePeriodSeconds"] == 30
    assert deleted["preconditions"] == {"uid": handle.ref["uid"]}
    assert not cluster.objects  # the Job, and its Secret by the garbage collector
    assert await mech.poll(handle) == Exit(None)  # gone
    await mech.stop(handle)  # stopping what is gone is no error
    assert SECRET_VALUE not in caplog.text


async def test_a_replaced_job_an_api_error_and_find() -> None:
    cluster = FakeCluster()
    mech = mechanism(cluster, env={})
    handle = await mech.start(start_spec())
    assert [c for c, _ in cluster.calls] == ["create_job"]  # nothing secret: no Secret, not suspended
    assert serialize(cluster.calls[0][1])["spec"]["suspend"] is False
    assert mech.find("k", "0123456789ab") == handle  # a successor finds an unrecorded instance by its labels
    assert mech.find("k", "ffffffffffff") is None and mech.find("other", "0123456789ab") is None
    cluster.fail["read_job"] = ApiException(status=500, reason="Internal Server Error")
    assert await mech.poll(handle) is None  # cannot tell: the engine falls back on registry presence
    del cluster.fail["read_job"]
    cluster.objects["Job", "agents", handle.ref["name"]]["metadata"]["uid"] = "someone-else"
    assert await mech.poll(handle) == Exit(None)
    await mech.stop(handle)  # the uid precondition keeps the other Job
    assert ("Job", "agents", handle.ref["name"]) in cluster.objects


async def test_failed_starts_leave_nothing_and_say_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster()
    mech = mechanism(cluster)
    body = json.dumps({"message": 'Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value'})
    cluster.fail["create_job"] = ApiException(status=422, reason="Unprocessable Entity", body=body)
    with pytest.raises(MechanismError, match=r"cannot create Job agents/nmcp-k-0123456789ab: 422 .*Required value"):
        await mech.start(start_spec())
    assert not cluster.objects
    del cluster.fail["create_job"]
    echo = json.dumps({"message": f"secret has data {SECRET_VALUE}"})
    cluster.fail["create_secret"] = ApiException(status=403, reason="Forbidden", body=echo)
    with pytest.raises(MechanismError) as failed:
        await mech.start(start_spec())
    assert "cannot create Secret agents/nmcp-k-0123456789ab-env: 403 Forbidden" in str(failed.value)
    assert SECRET_VALUE not in str(failed.value) and SECRET_VALUE not in caplog.text
    assert not cluster.objects  # the suspended Job was deleted again
    del cluster.fail["create_secret"]
    cluster.fail["patch_job"] = ApiException(status=403, reason="Forbidden")
    with pytest.raises(MechanismError, match="cannot resume Job agents/nmcp-k-0123456789ab: 403 Forbidden"):
        await mech.start(start_spec())
    assert not cluster.objects  # the Job, and its Secret with it
    unset = KubernetesMechanism(mech.specs, {}, apis=mech._make_apis)
    with pytest.raises(TargetsError, match="env API_TOKEN \\(fromEnv WORKER_TOKEN\\) is not set"):
        await unset.start(start_spec())


async def test_find_drops_a_job_whose_start_never_finished() -> None:
    cluster = FakeCluster()
    mech = mechanism(cluster)
    cluster.fail["create_secret"] = ApiException(status=500, reason="Internal Server Error")
    cluster.fail["delete_job"] = ApiException(status=500, reason="Internal Server Error")
    with pytest.raises(MechanismError):  # as if the coordinator died here: a suspended Job, no Secret
        await mech.start(start_spec())
    assert list(cluster.objects) == [("Job", "agents", "nmcp-k-0123456789ab")]
    del cluster.fail["delete_job"]
    assert mech.find("k", "0123456789ab") is None
    assert not cluster.objects


TARGETS = """
version: 1
targets:
  - name: k
    capabilities: [python]
    max: 2
    mechanism: kubernetes
    kubernetes: {namespace: agents, jobTemplate: TEMPLATE, env: {API_TOKEN: {fromEnv: NOT_READ_BY_CHECK}}}
"""


def test_fleet_check_of_kubernetes_targets(tmp_path: Path) -> None:
    template = tmp_path / "job.yaml"
    template.write_text(
        "apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n"
        "      containers: [{name: agent, image: agent:1}]\n"
    )
    targets = tmp_path / "t.yaml"
    targets.write_text(TARGETS.replace("TEMPLATE", str(template)))
    runner = CliRunner()
    ok = runner.invoke(app, ["fleet", "check", str(targets), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["targets"][0]["mechanism"] == "kubernetes"
    template.write_text(template.read_text().replace("image: agent:1", "image: 7"))  # a number, not a string
    bad = runner.invoke(app, ["fleet", "check", str(targets)])
    assert bad.exit_code == 2 and "target k: the Job is not valid" in bad.stderr
    template.unlink()
    gone = runner.invoke(app, ["fleet", "check", str(targets)])
    assert gone.exit_code == 2 and "jobTemplate" in gone.stderr and "cannot be read" in gone.stderr


def test_the_commented_example_passes_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/fleet.yaml's kubernetes target, uncommented, is a valid target (its jobTemplate path is relative)."""
    lines, inside = [], False
    for line in (ROOT / "examples" / "fleet.yaml").read_text(encoding="utf-8").splitlines():
        inside = line == "  # - name: py-k8s" or (inside and line.startswith("  #   "))
        lines.append(line.replace("# ", "", 1) if inside else line)
    (tmp_path / "fleet.yaml").write_text("\n".join(lines))
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["fleet", "check", str(tmp_path / "fleet.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    assert [t["mechanism"] for t in json.loads(result.stdout)["targets"]] == ["local", "kubernetes"]


def test_nats_mcp_runs_without_the_client_and_check_says_how_to_install(tmp_path: Path) -> None:
    """In a fresh interpreter where `import kubernetes` fails: the CLI loads and checks a local targets file, and a
    kubernetes target is refused with the install hint."""
    targets = tmp_path / "t.yaml"
    targets.write_text(TARGETS.replace("jobTemplate: TEMPLATE", "image: agent:1"))
    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "from typer.testing import CliRunner\n"
        "from nats_mcp.cli.main import app\n"
        "r = CliRunner().invoke(app, ['fleet', 'check', sys.argv[1]])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['fleet', 'check', sys.argv[2]])\n"
        "print(r.exit_code); print(r.stderr)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "examples" / "fleet.yaml"), str(targets)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    exit_code, message = run.stdout.split("\n", 1)
    assert exit_code == "2"
    assert " ".join(INSTALL_HINT.split()) in " ".join(message.split())
