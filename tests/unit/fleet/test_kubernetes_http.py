"""The kubernetes mechanism through the REAL official client, its kubeconfig loading and its HTTP requests, against
a FAKE API server on loopback (a small http.server that records requests and answers like the API: no cluster).

What the fake-object test (test_kubernetes.py) cannot see: the paths, methods and content types the client really
sends (a patch must not go out as JSON Patch), the bodies as JSON on the wire, and the bearer token from the
kubeconfig reaching the server but no log.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.kubernetes import KubernetesMechanism
from nats_mcp.fleet.mechanism import Exit, MechanismError, StartSpec

TOKEN = "kubeconfig-bearer-token-1f2e"
SECRET_VALUE = "value-from-env-77aa"


class FakeApi(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str | None, Any]]
    jobs: dict[str, dict[str, Any]]

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, self.headers.get("Content-Type"), copy.deepcopy(body)))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(401, {"kind": "Status", "code": 401})
        path = self.path.split("?")[0]
        if self.command == "POST":
            body["metadata"]["uid"] = "0f8fad5b-d9cb-469f-a165-70867728950e"
            if path.endswith("/jobs"):
                self.jobs[body["metadata"]["name"]] = body
            return self._answer(201, body)
        name = path.rsplit("/", 1)[1]
        if self.command == "PATCH":
            self.jobs[name]["spec"].update(body["spec"])
            return self._answer(200, self.jobs[name])
        if self.command == "GET" and path.endswith("/pods"):
            return self._answer(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
        if self.command == "GET":
            return self._answer(200, self.jobs[name]) if name in self.jobs else self._answer(404, {"code": 404})
        self.jobs.pop(name, None)
        return self._answer(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    do_GET = do_POST = do_PATCH = do_DELETE = _handle


@pytest.fixture
def api() -> Iterator[tuple[str, type[FakeApi]]]:
    handler = type("Handler", (FakeApi,), {"requests": [], "jobs": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_the_real_client_sends_what_the_api_expects(
    tmp_path: Path, api: tuple[str, type[FakeApi]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, handler = api
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "fleet", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "other",
            }
        )
    )
    spec = KubernetesSpec.model_validate(
        {
            "namespace": "agents",
            "image": "agent:1",
            "kubeconfig": str(kubeconfig),
            "context": "fleet",  # not the file's current context: the setting is what counts
            "env": {"API_TOKEN": {"fromEnv": "T"}},
        }
    )
    mech = KubernetesMechanism({"k": spec}, {"T": SECRET_VALUE}, poll_every_s=0)
    start = StartSpec("k", "0123456789ab", "d" * 32, "k-0123456789ab", ("python",), {"NATS_MCP_NAMESPACE": "x"})
    handle = await mech.start(start)
    assert handle.ref["uid"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert await mech.poll(handle) is True
    handler.jobs["nmcp-k-0123456789ab"]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert await mech.poll(handle) == Exit(0)  # no pod left: the Job's outcome
    await mech.stop(handle)

    seen = [(m, p.split("?")[0], ct) for m, p, ct, _ in handler.requests]
    jobs, job = "/apis/batch/v1/namespaces/agents/jobs", "/apis/batch/v1/namespaces/agents/jobs/nmcp-k-0123456789ab"
    assert seen == [
        ("POST", jobs, "application/json"),
        ("POST", "/api/v1/namespaces/agents/secrets", "application/json"),
        ("PATCH", job, "application/merge-patch+json"),
        ("GET", job, None),
        ("GET", job, None),
        ("GET", "/api/v1/namespaces/agents/pods", None),
        ("DELETE", job, "application/json"),
    ]
    sent_job, sent_secret = handler.requests[0][3], handler.requests[1][3]
    assert sent_job["spec"]["suspend"] is True and SECRET_VALUE not in json.dumps(sent_job)
    assert sent_secret["stringData"] == {"API_TOKEN": SECRET_VALUE}
    assert sent_secret["metadata"]["ownerReferences"][0]["uid"] == handle.ref["uid"]
    assert handler.requests[2][3] == {"spec": {"suspend": False}}
    assert "labelSelector=fleet.nats-mcp.io" in handler.requests[5][1]
    assert (
        handler.requests[6][3]
        == {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 30,
            "preconditions": {"uid": handle.ref["uid"]},
            "propagationPolicy": "Background",
        }
        or handler.requests[6][3]["propagationPolicy"] == "Background"
    )
    assert TOKEN not in caplog.text and SECRET_VALUE not in caplog.text


async def test_a_cluster_configuration_that_cannot_load_fails_the_start_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = StartSpec("k", "0123456789ab", "d" * 32, "k-0123456789ab", ("python",), {})
    missing = KubernetesSpec.model_validate({"image": "a:1", "kubeconfig": str(tmp_path / "none")})
    with pytest.raises(MechanismError, match="kubernetes: cannot load the cluster configuration"):
        await KubernetesMechanism({"k": missing}, {}).start(start)
    # In a pod (KUBERNETES_SERVICE_HOST set) with no kubeconfig named: the in-cluster loader, here without its token.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    incluster = KubernetesSpec.model_validate({"image": "a:1"})
    with pytest.raises(MechanismError, match=r"cannot load the cluster configuration: .*token"):
        await KubernetesMechanism({"k": incluster}, {}).start(start)
