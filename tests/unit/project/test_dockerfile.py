"""deploy/Dockerfile, .dockerignore and the image's health check, read and run without Docker.

The Dockerfile is parsed into instructions and checked for what issue 9 asks: several stages with a final one
that copies from the build stage, a numeric non-root USER, a HEALTHCHECK, no secret in ENV/ARG or COPY, the
server's real ports exposed, a pinned base image, and only environment variables the settings know. Each check
is also run on a Dockerfile broken the way it looks for. The .dockerignore is evaluated with Docker's rules
(last match wins) on paths that must and must not reach the build. deploy/healthcheck.py runs against real
local sockets.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from nats_mcp.config.grpc import GrpcSettings
from nats_mcp.config.http import HttpSettings
from nats_mcp.config.leaves import LEAVES, WARP_ENV

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
SECRET_NAME = re.compile(r"PASSWORD|PASS$|TOKEN|SECRET|KEY|CREDENTIAL|CREDS", re.IGNORECASE)
SECRET_FILE = re.compile(r"(^|/)(\.env(\..*)?|.*\.(pem|key|p12|pfx|creds|nk)|id_rsa.*|.*secret.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def env_pairs(args: str) -> list[tuple[str, str]]:
    """ENV/ARG ``K=V K2=V2`` or ``K V`` (or ARG ``K`` without a value)."""
    if "=" not in args.split(" ", 1)[0]:
        name, _, value = args.partition(" ")
        return [(name, value.strip())]
    return [(m.group(1), m.group(2)) for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', args)]


def check_dockerfile(text: str) -> list[str]:
    problems = []
    all_stages = stages(parse(text))
    if len(all_stages) < 2:
        return ["not a multi-stage build"]
    first_from = all_stages[0][0].args.split()
    if len(first_from) < 3 or first_from[1].upper() != "AS":
        problems.append("the build stage has no name (FROM ... AS build)")
    build_name = first_from[2] if len(first_from) >= 3 else ""
    final = all_stages[-1]
    if not any(i.keyword == "COPY" and f"--from={build_name}" in i.args for i in final):
        problems.append("the final stage copies nothing from the build stage")
    for stage in all_stages:
        image = stage[0].args.split()[0]
        name_tag = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in name_tag or name_tag.split(":", 1)[1] == "latest"):
            problems.append(f"base image {image} is not pinned")
    users = [i.args for i in final if i.keyword == "USER"]
    if not users:
        problems.append("the final stage has no USER (runs as root)")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit():
            problems.append(f"USER {users[-1]} is not numeric (Kubernetes cannot verify runAsNonRoot)")
        elif int(uid) == 0:
            problems.append("USER is root")
        last_user = max(i for i, ins in enumerate(final) if ins.keyword == "USER")
        if any(ins.keyword == "RUN" for ins in final[last_user:]):
            problems.append("RUN after USER: the image is changed by the runtime user")
    checks = [i.args for i in final if i.keyword == "HEALTHCHECK"]
    if not checks or checks[-1].upper().startswith("NONE"):
        problems.append("no HEALTHCHECK")
    known_env = {leaf.env for leaf in LEAVES.values()} | set(WARP_ENV) | {"NATS_MCP_CONFIG"}
    for ins in parse(text):  # every instruction, also ARGs before the first FROM
        if ins.keyword in ("ENV", "ARG"):
            for name, value in env_pairs(ins.args):
                if SECRET_NAME.search(name) and not name.endswith("_FILE") and value:
                    problems.append(f"{ins.keyword} {name} holds a secret-like value")
                if name.startswith("NATS_MCP_") and name not in known_env:
                    problems.append(f"{ins.keyword} {name} is not a setting")
        if ins.keyword in ("COPY", "ADD"):
            sources = [a for a in ins.args.split() if not a.startswith("--")][:-1]
            for src in sources:
                if SECRET_FILE.search(src.rstrip("/")):
                    problems.append(f"{ins.keyword} {src}: a secret file in the image")
            if ins.keyword == "ADD" and any("://" in s for s in sources):
                problems.append(f"ADD from a URL: {ins.args}")
    exposed = {int(p.split("/")[0]) for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    wanted = {HttpSettings().port, GrpcSettings().port}
    if exposed != wanted:
        problems.append(f"EXPOSE {sorted(exposed)}, the server listens on {sorted(wanted)}")
    if not any(i.keyword == "ENTRYPOINT" and "nats-mcp" in i.args for i in final):
        problems.append("the entrypoint is not nats-mcp")
    build = all_stages[0]
    if not any(i.keyword == "COPY" and "uv.lock" in i.args.split() for i in build) or not any(
        i.keyword == "RUN" and "uv sync --locked" in i.args for i in build
    ):
        problems.append("the build stage does not install from uv.lock (uv sync --locked)")
    if any(i.keyword == "RUN" and re.search(r"pip install (?!.*--require-hashes)", i.args) for i in build):
        problems.append("pip installs something without --require-hashes")
    if not any(
        i.keyword == "RUN" and "nats-mcp version --check" in i.args and "> /opt/nats-mcp/sbom.cdx.json" in i.args
        for i in build
    ):
        problems.append("the build stage does not check the installed set against the SBOM and ship it")
    return problems


def test_the_dockerfile_has_no_problem() -> None:
    assert check_dockerfile(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_the_dockerfile_runs_as_uid_10001_and_checks_health_with_the_shipped_script() -> None:
    final = stages(parse(DOCKERFILE.read_text(encoding="utf-8")))[-1]
    assert [i.args for i in final if i.keyword == "USER"] == ["10001:10001"]
    health = next(i.args for i in final if i.keyword == "HEALTHCHECK")
    assert "/opt/nats-mcp/healthcheck.py" in health
    assert any(i.keyword == "COPY" and i.args.startswith("deploy/healthcheck.py /opt/nats-mcp/") for i in final)


BROKEN = [
    ("single stage", lambda t: re.sub(r"(?s)^.*?(?=FROM python:\S+\n\nLABEL)", "", t), "multi-stage"),
    ("root", lambda t: t.replace("USER 10001:10001", "USER 0"), "USER is root"),
    ("named user", lambda t: t.replace("USER 10001:10001", "USER nats-mcp"), "not numeric"),
    ("no user", lambda t: t.replace("USER 10001:10001\n", ""), "no USER"),
    ("run after user", lambda t: t.replace("USER 10001:10001\n", "USER 10001:10001\nRUN touch /x\n"), "RUN after"),
    ("no healthcheck", lambda t: re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", t), "no HEALTHCHECK"),
    ("healthcheck none", lambda t: re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "HEALTHCHECK NONE\n", t), "no HEALTHCHECK"),
    ("env secret", lambda t: t.replace("ENV PATH=", "ENV NATS_MCP_NATS_PASSWORD=hunter2 PATH="), "secret-like"),
    ("arg token", lambda t: t.replace("FROM python", "ARG NATS_TOKEN=abc\nFROM python", 1), "secret-like"),
    ("copy env file", lambda t: t.replace("COPY src ./src", "COPY src ./src\nCOPY .env ./"), "secret file"),
    ("copy key", lambda t: t.replace("COPY src ./src", "COPY certs/server-key.pem ./"), "secret file"),
    ("add url", lambda t: t.replace("COPY src ./src", "ADD https://example.com/x.tgz /x"), "URL"),
    ("latest", lambda t: t.replace("python:3.11.11-slim-bookworm AS build", "python:latest AS build"), "not pinned"),
    ("untagged", lambda t: t.replace("FROM python:3.11.11-slim-bookworm\n", "FROM python\n"), "not pinned"),
    ("wrong port", lambda t: t.replace("EXPOSE 8765 8766", "EXPOSE 8080"), "EXPOSE"),
    ("typo setting", lambda t: t.replace("NATS_MCP_HTTP_HOST=", "NATS_MCP_HTTP_HOSTNAME="), "not a setting"),
    ("nothing copied", lambda t: t.replace("COPY --from=build", "COPY"), "copies nothing"),
    ("unnamed build", lambda t: t.replace(" AS build", ""), "no name"),
    ("no lock", lambda t: t.replace("uv sync --locked", "uv sync"), "uv.lock"),
    ("lock not copied", lambda t: t.replace("COPY pyproject.toml uv.lock", "COPY pyproject.toml"), "uv.lock"),
    ("no sbom", lambda t: t.replace(" version --check", " --version"), "SBOM"),
    ("pip resolves", lambda t: t.replace("RUN uv sync --locked", "RUN pip install . && uv sync --locked"), "hashes"),
]


@pytest.mark.parametrize(("change", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_dockerfile_check_reports_what_it_looks_for(change: object, expected: str) -> None:
    original = DOCKERFILE.read_text(encoding="utf-8")
    broken = change(original)  # type: ignore[operator]
    assert broken != original, "the breakage did not apply"
    problems = check_dockerfile(broken)
    assert any(expected in p for p in problems), problems


# ---- .dockerignore ------------------------------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over a slash path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(rf"^{out}(?:/.*)?$")  # a directory's pattern covers what is inside it


def ignored(rules: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (the last matching rule wins)."""
    verdict = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        if _pattern(pattern.strip("/")).match(path):
            verdict = not negate
    return verdict


def rules_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


MUST_REACH_THE_BUILD = [
    "pyproject.toml",
    "uv.lock",
    "scripts/uv-requirements.txt",
    "README.md",
    "src/nats_mcp/config/settings.py",
    "src/nats_mcp/py.typed",
    "src/nats_mcp/transports/grpc/gen/transport_pb2.pyi",
    "deploy/healthcheck.py",
]
MUST_NOT = [
    ".env",
    ".env.local",
    "src/.env",
    "dev-certs/ca-key.pem",
    "src/nats_mcp/server.key",
    ".git/config",
    ".venv/bin/python",
    "tests/unit/config/test_config.py",
    ".cache/node/bin/node",
    "bench/results/http.json",
    "src/nats_mcp/__pycache__/config.cpython-311.pyc",
    "audit.jsonl",
    "creds/user.creds",
    "deploy/Dockerfile",
    "deploy/kubernetes/secrets.example.yaml",
]


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secret() -> None:
    rules = rules_of(DOCKERIGNORE.read_text(encoding="utf-8"))
    assert [p for p in MUST_REACH_THE_BUILD if ignored(rules, p)] == []
    assert [p for p in MUST_NOT if not ignored(rules, p)] == []
    for src in (
        s
        for i in parse(DOCKERFILE.read_text(encoding="utf-8"))
        if i.keyword == "COPY"
        if "--from" not in i.args
        for s in i.args.split()[:-1]
    ):
        assert not ignored(rules, src.rstrip("/")), src
        assert (ROOT / src).exists(), src


def test_the_dockerignore_evaluation_can_fail() -> None:
    """The evaluator is not vacuous: an allowlist without the deny-all rule lets secrets in, a missing
    allow rule keeps sources out, and a later rule overrides an earlier one."""
    rules = rules_of(DOCKERIGNORE.read_text(encoding="utf-8"))
    without_deny_all = [r for r in rules if r != "*"]
    assert not ignored(without_deny_all, ".git/config")
    assert ignored([r for r in rules if r != "!src/"], "src/nats_mcp/config/settings.py")
    assert not ignored([*rules, "!**/*.pem"], "src/nats_mcp/x.pem")


# ---- deploy/healthcheck.py --------------------------------------------------------------------------------------


class _Metadata(http.server.BaseHTTPRequestHandler):
    """A stand-in for the server's ``/healthz``: ``healthy`` says what it answers (200, or 503 without NATS)."""

    healthy = True

    def do_GET(self) -> None:
        self.send_response((200 if _Metadata.healthy else 503) if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def metadata_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nats_mcp_container_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str | None]:
    """deploy/healthcheck.py's check() with only the given settings in the environment."""
    module = _load_healthcheck()
    for var in list(os.environ):
        if var.startswith("NATS_MCP_") or var in WARP_ENV:
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def run(**env: str) -> str | None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result: str | None = module.check()
        return result

    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_healthcheck_follows_the_http_servers_healthz(
    health: Callable[..., str | None], metadata_server: int
) -> None:
    port = str(metadata_server)
    assert health(NATS_MCP_TRANSPORT="http", NATS_MCP_HTTP_PORT=port) is None
    _Metadata.healthy = False  # the server is up but NATS is not
    try:
        assert "HTTP Error 503" in str(health(NATS_MCP_TRANSPORT="http", NATS_MCP_HTTP_PORT=port))
    finally:
        _Metadata.healthy = True
    assert "refused" in str(health(NATS_MCP_TRANSPORT="http", NATS_MCP_HTTP_PORT=str(_free_port())))


def test_the_healthcheck_of_grpc_needs_the_port_open(health: Callable[..., str | None]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        assert health(NATS_MCP_TRANSPORT="grpc", NATS_MCP_GRPC_PORT=port) is None
    assert f"gRPC port {port}" in str(health(NATS_MCP_TRANSPORT="grpc", NATS_MCP_GRPC_PORT=port))


def test_the_healthcheck_reports_bad_settings(health: Callable[..., str | None]) -> None:
    assert "settings" in str(health(NATS_MCP_TRANSPORT="carrier-pigeon"))


def test_the_healthcheck_script_exits_1_when_unhealthy(tmp_path: Path) -> None:
    """The exit status Docker reads, from a real run of the script as the image runs it."""
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "NATS_MCP_TRANSPORT": "http",
        "NATS_MCP_HTTP_PORT": str(_free_port()),
    }
    done = subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("unhealthy: http://127.0.0.1:")
