"""The KEDA and fleet manifests (deploy/kubernetes/keda/, deploy/kubernetes/fleet/), read as YAML and checked.

Each property is a checker returning the problems it finds (the style of test_deploy_manifests.py): the real
manifests must have none, and each checker also runs on a copy broken the way it looks for and must report it.

- the standard objects (and the ScaledJob's Job spec) validate against the Kubernetes API schema
  (kubernetes-validate, strict: unknown fields fail);
- the KEDA objects have the fields KEDA requires and no others among those its CRDs define. Read from kedacore/keda
  at v2.20.1-117-g8b4f083 (main, 2026-08-20): config/crd/bases/keda.sh_scaledjobs.yaml and
  keda.sh_scaledobjects.yaml (spec properties, required fields, trigger shape: metadata is a map of strings) and
  pkg/scalers/nats_jetstream_scaler.go (the trigger's metadata: stream, consumer, natsServerMonitoringEndpoint,
  account or accountID required; lagThreshold, activationLagThreshold integers; useHttps a boolean);
- the stream and consumer each trigger names are what nats_mcp.bus.layout derives for the manifests' nats-mcp
  namespace and the capability the scaled agents claim; the account, the monitoring Service and port exist in
  deploy/kubernetes; a NetworkPolicy admits KEDA's operator to that port;
- the fleet's Role grants exactly the API calls fleet/kubernetes.py makes, and its jobTemplate renders to a valid Job.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.client import V1Job

from nats_mcp.bus.layout import Layout
from nats_mcp.fleet.k8s_render import render
from nats_mcp.fleet.k8s_spec import KubernetesSpec
from nats_mcp.fleet.mechanism import StartSpec

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.34"
MCP_NAMESPACE = "default"  # nats-mcp's namespace in deploy/kubernetes/nats-mcp-config.yaml
Doc = dict[str, Any]

# From the KEDA CRDs read (see the module docstring): spec properties, and the required ones.
KEDA_SPEC: dict[str, tuple[set[str], set[str]]] = {
    "ScaledJob": (
        {"jobTargetRef", "triggers"},
        {
            "envSourceContainerName",
            "failedJobsHistoryLimit",
            "jobTargetRef",
            "maxReplicaCount",
            "minReplicaCount",
            "pollingInterval",
            "rollout",
            "rolloutStrategy",
            "scalingStrategy",
            "successfulJobsHistoryLimit",
            "triggers",
        },
    ),
    "ScaledObject": (
        {"scaleTargetRef", "triggers"},
        {
            "advanced",
            "cooldownPeriod",
            "fallback",
            "idleReplicaCount",
            "initialCooldownPeriod",
            "maxReplicaCount",
            "minReplicaCount",
            "pollingInterval",
            "scaleTargetRef",
            "triggers",
        },
    ),
}
TRIGGER = ({"type", "metadata"}, {"authenticationRef", "metadata", "metricType", "name", "type", "useCachedMetrics"})
SCALING_STRATEGY = {"customScalingQueueLengthDeduction", "customScalingRunningJobPercentage"} | {
    "multipleScalersCalculation",
    "pendingPodConditions",
    "strategy",
}
NATS_REQUIRED = {"natsServerMonitoringEndpoint", "stream", "consumer"}
NATS_OPTIONAL = {"account", "accountID", "lagThreshold", "activationLagThreshold", "useHttps"}
NATS_INTEGERS = {"lagThreshold", "activationLagThreshold"}


def load(directory: Path) -> dict[str, list[Doc]]:
    return {
        p.name: [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]
        for p in sorted(directory.glob("*.yaml"))
    }


def everything() -> list[Doc]:
    return [d for sub in ("keda", "fleet") for docs in load(KUBE / sub).values() for d in docs]


def base() -> dict[str, list[Doc]]:
    return load(KUBE)


def triggers(docs: list[Doc]) -> list[tuple[Doc, Doc]]:
    return [(d, t) for d in docs if d.get("kind") in KEDA_SPEC for t in d["spec"].get("triggers") or []]


# -- checkers ----------------------------------------------------------------------------------------------------


def schema_problems(docs: list[Doc]) -> list[str]:
    """Standard objects against the Kubernetes schema; the ScaledJob's jobTargetRef as the spec of a Job."""
    found: list[str] = []
    for doc in docs:
        kind = doc.get("kind")
        if kind == "Kustomization":
            continue
        if kind == "ScaledJob":
            meta = {"name": doc["metadata"]["name"]}
            doc = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": doc["spec"]["jobTargetRef"]}
        elif kind in KEDA_SPEC:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            found.append(f"{kind}/{doc.get('metadata', {}).get('name')}: {exc.message}")
    return found


def keda_problems(docs: list[Doc]) -> list[str]:
    found: list[str] = []
    for doc in docs:
        kind = doc.get("kind")
        if kind not in KEDA_SPEC:
            continue
        name = f"{kind}/{doc['metadata']['name']}"
        if doc.get("apiVersion") != "keda.sh/v1alpha1":
            found.append(f"{name}: apiVersion must be keda.sh/v1alpha1")
        required, allowed = KEDA_SPEC[kind]
        spec = doc.get("spec") or {}
        found += [f"{name}: spec.{f} missing" for f in sorted(required - set(spec))]
        found += [f"{name}: spec.{f} unknown to KEDA" for f in sorted(set(spec) - allowed)]
        if kind == "ScaledObject" and "name" not in spec.get("scaleTargetRef", {}):
            found.append(f"{name}: scaleTargetRef.name missing")
        if kind == "ScaledJob":
            found += [
                f"{name}: scalingStrategy.{f} unknown" for f in set(spec.get("scalingStrategy", {})) - SCALING_STRATEGY
            ]
            if "template" not in spec.get("jobTargetRef", {}):
                found.append(f"{name}: jobTargetRef.template missing")
        for trig in spec.get("triggers") or []:
            found += [f"{name}: trigger {f} missing" for f in sorted(TRIGGER[0] - set(trig))]
            found += [f"{name}: trigger {f} unknown" for f in sorted(set(trig) - TRIGGER[1])]
            meta = trig.get("metadata") or {}
            found += [f"{name}: metadata {k} is not a string" for k, v in meta.items() if not isinstance(v, str)]
            if trig.get("type") != "nats-jetstream":
                continue
            found += [f"{name}: nats-jetstream needs {f}" for f in sorted(NATS_REQUIRED - set(meta))]
            found += [f"{name}: nats-jetstream has no {f}" for f in sorted(set(meta) - NATS_REQUIRED - NATS_OPTIONAL)]
            if not {"account", "accountID"} & set(meta):
                found.append(f"{name}: nats-jetstream needs account or accountID")
            found += [f"{name}: {f} not an integer" for f in NATS_INTEGERS if f in meta and not str(meta[f]).isdigit()]
    return found


def _env(pod_spec: Doc, var: str) -> str | None:
    for container in pod_spec.get("containers") or []:
        for entry in container.get("env") or []:
            if entry.get("name") == var:
                return str(entry.get("value"))
    return None


def _scaled_pod(doc: Doc, docs: list[Doc]) -> Doc:
    if doc["kind"] == "ScaledJob":
        return dict(doc["spec"]["jobTargetRef"]["template"]["spec"])
    ref = doc["spec"]["scaleTargetRef"]
    target = [
        d for d in docs if d.get("kind") == ref.get("kind", "Deployment") and d["metadata"]["name"] == ref["name"]
    ]
    return dict(target[0]["spec"]["template"]["spec"]) if target else {}


def name_problems(docs: list[Doc], deploy: dict[str, list[Doc]]) -> list[str]:
    """Stream, consumer, account and endpoint of each trigger against the code and deploy/kubernetes."""
    found: list[str] = []
    layout = Layout(MCP_NAMESPACE)
    conf = deploy["nats-config.yaml"][0]["data"]["nats.conf"]
    accounts = set(re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*\{$", conf, re.MULTILINE))  # upper case: accounts
    monitor = re.search(r'^\s*http: "0\.0\.0\.0:(\d+)"', conf, re.MULTILINE)
    services = {
        d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
        for d in deploy["nats-statefulset.yaml"]
        if d["kind"] == "Service"
    }
    for doc, trig in triggers(docs):
        meta, name = trig["metadata"], f"{doc['kind']}/{doc['metadata']['name']}"
        if meta.get("stream") != layout.work_stream:
            found.append(f"{name}: stream {meta.get('stream')} is not {layout.work_stream}")
        parsed = Layout.parse_work_consumer(str(meta.get("consumer")))
        claims = _env(_scaled_pod(doc, docs), "NATS_MCP_FLEET_CAPABILITIES")
        if parsed is None or Layout.work_consumer(*parsed) != meta.get("consumer"):
            found.append(f"{name}: consumer {meta.get('consumer')} is no work consumer")
        elif parsed[0] != claims:
            found.append(f"{name}: counts capability {parsed[0]} but its agents claim {claims}")
        if meta.get("account") not in accounts:
            found.append(f"{name}: account {meta.get('account')} not in nats.conf ({sorted(accounts)})")
        host, _, port = str(meta.get("natsServerMonitoringEndpoint")).rpartition(":")
        service = host.split(".")[0]
        if not host.endswith(".nats-mcp.svc.cluster.local") or int(port) not in services.get(service, set()):
            found.append(f"{name}: {host}:{port} is no NATS Service port")
        if monitor is None or monitor.group(1) != port:
            found.append(f"{name}: nats.conf serves monitoring on {monitor and monitor.group(1)}, not {port}")
    return found


def netpol_problems(docs: list[Doc]) -> list[str]:
    """KEDA's operator must reach NATS's monitoring port, and the agents its client port."""
    want = {("keda-operator", 8222), ("nats-mcp-agent", 4222)}
    have: set[tuple[str, int]] = set()
    for doc in docs:
        if doc.get("kind") != "NetworkPolicy" or doc["spec"]["podSelector"] != {
            "matchLabels": {"app.kubernetes.io/name": "nats"}
        }:
            continue
        for rule in doc["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                who = labels.get("app") or labels.get("app.kubernetes.io/name")
                ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                if who == "keda-operator" and ns != "keda":
                    continue
                have |= {(str(who), p["port"]) for p in rule.get("ports") or []}
    return [f"no NetworkPolicy admits {who} to NATS port {port}" for who, port in sorted(want - have)]


def kustomization_problems(directory: Path, files: dict[str, list[Doc]], not_applied: set[str]) -> list[str]:
    listed = set(files["kustomization.yaml"][0]["resources"])
    present = set(files) - {"kustomization.yaml"} - not_applied
    return [f"{directory.name}/{f}: listed, missing" for f in sorted(listed - set(files))] + [
        f"{directory.name}/{f}: not in kustomization.yaml" for f in sorted(present - listed)
    ]


CHECKS: dict[str, Callable[[list[Doc]], list[str]]] = {
    "schema": schema_problems,
    "keda": keda_problems,
    "names": lambda docs: name_problems(docs, base()),
    "netpol": netpol_problems,
}


def test_the_manifests_have_no_problems() -> None:
    docs = everything()
    assert {d["kind"] for d in docs} >= {"ScaledJob", "ScaledObject", "Deployment", "NetworkPolicy", "Role"}
    for name, check in CHECKS.items():
        assert check(docs) == [], name
    assert kustomization_problems(KUBE / "keda", load(KUBE / "keda"), set()) == []
    assert kustomization_problems(KUBE / "fleet", load(KUBE / "fleet"), {"agent-job.yaml"}) == []
    # Not in the default kustomization: it needs KEDA's CRDs.
    assert not [r for r in base()["kustomization.yaml"][0]["resources"] if "keda" in r or "fleet" in r]


def _first(docs: list[Doc], kind: str) -> Doc:
    return next(d for d in docs if d.get("kind") == kind)


def _break_schema(docs: list[Doc]) -> None:
    _first(docs, "ScaledJob")["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["imagee"] = "x"


def _break_keda(docs: list[Doc]) -> None:
    spec = _first(docs, "ScaledObject")["spec"]
    spec["minReplicas"] = spec.pop("minReplicaCount")
    _first(docs, "ScaledJob")["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 5


def _break_names(docs: list[Doc]) -> None:
    _first(docs, "ScaledJob")["spec"]["triggers"][0]["metadata"]["consumer"] = "w_python_5"  # its agents claim review
    _first(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["stream"] = "nmcp_other_work"


def _break_netpol(docs: list[Doc]) -> None:
    for doc in docs:
        if doc.get("kind") == "NetworkPolicy" and doc["metadata"]["name"] == "nats-from-keda":
            doc["spec"]["ingress"][0]["ports"][0]["port"] = 4222


@pytest.mark.parametrize(
    ("check", "breaker", "expected"),
    [
        ("schema", _break_schema, "imagee"),
        ("keda", _break_keda, "spec.minReplicas unknown to KEDA"),
        ("keda", _break_keda, "lagThreshold is not a string"),
        ("names", _break_names, "counts capability python but its agents claim review"),
        ("names", _break_names, "stream nmcp_other_work is not nmcp_default_work"),
        ("netpol", _break_netpol, "no NetworkPolicy admits keda-operator to NATS port 8222"),
    ],
)
def test_each_check_finds_what_it_looks_for(check: str, breaker: Callable[[list[Doc]], None], expected: str) -> None:
    docs = copy.deepcopy(everything())
    breaker(docs)
    assert any(expected in p for p in CHECKS[check](docs)), CHECKS[check](docs)


def test_the_fleet_role_grants_exactly_the_calls_the_mechanism_makes() -> None:
    source = (ROOT / "src" / "nats_mcp" / "fleet" / "kubernetes.py").read_text(encoding="utf-8")
    verb = {"create": "create", "read": "get", "list": "list", "patch": "patch", "delete": "delete"}
    called = {(verb[v], res + "s") for v, res in re.findall(r"apis\.(?:batch|core)\.(\w+?)_namespaced_(\w+)\(", source)}
    role = _first(load(KUBE / "fleet")["rbac.yaml"], "Role")
    granted = {(v, r) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert called == granted
    assert ("get", "secrets") not in granted and ("list", "secrets") not in granted  # it never reads a Secret


def test_the_fleet_job_template_renders_to_a_valid_job() -> None:
    spec = KubernetesSpec.model_validate(
        {
            "namespace": "nats-mcp",
            "jobTemplate": str(KUBE / "fleet" / "agent-job.yaml"),
            "env": {"A_TOKEN": {"fromEnv": "X"}},
        }
    )
    template = yaml.safe_load((KUBE / "fleet" / "agent-job.yaml").read_text(encoding="utf-8"))
    start = StartSpec("py", "0123456789ab", "c" * 32, "py-0123456789ab", ("python",), {"NATS_MCP_NAMESPACE": "default"})
    out = render(spec, start, {"A_TOKEN": "v"}, template)
    kubernetes_validate.validate(out.job, K8S_VERSION, strict=True)
    V1Job.from_dict(out.job)
    pod = out.job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nats-mcp-agent" and pod["containers"][0]["image"].startswith("registry.")
