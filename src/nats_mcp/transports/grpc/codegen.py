"""The code-generation boundary of the gRPC contract: ``proto/nats_mcp/v1/transport.proto`` -> ``gen/``.

The generated modules are committed (a fresh machine needs no protoc); ``tests/unit/transports/test_grpc_codegen.py``
regenerates them into a temporary folder and fails on any drift. Regenerate after editing the proto with
``python -m nats_mcp.transports.grpc.codegen`` (needs ``grpcio-tools``, in the ``test`` extra).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PROTO = "nats_mcp/v1/transport.proto"
PROTO_ROOT = Path(__file__).resolve().parents[4] / "proto"
GEN_DIR = Path(__file__).resolve().parent / "gen"
GENERATED = ("transport_pb2.py", "transport_pb2.pyi", "transport_pb2_grpc.py")
_ABSOLUTE_IMPORT = re.compile(r"^from nats_mcp\.v1 import transport_pb2 as", re.MULTILINE)


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc (grpc_tools) on the contract and write the modules to ``out_dir``, imports made relative."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # build-time only (test extra)

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(proto_root / PROTO),
        ]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code} on {proto_root / PROTO}")
        written = []
        for name in GENERATED:
            text = (Path(tmp) / "nats_mcp" / "v1" / name).read_text(encoding="utf-8")
            # The generated stub imports the messages by their proto path; inside our package it must be relative.
            text = _ABSOLUTE_IMPORT.sub("from . import transport_pb2 as", text)
            target = out_dir / name
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def main() -> int:
    for path in generate(GEN_DIR):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["GENERATED", "GEN_DIR", "PROTO", "PROTO_ROOT", "generate"]
