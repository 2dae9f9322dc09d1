"""Boundary between pytest and the nats-server harness: function-scoped server fixtures with cleanup."""

from __future__ import annotations

import os

# Before anything imports grpc: the harness forks children with a preexec_fn (PR_SET_PDEATHSIG) while gRPC threads of
# earlier tests may still run in this process, and gRPC's fork support then acted in the child and aborted it
# ("epoll_wait error: Bad file descriptor", exit -6; seen once in a clean CI run with xdist workers). The children
# exec at once and need nothing of gRPC's state, so fork support is off in the test process.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from nats_mcp.bus.connection import NatsConnection
from tests.support.env import connected
from tests.support.jwtauth import JwtNatsServer, start_nats_jwt
from tests.support.natsserver import (
    NatsCluster,
    NatsServer,
    NKeyNatsServer,
    TlsNatsServer,
    TokenNatsServer,
    UserPassNatsServer,
    start_nats_cluster,
    start_nats_mtls,
    start_nats_nkey,
    start_nats_server,
    start_nats_tls,
    start_nats_token,
    start_nats_userpass,
)

_T = TypeVar("_T", bound=NatsServer | NatsCluster)


def _serve(factory: Callable[[Path], _T], base_dir: Path) -> Iterator[_T]:
    server = factory(base_dir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """Plain nats-server with JetStream."""
    yield from _serve(start_nats_server, tmp_path / "nats")


@pytest.fixture
def nats_userpass(tmp_path: Path) -> Iterator[UserPassNatsServer]:
    yield from _serve(start_nats_userpass, tmp_path / "nats-userpass")


@pytest.fixture
def nats_token(tmp_path: Path) -> Iterator[TokenNatsServer]:
    yield from _serve(start_nats_token, tmp_path / "nats-token")


@pytest.fixture
def nats_nkey(tmp_path: Path) -> Iterator[NKeyNatsServer]:
    yield from _serve(start_nats_nkey, tmp_path / "nats-nkey")


@pytest.fixture
def nats_tls(tmp_path: Path) -> Iterator[TlsNatsServer]:
    yield from _serve(start_nats_tls, tmp_path / "nats-tls")


@pytest.fixture
def nats_mtls(tmp_path: Path) -> Iterator[TlsNatsServer]:
    yield from _serve(start_nats_mtls, tmp_path / "nats-mtls")


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """3-node JetStream cluster, meta leader elected. Tests using it should carry ``@pytest.mark.cluster``."""
    yield from _serve(start_nats_cluster, tmp_path / "nats-cluster")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """On failure, attach the log tail of every nats-server the test used to the report."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            nodes = value.nodes if isinstance(value, NatsCluster) else [value]
            for node in nodes:
                if isinstance(node, NatsServer):
                    report.sections.append((f"nats-server log: {name}/{node.name}", node.log_tail(80)))
    return report


@pytest.fixture
def nats_jwt(tmp_path: Path) -> Iterator[JwtNatsServer]:
    """Operator-mode (JWT + creds file) server with JetStream."""
    yield from _serve(start_nats_jwt, tmp_path / "nats-jwt")


@pytest.fixture
async def nats_conn(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[NatsConnection]:
    """A connected, supervised NatsConnection to a fresh plain server (settings isolated from the host)."""
    async with connected(tmp_path, nats_server.url) as conn:
        yield conn
