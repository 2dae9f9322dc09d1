"""The Kubernetes manifests against the graceful drain (issue 21): readiness on /readyz, a grace period that covers
the drain, disruption budgets that take one replica at a time. Each checker also runs on manifests broken the way it
looks for and must report it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nats_mcp.cli.serve_cmd import HTTP_LINGER_S
from nats_mcp.config.grpc import GrpcSettings
from nats_mcp.config.http import HttpSettings

KUBE = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
SHUTDOWN_MARGIN_S = 5
"""What the grace period must hold beyond the drain and uvicorn's linger: the shutdown after the server (keys,
the audit chain's end, the NATS connection)."""
SERVERS = {"nats-mcp-http": "http", "nats-mcp-grpc": "grpc"}

Doc = dict[str, Any]


def load() -> list[Doc]:
    return [d for p in sorted(KUBE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def settings(docs: list[Doc]) -> tuple[HttpSettings, GrpcSettings]:
    """The drain settings of the ConfigMap's config.yaml, validated by the real settings sections."""
    config = yaml.safe_load(find(docs, "ConfigMap", "nats-mcp-config")["data"]["config.yaml"])
    return HttpSettings(**config.get("http", {})), GrpcSettings(**config.get("grpc", {}))


def check_grace(docs: list[Doc]) -> list[str]:
    """SIGKILL comes after the whole drain: terminationGracePeriodSeconds > delay + timeout + linger + margin."""
    http, grpc = settings(docs)
    problems = []
    for name, section in SERVERS.items():
        drain = http if section == "http" else grpc
        needed = drain.drain_delay_s + drain.drain_timeout_s + HTTP_LINGER_S + SHUTDOWN_MARGIN_S
        grace = find(docs, "Deployment", name)["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if grace < needed:
            problems.append(f"{name}: terminationGracePeriodSeconds {grace} < {needed} (the drain would be killed)")
        if drain.drain_delay_s <= 0:
            problems.append(f"{name}: {section}.drain_delay_s is 0: requests arrive after endpoints drop the pod")
    return problems


def check_readiness(docs: list[Doc]) -> list[str]:
    """HTTP readiness asks /readyz (false while draining); gRPC readiness asks grpc.health.v1 (NOT_SERVING then)."""
    problems = []
    for name, section in SERVERS.items():
        container = find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        probe = container.get("readinessProbe") or {}
        if section == "http" and (probe.get("httpGet") or {}).get("path") != "/readyz":
            problems.append(f"{name}: readinessProbe is not GET /readyz")
        if section == "grpc" and "grpc" not in probe:
            problems.append(f"{name}: readinessProbe is not a grpc.health.v1 probe")
        liveness = (container.get("livenessProbe") or {}).get("httpGet") or {}
        if liveness.get("path") == "/readyz":
            problems.append(f"{name}: livenessProbe on /readyz would restart a draining pod")
    return problems


def check_budgets(docs: list[Doc]) -> list[str]:
    """Each server's PodDisruptionBudget lets one replica go at a time and keeps the others serving."""
    problems = []
    for name in SERVERS:
        replicas = find(docs, "Deployment", name)["spec"].get("replicas") or 1
        spec = find(docs, "PodDisruptionBudget", name)["spec"]
        unavailable = spec.get("maxUnavailable")
        if unavailable != 1 or "minAvailable" in spec:
            problems.append(f"{name}: the PodDisruptionBudget is not maxUnavailable: 1")
        elif replicas - unavailable < 1:
            problems.append(f"{name}: {replicas} replica(s): a disruption leaves none serving")
    return problems


CHECKERS = [check_grace, check_readiness, check_budgets]


@pytest.mark.parametrize("checker", CHECKERS)
def test_the_manifests_drain_cleanly(checker: Callable[[list[Doc]], list[str]]) -> None:
    assert checker(load()) == []


def _pod(docs: list[Doc], name: str) -> Doc:
    pod: Doc = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    return pod


def _config(docs: list[Doc], old: str, new: str) -> None:
    data = find(docs, "ConfigMap", "nats-mcp-config")["data"]
    assert old in data["config.yaml"], old
    data["config.yaml"] = data["config.yaml"].replace(old, new, 1)


BROKEN: list[tuple[str, Callable[[list[Doc]], object], Callable[[list[Doc]], list[str]], str]] = [
    ("short grace", lambda d: _pod(d, "nats-mcp-http").update(terminationGracePeriodSeconds=30), check_grace, "< "),
    ("default grace", lambda d: _pod(d, "nats-mcp-grpc").pop("terminationGracePeriodSeconds"), check_grace, "< "),
    ("long drain", lambda d: _config(d, "drain_timeout_s: 20", "drain_timeout_s: 60"), check_grace, "killed"),
    ("no delay", lambda d: _config(d, "drain_delay_s: 5", "drain_delay_s: 0"), check_grace, "drain_delay_s is 0"),
    (
        "ready on healthz",
        lambda d: _pod(d, "nats-mcp-http")["containers"][0]["readinessProbe"]["httpGet"].update(path="/healthz"),
        check_readiness,
        "not GET /readyz",
    ),
    (
        "live on readyz",
        lambda d: _pod(d, "nats-mcp-http")["containers"][0]["livenessProbe"]["httpGet"].update(path="/readyz"),
        check_readiness,
        "restart a draining pod",
    ),
    (
        "grpc ready on tcp",
        lambda d: _pod(d, "nats-mcp-grpc")["containers"][0].update(readinessProbe={"tcpSocket": {"port": "grpc"}}),
        check_readiness,
        "grpc.health.v1",
    ),
    (
        "budget by minimum",
        lambda d: find(d, "PodDisruptionBudget", "nats-mcp-http")["spec"].update(minAvailable=2),
        check_budgets,
        "maxUnavailable: 1",
    ),
    (
        "budget blocks",
        lambda d: find(d, "PodDisruptionBudget", "nats-mcp-grpc")["spec"].update(maxUnavailable=0),
        check_budgets,
        "maxUnavailable: 1",
    ),
    (
        "one replica",
        lambda d: find(d, "Deployment", "nats-mcp-grpc")["spec"].update(replicas=1),
        check_budgets,
        "leaves none serving",
    ),
]


@pytest.mark.parametrize(("what", "breaks", "checker", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_checker_sees_its_breakage(
    what: str,
    breaks: Callable[[list[Doc]], object],
    checker: Callable[[list[Doc]], list[str]],
    expected: str,
) -> None:
    docs = copy.deepcopy(load())
    breaks(docs)
    problems = checker(docs)
    assert any(expected in p for p in problems), (what, problems)
