"""Boundary between the gRPC contract (proto/) and the committed generated code: no drift, relative imports."""

from __future__ import annotations

from pathlib import Path

import pytest

from nats_mcp.transports.grpc import codegen


def test_committed_code_matches_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    written = codegen.generate(tmp_path)
    assert [p.name for p in written] == list(codegen.GENERATED)
    for path in written:
        committed = codegen.GEN_DIR / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} differs from what {codegen.PROTO} generates: run python -m nats_mcp.transports.grpc.codegen"
        )


def test_generated_code_imports_inside_the_package() -> None:
    from nats_mcp.transports.grpc.gen import transport_pb2, transport_pb2_grpc

    assert "import nats_mcp.v1" not in (codegen.GEN_DIR / "transport_pb2_grpc.py").read_text()
    frame = transport_pb2.Frame(json=b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert transport_pb2.Frame.FromString(frame.SerializeToString()) == frame
    names = {m.name for m in transport_pb2.DESCRIPTOR.services_by_name["McpTransport"].methods}
    assert names == {"Session", "Call", "Listen"}
    assert hasattr(transport_pb2_grpc, "McpTransportStub")
