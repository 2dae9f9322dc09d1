"""The Kubernetes manifests (deploy/kubernetes/) against the properties issue 9 asks of them, read as YAML.

Each property is a checker returning the problems it finds. The real manifests must have none; each checker
is also run on a copy of the manifests broken in exactly the way it looks for, and must report it, so no
check here passes by construction. The NATS configuration is also handed to the real ``nats-server -t``
and the nats-mcp settings and policy to their real loaders.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from nats_mcp.bus.natsperms import build_permissions
from nats_mcp.config.coordination import DEFAULT_CHANNELS
from nats_mcp.config.loader import load_settings
from nats_mcp.security.policy import Policy
from tests.support.natsserver import nats_server_binary

KUBE = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
NAMESPACE = "nats-mcp"
MCP_NAMESPACE = "default"
SECRET_NAME = re.compile(r"PASSWORD|PASS$|TOKEN|SECRET|KEY|CREDENTIAL", re.IGNORECASE)
PLACEHOLDER = "REPLACE-ME"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

Doc = dict[str, Any]


def load(directory: Path = KUBE) -> dict[str, list[Doc]]:
    """Every YAML document of every file, by file name."""
    return {
        p.name: [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]
        for p in sorted(directory.glob("*.yaml"))
    }


def applied(files: dict[str, list[Doc]]) -> list[Doc]:
    """The documents kustomization.yaml applies (secrets.example.yaml is not among them)."""
    kustomization = files["kustomization.yaml"][0]
    return [d for name in kustomization["resources"] for d in files[name]]


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") in kinds]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: Doc) -> Doc:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def pod_labels(workload: Doc) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def containers(workload: Doc) -> Iterator[tuple[Doc, bool]]:
    """(container, is_init) for every container of the workload's pod."""
    spec = pod_spec(workload)
    for c in spec.get("initContainers") or []:
        yield c, True
    for c in spec.get("containers") or []:
        yield c, False


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions In/Exists) matching these labels; {} matches all."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "Exists" and key not in labels):
            return False
        if (op == "NotIn" and labels.get(key) in values) or (op == "DoesNotExist" and key in labels):
            return False
    return True


# ---- checkers: each returns its problems ------------------------------------------------------------------------


def check_containers(docs: list[Doc]) -> list[str]:
    """Per container: non-root, read-only root, no privilege escalation, ALL capabilities dropped, requests and
    limits for cpu and memory, liveness and readiness probes, a pinned image, no secret as a literal env value."""
    problems = []
    for w in of_kind(docs, *WORKLOAD_KINDS):
        pod = pod_spec(w)
        pod_ctx = pod.get("securityContext") or {}
        where = f"{w['kind']}/{w['metadata']['name']}"
        if pod_ctx.get("runAsUser") == 0:
            problems.append(f"{where}: pod runs as uid 0")
        if (pod_ctx.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: no seccomp profile")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(flag):
                problems.append(f"{where}: {flag}")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: service account token mounted")
        for c, init in containers(w):
            at = f"{where} container {c['name']}"
            ctx = c.get("securityContext") or {}
            if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
                problems.append(f"{at}: runAsNonRoot not set")
            if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
                problems.append(f"{at}: runs as uid 0")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem not set")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation not false")
            if ctx.get("privileged"):
                problems.append(f"{at}: privileged")
            caps = ctx.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                problems.append(f"{at}: capabilities not all dropped")
            if caps.get("add"):
                problems.append(f"{at}: capabilities added: {caps['add']}")
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if not (resources.get(kind) or {}).get(res):
                        problems.append(f"{at}: no {res} {kind[:-1]}")
            if not init:
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        problems.append(f"{at}: no {probe}")
            problems += check_image(at, c.get("image", ""))
            for env in c.get("env") or []:
                if SECRET_NAME.search(env["name"]) and not env["name"].endswith("_FILE") and "value" in env:
                    problems.append(f"{at}: secret-like variable {env['name']} has a literal value")
    return problems


def check_image(at: str, image: str) -> list[str]:
    if "@sha256:" in image:
        return []
    name_tag = image.rsplit("/", 1)[-1]
    if ":" not in name_tag:
        return [f"{at}: image {image!r} has no tag"]
    if name_tag.rsplit(":", 1)[1] in ("latest", "stable", "main", "master"):
        return [f"{at}: image {image!r} is not pinned"]
    return []


def check_replicas(docs: list[Doc]) -> list[str]:
    """NATS: a StatefulSet of 3 with its volumes and a headless Service; the server: Deployments of 2 or more."""
    problems = []
    nats = named(docs, "StatefulSet", "nats")
    if nats["spec"].get("replicas") != 3:
        problems.append(f"StatefulSet/nats: {nats['spec'].get('replicas')} replicas, not 3")
    if not nats["spec"].get("volumeClaimTemplates"):
        problems.append("StatefulSet/nats: no volumeClaimTemplates (JetStream would lose its store)")
    headless = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == nats["spec"].get("serviceName")]
    if not headless or headless[0]["spec"].get("clusterIP") != "None":
        problems.append("StatefulSet/nats: its serviceName is not a headless Service")
    servers = [d for d in of_kind(docs, "Deployment") if pod_labels(d).get("app.kubernetes.io/name") == "nats-mcp"]
    if not servers:
        problems.append("no nats-mcp Deployment")
    for d in servers:
        if (d["spec"].get("replicas") or 1) < 2:
            problems.append(f"Deployment/{d['metadata']['name']}: fewer than 2 replicas")
    return problems


def check_pdbs(docs: list[Doc]) -> list[str]:
    """A PodDisruptionBudget for each workload that still lets one pod be drained."""
    problems = []
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for w in of_kind(docs, "Deployment", "StatefulSet"):
        mine = [p for p in pdbs if selects(p["spec"].get("selector"), pod_labels(w))]
        where = f"{w['kind']}/{w['metadata']['name']}"
        if not mine:
            problems.append(f"{where}: no PodDisruptionBudget")
            continue
        minimum = mine[0]["spec"].get("minAvailable")
        if isinstance(minimum, int) and minimum >= (w["spec"].get("replicas") or 1):
            problems.append(f"{where}: minAvailable {minimum} blocks every drain")
    return problems


@dataclass(frozen=True)
class Peer:
    """A pod somewhere: its labels and its namespace's labels."""

    labels: dict[str, str]
    namespace: str = NAMESPACE
    namespace_labels: dict[str, str] | None = None

    @property
    def ns_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **(self.namespace_labels or {})}


def _peer_matches(rule_peers: list[Doc] | None, peer: Peer) -> bool:
    if rule_peers is None:
        return True  # no from/to: every peer
    for p in rule_peers:
        if "ipBlock" in p:
            continue  # pods are matched by selectors here
        ns_sel, pod_sel = p.get("namespaceSelector"), p.get("podSelector")
        ns_ok = selects(ns_sel, peer.ns_labels) if ns_sel is not None else peer.namespace == NAMESPACE
        pod_ok = selects(pod_sel, peer.labels) if pod_sel is not None else True
        if ns_ok and pod_ok:
            return True
    return False


def _port_matches(rule_ports: list[Doc] | None, port: int, protocol: str) -> bool:
    if rule_ports is None:
        return True
    return any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in rule_ports)


def _direction_allows(policies: list[Doc], subject: Peer, other: Peer, port: int, protocol: str, way: str) -> bool:
    """Whether the policies of subject's namespace let traffic go ``way`` (ingress/egress) between it and other."""
    kind = way.capitalize()
    mine = [
        p
        for p in policies
        if subject.namespace == NAMESPACE
        and selects(p["spec"]["podSelector"], subject.labels)
        and kind in (p["spec"].get("policyTypes") or ["Ingress"])
    ]
    if not mine:
        return True  # not isolated in this direction
    peers_key = "from" if way == "ingress" else "to"
    return any(
        _peer_matches(rule.get(peers_key), other) and _port_matches(rule.get("ports"), port, protocol)
        for p in mine
        for rule in p["spec"].get(way) or []
    )


def allows(policies: list[Doc], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    """Traffic from src to dst:port passes both src's egress and dst's ingress policies."""
    return _direction_allows(policies, src, dst, port, protocol, "egress") and _direction_allows(
        policies, dst, src, port, protocol, "ingress"
    )


NATS_POD = Peer({"app.kubernetes.io/name": "nats"})
HTTP_POD = Peer({"app.kubernetes.io/name": "nats-mcp", "app.kubernetes.io/component": "http"})
GRPC_POD = Peer({"app.kubernetes.io/name": "nats-mcp", "app.kubernetes.io/component": "grpc"})
CLIENT = Peer({"app": "claude-agent"}, "agents", {"nats-mcp/access": "true"})
STRANGER = Peer({"app": "anything"}, "elsewhere")
DNS = Peer({"k8s-app": "kube-dns"}, "kube-system")
OUTSIDE = Peer({}, "internet")

NEEDED = [
    (CLIENT, HTTP_POD, 8765, "TCP"),
    (CLIENT, GRPC_POD, 8766, "TCP"),
    (HTTP_POD, NATS_POD, 4222, "TCP"),
    (GRPC_POD, NATS_POD, 4222, "TCP"),
    (NATS_POD, NATS_POD, 6222, "TCP"),
    *((pod, DNS, 53, proto) for pod in (NATS_POD, HTTP_POD, GRPC_POD) for proto in ("UDP", "TCP")),
]
FORBIDDEN = [
    (STRANGER, HTTP_POD, 8765, "TCP"),
    (STRANGER, NATS_POD, 4222, "TCP"),
    (CLIENT, NATS_POD, 4222, "TCP"),
    (HTTP_POD, NATS_POD, 6222, "TCP"),
    (STRANGER, NATS_POD, 8222, "TCP"),
    (HTTP_POD, OUTSIDE, 443, "TCP"),
    (NATS_POD, OUTSIDE, 443, "TCP"),
    (HTTP_POD, GRPC_POD, 8766, "TCP"),
]


def check_network(docs: list[Doc]) -> list[str]:
    """Default deny in both directions; each workload selected by a policy of its own; exactly the needed flows."""
    problems = []
    policies = of_kind(docs, "NetworkPolicy")
    deny_all = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny_all:
        problems.append("no default-deny NetworkPolicy (both directions)")
    for w in of_kind(docs, *WORKLOAD_KINDS):
        own = [p for p in policies if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], pod_labels(w))]
        if not own:
            problems.append(f"{w['kind']}/{w['metadata']['name']}: no NetworkPolicy selects it")
    for src, dst, port, proto in NEEDED:
        if not allows(policies, src, dst, port, proto):
            problems.append(f"needed flow blocked: {src.labels} -> {dst.labels}:{port}/{proto}")
    for src, dst, port, proto in FORBIDDEN:
        if allows(policies, src, dst, port, proto):
            problems.append(f"flow allowed that is not needed: {src.labels}@{src.namespace} -> {dst.labels}:{port}")
    return problems


def referenced_secrets(docs: list[Doc]) -> dict[str, set[str]]:
    """Secret name -> keys the workloads read from it."""
    refs: dict[str, set[str]] = {}
    for w in of_kind(docs, *WORKLOAD_KINDS):
        for volume in pod_spec(w).get("volumes") or []:
            secret = volume.get("secret")
            if secret:
                keys = refs.setdefault(secret["secretName"], set())
                keys.update(item["key"] for item in secret.get("items") or [])
        for c, _ in containers(w):
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
    return refs


def check_secrets(files: dict[str, list[Doc]]) -> list[str]:
    """No Secret is applied; each one the workloads read is in secrets.example.yaml with its keys, as placeholders."""
    problems = []
    docs = applied(files)
    for s in of_kind(docs, "Secret"):
        problems.append(f"Secret/{s['metadata']['name']} is applied with the manifests (values belong elsewhere)")
    examples = {s["metadata"]["name"]: s for s in of_kind(files.get("secrets.example.yaml", []), "Secret")}
    for name, keys in referenced_secrets(docs).items():
        example = examples.get(name)
        if example is None:
            problems.append(f"Secret {name} is used but not described in secrets.example.yaml")
            continue
        values = {**(example.get("stringData") or {}), **(example.get("data") or {})}
        problems += [f"Secret {name}: key {k} missing from the example" for k in sorted(keys - set(values))]
    for name, example in examples.items():
        for key, value in {**(example.get("stringData") or {}), **(example.get("data") or {})}.items():
            if PLACEHOLDER not in str(value):
                problems.append(f"secrets.example.yaml: {name}.{key} holds a value, not a placeholder")
    for name, docs_of_file in files.items():
        for cm in of_kind(docs_of_file, "ConfigMap"):
            for key, text in (cm.get("data") or {}).items():
                for line in str(text).splitlines():
                    m = re.search(r"(password|token|secret)\s*[:=]\s*(\S+)", line, re.IGNORECASE)
                    if m and not line.lstrip().startswith("#") and not m.group(2).startswith("$"):
                        problems.append(f"{name}: ConfigMap {cm['metadata']['name']}.{key} inlines {m.group(0)!r}")
    return problems


def check_kustomization(files: dict[str, list[Doc]]) -> list[str]:
    """kustomization.yaml applies every manifest but the secrets example, into the namespace."""
    k = files["kustomization.yaml"][0]
    expected = set(files) - {"kustomization.yaml", "secrets.example.yaml"}
    problems = [f"kustomization.yaml does not list {n}" for n in sorted(expected - set(k["resources"]))]
    problems += [f"kustomization.yaml lists {n}" for n in k["resources"] if n not in expected]
    if k.get("namespace") != NAMESPACE:
        problems.append(f"kustomization.yaml: namespace {k.get('namespace')!r}")
    return problems


def nats_conf(docs: list[Doc]) -> str:
    """The nats.conf of the ConfigMap the StatefulSet mounts."""
    nats = named(docs, "StatefulSet", "nats")
    names = [v["configMap"]["name"] for v in pod_spec(nats)["volumes"] if "configMap" in v]
    return str(named(docs, "ConfigMap", names[0])["data"]["nats.conf"])


def _block(conf: str, key: str) -> str:
    """The text of the first ``key { ... }`` block (balanced braces; comments removed)."""
    text = re.sub(r"#[^\n]*", "", conf)
    m = re.search(rf"(?m)^\s*{key}\s*[:=]?\s*\{{", text)
    if m is None:
        return ""
    depth, i = 1, m.end()
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end() : i - 1]


def permissions_block(role: str) -> str:
    namespaces = [] if role == "admin" else [MCP_NAMESPACE]
    rendered = build_permissions(role, namespaces, channels=[c.name for c in DEFAULT_CHANNELS]).render()  # type: ignore[arg-type]
    start = re.search(r"(?m)^permissions:", rendered)
    assert start is not None
    return rendered[start.start() :]


def _unindent(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def check_nats_conf(docs: list[Doc]) -> list[str]:
    """TLS (1.2+) for clients and for routes (certificates verified both ways), 3 routes, JetStream on a volume,
    every user with a password from the environment and exactly the permissions nats-permissions prints."""
    conf = nats_conf(docs)
    problems = []
    top_tls = _block(re.sub(r"(?s)cluster\s*\{.*", "", conf), "tls")
    cluster = _block(conf, "cluster")
    for where, tls in (("client", top_tls), ("route", _block(cluster, "tls"))):
        if not all(k in tls for k in ("cert_file", "key_file", "ca_file")):
            problems.append(f"{where} TLS: no certificate, key and CA")
        if not re.search(r'min_version:\s*"?1\.[23]', tls):
            problems.append(f"{where} TLS: no min_version 1.2 or later")
    if not re.search(r"verify:\s*true", _block(cluster, "tls")):
        problems.append("route TLS: peers' certificates are not verified")
    if len(re.findall(r"nats://[\w.-]+:6222", _block(cluster, "routes") or cluster)) != 3:
        problems.append("cluster: not 3 routes")
    if "store_dir" not in _block(conf, "jetstream"):
        problems.append("jetstream: no store_dir")
    if re.search(r"no_auth_user", conf):
        problems.append("no_auth_user lets clients in without credentials")
    users = _block(conf, "accounts")
    passwords = re.findall(r"password:\s*(\S+)", users)
    if not passwords or any(not p.startswith("$") for p in passwords):
        problems.append(f"users: passwords not all from the environment: {passwords}")
    flat = _unindent(conf)
    for role in ("admin", "gateway"):
        if _unindent(permissions_block(role)) not in flat:
            problems.append(f"the {role} user's permissions differ from `nats-mcp nats-permissions --role {role}`")
    return problems


def check_mcp_settings(docs: list[Doc], tmp_path: Path) -> list[str]:
    """The nats-mcp settings file loads; it names the gateway's inbox prefix, requires TLS to NATS, and every
    file it names is mounted into the containers from the right Secret key or ConfigMap."""
    problems = []
    servers = [d for d in of_kind(docs, "Deployment") if pod_labels(d).get("app.kubernetes.io/name") == "nats-mcp"]
    config_path = next(
        e["value"] for c, _ in containers(servers[0]) for e in c["env"] if e["name"] == "NATS_MCP_CONFIG"
    )
    cm = named(docs, "ConfigMap", "nats-mcp-config")
    settings_file = tmp_path / "config.yaml"
    settings_file.write_text(cm["data"]["config.yaml"], encoding="utf-8")
    settings = load_settings(config_file=settings_file, environ={"HOME": str(tmp_path)}).settings
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(cm["data"]["policy.yaml"], encoding="utf-8")
    Policy.load(policy_file)
    gateway = build_permissions("gateway", [settings.resolved_namespace], channels=[c.name for c in settings.channels])
    if settings.nats.inbox_prefix != gateway.inbox_prefix:
        problems.append(f"nats.inbox_prefix {settings.nats.inbox_prefix} is not the gateway's {gateway.inbox_prefix}")
    if not (settings.nats.tls.required and settings.nats.tls.ca_file) or settings.nats.tls.min_version < "1.2":
        problems.append("nats-mcp does not require TLS 1.2+ to NATS with a CA")
    if settings.nats.password is not None or settings.nats.token is not None:
        problems.append("a NATS secret is in the settings file")
    if not all(u.startswith("tls://") for u in settings.nats.servers):
        problems.append("NATS URLs are not tls://")
    named_files = (
        settings.security.policy_file,
        settings.nats.tls.ca_file,
        settings.http.tls_cert_file,
        settings.http.tls_key_file,
        settings.grpc.tls_cert_file,
        settings.grpc.client_ca_file,
    )
    files = {config_path, *(str(f) for f in named_files)}
    for d in servers:
        env = {e["name"]: e.get("value") for c, _ in containers(d) for e in c.get("env") or []}
        wanted = files | {env.get("NATS_MCP_NATS_PASSWORD_FILE") or "(NATS_MCP_NATS_PASSWORD_FILE unset)"}
        problems += [f"Deployment/{d['metadata']['name']}: {f}" for f in sorted(wanted) if not mounted(d, f, docs)]
    return problems


def mounted(workload: Doc, path: str, docs: list[Doc]) -> bool:
    """Whether ``path`` is a file of a ConfigMap or Secret volume mounted into the workload's first container."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes") or []}
    container = pod_spec(workload)["containers"][0]
    for m in container.get("volumeMounts") or []:
        prefix = m["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        rel, volume = path[len(prefix) :], volumes[m["name"]]
        if "configMap" in volume:
            return rel in named(docs, "ConfigMap", volume["configMap"]["name"])["data"]
        if "secret" in volume:
            items = volume["secret"].get("items")
            return rel in [i["path"] for i in items] if items else True
    return False


def check_probes(docs: list[Doc]) -> list[str]:
    """HTTP probes hit a route that answers without a token, on a port the container exposes."""
    problems = []
    for w in of_kind(docs, *WORKLOAD_KINDS):
        for c, init in containers(w):
            if init:
                continue
            ports = {p.get("name") for p in c.get("ports") or []} | {p["containerPort"] for p in c.get("ports") or []}
            for kind in ("livenessProbe", "readinessProbe"):
                probe = c.get(kind) or {}
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}
                if handler and handler.get("port") not in ports:
                    problems.append(
                        f"{w['metadata']['name']}/{c['name']} {kind}: port {handler.get('port')} not exposed"
                    )
                path = (probe.get("httpGet") or {}).get("path", "")
                if path.startswith("/mcp"):
                    problems.append(f"{w['metadata']['name']} {kind}: {path} needs a token (probes would get 401)")
    return problems


# ---- the real manifests --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files() -> dict[str, list[Doc]]:
    return load()


@pytest.fixture(scope="module")
def docs(files: dict[str, list[Doc]]) -> list[Doc]:
    return applied(files)


@pytest.mark.parametrize(
    "checker", [check_containers, check_replicas, check_pdbs, check_network, check_nats_conf, check_probes]
)
def test_the_manifests_have_no_problem(checker: Callable[[list[Doc]], list[str]], docs: list[Doc]) -> None:
    assert checker(docs) == []


def test_secrets_and_kustomization_have_no_problem(files: dict[str, list[Doc]]) -> None:
    assert check_secrets(files) == []
    assert check_kustomization(files) == []


def test_the_nats_mcp_settings_load_and_match_the_mounts(docs: list[Doc], tmp_path: Path) -> None:
    assert check_mcp_settings(docs, tmp_path) == []


def test_the_workloads_are_what_the_issue_asks(docs: list[Doc]) -> None:
    assert named(docs, "StatefulSet", "nats")["spec"]["replicas"] == 3
    servers = {d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind(docs, "Deployment")}
    assert servers == {"nats-mcp-http": 2, "nats-mcp-grpc": 2}
    assert {p["metadata"]["name"] for p in of_kind(docs, "PodDisruptionBudget")} == set(servers) | {"nats"}
    assert (
        named(docs, "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )


def test_nats_server_accepts_the_configuration(docs: list[Doc], tmp_path: Path) -> None:
    """The real nats-server parses the ConfigMap's nats.conf (certificate paths pointed at test certificates)."""
    ca = trustme.CA()
    cert = ca.issue_cert("nats-0.nats-headless.nats-mcp.svc.cluster.local")
    tls = tmp_path / "tls"
    tls.mkdir()
    cert.cert_chain_pems[0].write_to_path(tls / "tls.crt")
    cert.private_key_pem.write_to_path(tls / "tls.key")
    ca.cert_pem.write_to_path(tls / "ca.crt")
    conf = nats_conf(docs).replace("/etc/nats/tls", str(tls)).replace("/data/jetstream", str(tmp_path / "js"))
    (tmp_path / "nats.conf").write_text(conf, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "POD_NAME": "nats-0",
        "NATS_ADMIN_PASSWORD": "a" * 32,
        "NATS_GATEWAY_PASSWORD": "g" * 32,
    }
    binary = nats_server_binary()
    ok = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats.conf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    del env["NATS_GATEWAY_PASSWORD"]  # a password that is not in the pod's environment stops the server
    missing = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats.conf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode != 0
    assert "NATS_GATEWAY_PASSWORD" in missing.stderr + missing.stdout


# ---- each checker on manifests broken the way it looks for ----------------------------------------------------


def _container(docs: list[Doc], name: str) -> Doc:
    workload = next(d for d in of_kind(docs, *WORKLOAD_KINDS) if d["metadata"]["name"] == name)
    found: Doc = workload["spec"]["template"]["spec"]["containers"][0]
    return found


def pod_spec_of(docs: list[Doc], name: str) -> Doc:
    workload = next(d for d in of_kind(docs, *WORKLOAD_KINDS) if d["metadata"]["name"] == name)
    found: Doc = workload["spec"]["template"]["spec"]
    return found


def _set(docs: list[Doc], name: str, path: str, value: Any) -> None:
    node = _container(docs, name)
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def _conf(docs: list[Doc], old: str, new: str) -> None:
    cm = named(docs, "ConfigMap", "nats-config")
    assert old in cm["data"]["nats.conf"], old
    cm["data"]["nats.conf"] = cm["data"]["nats.conf"].replace(old, new, 1)


def _policy(docs: list[Doc], name: str) -> Doc:
    return named(docs, "NetworkPolicy", name)


BREAKAGES: list[tuple[str, Callable[[list[Doc]], None], Callable[[list[Doc]], list[str]], str]] = [
    (
        "root",
        lambda d: (
            _set(d, "nats-mcp-http", "securityContext.runAsNonRoot", None),
            pod_spec_of(d, "nats-mcp-http")["securityContext"].pop("runAsNonRoot"),
        ),
        check_containers,
        "runAsNonRoot",
    ),
    (
        "uid 0",
        lambda d: pod_spec_of(d, "nats").get("securityContext", {}).update(runAsUser=0),
        check_containers,
        "uid 0",
    ),
    (
        "writable root",
        lambda d: _set(d, "nats", "securityContext.readOnlyRootFilesystem", False),
        check_containers,
        "readOnlyRootFilesystem",
    ),
    (
        "escalation",
        lambda d: _set(d, "nats-mcp-grpc", "securityContext.allowPrivilegeEscalation", True),
        check_containers,
        "allowPrivilegeEscalation",
    ),
    (
        "capabilities",
        lambda d: _set(d, "nats", "securityContext.capabilities", {"drop": ["NET_RAW"]}),
        check_containers,
        "capabilities not all dropped",
    ),
    (
        "capability added",
        lambda d: _set(d, "nats", "securityContext.capabilities.add", ["NET_ADMIN"]),
        check_containers,
        "capabilities added",
    ),
    (
        "no cpu limit",
        lambda d: _set(d, "nats-mcp-http", "resources.limits.cpu", None),
        check_containers,
        "no cpu limit",
    ),
    (
        "no memory request",
        lambda d: _set(d, "nats", "resources.requests.memory", None),
        check_containers,
        "no memory request",
    ),
    ("no liveness", lambda d: _set(d, "nats-mcp-grpc", "livenessProbe", None), check_containers, "livenessProbe"),
    ("no readiness", lambda d: _set(d, "nats", "readinessProbe", None), check_containers, "readinessProbe"),
    ("latest", lambda d: _set(d, "nats", "image", "nats:latest"), check_containers, "not pinned"),
    (
        "untagged",
        lambda d: _set(d, "nats-mcp-http", "image", "registry.example.com/nats-mcp"),
        check_containers,
        "no tag",
    ),
    (
        "literal password",
        lambda d: _container(d, "nats-mcp-http")["env"].append({"name": "NATS_PASS", "value": "hunter2"}),
        check_containers,
        "literal value",
    ),
    (
        "token mounted",
        lambda d: named(d, "Deployment", "nats-mcp-http")["spec"]["template"]["spec"].pop(
            "automountServiceAccountToken"
        ),
        check_containers,
        "service account token",
    ),
    ("1 nats", lambda d: named(d, "StatefulSet", "nats")["spec"].update(replicas=1), check_replicas, "not 3"),
    (
        "no volumes",
        lambda d: named(d, "StatefulSet", "nats")["spec"].pop("volumeClaimTemplates"),
        check_replicas,
        "volumeClaimTemplates",
    ),
    (
        "1 server",
        lambda d: named(d, "Deployment", "nats-mcp-grpc")["spec"].update(replicas=1),
        check_replicas,
        "fewer than 2",
    ),
    (
        "no pdb",
        lambda d: d.remove(named(d, "PodDisruptionBudget", "nats-mcp-http")),
        check_pdbs,
        "no PodDisruptionBudget",
    ),
    (
        "pdb blocks drains",
        lambda d: named(d, "PodDisruptionBudget", "nats")["spec"].update(minAvailable=3),
        check_pdbs,
        "blocks every drain",
    ),
    ("no default deny", lambda d: d.remove(_policy(d, "default-deny")), check_network, "no default-deny"),
    ("no dns", lambda d: d.remove(_policy(d, "allow-dns")), check_network, "needed flow blocked"),
    (
        "nats open to all",
        lambda d: _policy(d, "nats")["spec"]["ingress"][0].pop("from"),
        check_network,
        "flow allowed that is not needed",
    ),
    ("no route rule", lambda d: _policy(d, "nats")["spec"].pop("egress"), check_network, "6222"),
    ("server egress anywhere", lambda d: _policy(d, "nats-mcp")["spec"]["egress"].append({}), check_network, "443"),
    (
        "nats unselected",
        lambda d: _policy(d, "nats")["spec"].update(podSelector={"matchLabels": {"x": "y"}}),
        check_network,
        "no NetworkPolicy selects",
    ),
    (
        "no client tls",
        lambda d: _conf(d, 'ca_file: "/etc/nats/tls/ca.crt"\n  min_version: "1.2"', ""),
        check_nats_conf,
        "client TLS",
    ),
    ("routes unverified", lambda d: _conf(d, "verify: true", "verify: false"), check_nats_conf, "not verified"),
    (
        "two routes",
        lambda d: _conf(d, '"nats://nats-2.nats-headless.nats-mcp.svc.cluster.local:6222"', ""),
        check_nats_conf,
        "not 3 routes",
    ),
    (
        "literal user password",
        lambda d: _conf(d, "password: $NATS_GATEWAY_PASSWORD", "password: hunter2"),
        check_nats_conf,
        "passwords not all from the environment",
    ),
    (
        "wider gateway",
        lambda d: _conf(d, '"nmcp.default.chan.roadmap"  # send', '"nmcp.>"  # send'),
        check_nats_conf,
        "gateway user's permissions differ",
    ),
    (
        "anonymous users",
        lambda d: _conf(d, "accounts {", 'no_auth_user: "gateway"\naccounts {'),
        check_nats_conf,
        "no_auth_user",
    ),
    (
        "probe needs token",
        lambda d: _container(d, "nats-mcp-http")["readinessProbe"]["httpGet"].update(path="/mcp"),
        check_probes,
        "needs a token",
    ),
    (
        "probe on a closed port",
        lambda d: _container(d, "nats-mcp-grpc")["livenessProbe"]["tcpSocket"].update(port=9999),
        check_probes,
        "not exposed",
    ),
]


@pytest.mark.parametrize(("breakage", "checker", "expected"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_each_check_reports_what_it_looks_for(
    breakage: Callable[[list[Doc]], None],
    checker: Callable[[list[Doc]], list[str]],
    expected: str,
    docs: list[Doc],
) -> None:
    broken = copy.deepcopy(docs)
    breakage(broken)
    problems = checker(broken)
    assert any(expected in p for p in problems), problems


def _files_with(files: dict[str, list[Doc]], change: Callable[[dict[str, list[Doc]]], None]) -> list[str]:
    broken = copy.deepcopy(files)
    change(broken)
    return check_secrets(broken) + check_kustomization(broken)


def test_secret_checks_report_what_they_look_for(files: dict[str, list[Doc]]) -> None:
    def applied_secret(f: dict[str, list[Doc]]) -> None:
        f["kustomization.yaml"][0]["resources"].append("secrets.example.yaml")

    def real_value(f: dict[str, list[Doc]]) -> None:
        named(f["secrets.example.yaml"], "Secret", "nats-auth")["stringData"]["gateway-password"] = "s3cr3t-v4lue"

    def missing_key(f: dict[str, list[Doc]]) -> None:
        named(f["secrets.example.yaml"], "Secret", "nats-auth")["stringData"].pop("admin-password")

    def inlined(f: dict[str, list[Doc]]) -> None:
        cm = named(f["nats-mcp-config.yaml"], "ConfigMap", "nats-mcp-config")
        cm["data"]["config.yaml"] += "\n    password: hunter2\n"

    def unlisted(f: dict[str, list[Doc]]) -> None:
        f["kustomization.yaml"][0]["resources"].remove("pdb.yaml")

    assert any("is applied" in p for p in _files_with(files, applied_secret))
    assert any("not a placeholder" in p for p in _files_with(files, real_value))
    assert any("admin-password missing" in p for p in _files_with(files, missing_key))
    assert any("inlines" in p for p in _files_with(files, inlined))
    assert any("does not list pdb.yaml" in p for p in _files_with(files, unlisted))


def test_settings_check_reports_what_it_looks_for(docs: list[Doc], tmp_path: Path) -> None:
    def with_config(old: str, new: str) -> list[str]:
        broken = copy.deepcopy(docs)
        cm = named(broken, "ConfigMap", "nats-mcp-config")
        assert old in cm["data"]["config.yaml"], old
        cm["data"]["config.yaml"] = cm["data"]["config.yaml"].replace(old, new)
        return check_mcp_settings(broken, tmp_path)

    assert any("inbox_prefix" in p for p in with_config("_INBOX_gw_37a8eec1ce19", "_INBOX_gw_000000000000"))
    assert any("TLS 1.2+" in p for p in with_config("required: true", "required: false"))
    assert any(
        "/etc/nats-mcp/elsewhere/ca.crt" in p
        for p in with_config("/etc/nats-mcp/nats-ca/ca.crt", "/etc/nats-mcp/elsewhere/ca.crt")
    )
    assert any("tls://" in p for p in with_config("tls://nats-0", "nats://nats-0"))
    broken = copy.deepcopy(docs)
    for vol in named(broken, "Deployment", "nats-mcp-grpc")["spec"]["template"]["spec"]["volumes"]:
        if vol["name"] == "nats-auth":
            vol["secret"]["items"] = [{"key": "admin-password", "path": "admin-password"}]
    assert any("gateway-password" in p for p in check_mcp_settings(broken, tmp_path))
