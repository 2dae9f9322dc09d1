"""Boundary of the distributed package: the sdist and wheel `make dist` builds, installed without the repository.

The sdist is built from the tree and the wheel from the sdist (uv build), with the locked setuptools (no build
isolation, so nothing outside uv.lock is fetched). The wheel is installed into a fresh venv with the lock's pins as
constraints, away from the checkout, and must answer the stdio handshake and `nats-mcp doctor` on its own.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters, stdio_client

from tests.support.env import isolated_env
from tests.support.natsserver import NatsServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".cache" / "uv" / "bin" / "uv"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
MUST_SHIP = [
    "nats_mcp/py.typed",
    "nats_mcp/transports/grpc/gen/transport_pb2.py",
    "nats_mcp/transports/grpc/gen/transport_pb2.pyi",
    "nats_mcp/transports/grpc/gen/transport_pb2_grpc.py",
    "nats_mcp/dashboard/static/index.html",
    "nats_mcp/dashboard/static/app.js",
    "nats_mcp/supply/sbom.cdx.json",
]


def uv(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        [str(UV), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**isolated_env(cwd), "UV_PYTHON_DOWNLOADS": "never", "UV_SYSTEM_CERTS": "1", **_uv_cache()},
    )
    assert proc.returncode == 0, f"uv {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _uv_cache() -> dict[str, str]:
    """The developer's (or CI's) uv cache, so installing the locked wheels again costs no download."""
    found = subprocess.run([str(UV), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    return {"UV_CACHE_DIR": found}


def build(out: Path) -> tuple[Path, Path]:
    uv("build", "--no-build-isolation", "--python", str(VENV_PYTHON), "--out-dir", str(out))
    (sdist,) = out.glob("nats_mcp_server-*.tar.gz")
    (wheel,) = out.glob("nats_mcp_server-*.whl")
    return sdist, wheel


def install(wheel: Path, where: Path) -> Path:
    """A fresh venv outside the checkout with the wheel and the lock's versions of what it needs."""
    constraints = where / "constraints.txt"
    constraints.write_text(uv("export", "--frozen", "--no-emit-project", "--no-hashes", "--no-header"))
    venv = where / "venv"
    uv("venv", "--python", "python3", str(venv), cwd=where)
    uv(
        "pip",
        "install",
        "--python",
        str(venv / "bin" / "python"),
        "--constraints",
        str(constraints),
        str(wheel),
        cwd=where,
    )
    return venv


async def test_the_wheel_runs_without_the_repository(tmp_path: Path, nats_server: NatsServer) -> None:
    sdist, wheel = build(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert [name for name in MUST_SHIP if name not in names] == []
    assert sdist.stat().st_size > 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv = install(wheel, elsewhere)
    exe = venv / "bin" / "nats-mcp"
    env = isolated_env(elsewhere, NATS_URL=nats_server.url)
    env["PATH"] = str(venv / "bin") + ":/usr/bin:/bin"  # not the checkout's .venv
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import nats_mcp; print(nats_mcp.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=elsewhere,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not the source tree

    # The SBOM in the wheel is the repository's, and the lock's versions installed here match it.
    with zipfile.ZipFile(wheel) as archive:
        assert (
            archive.read("nats_mcp/supply/sbom.cdx.json") == (ROOT / "src/nats_mcp/supply/sbom.cdx.json").read_bytes()
        )
    version = subprocess.run(
        [str(exe), "version", "--json", "--check"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60
    )
    assert version.returncode == 0, version.stdout + version.stderr
    assert json.loads(version.stdout)["sbom"]["matches"] is True

    doctor = subprocess.run(
        [str(exe), "doctor", "--json"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["ok"] is True and {c["status"] for c in report["checks"]} == {"pass"}, doctor.stdout

    params = StdioServerParameters(command=str(exe), args=["serve"], env=env, cwd=str(elsewhere))
    with (tmp_path / "serve.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "warp_handle_set" in tools
            result = await client.call_tool("warp_channels_list", {})
            assert not result.is_error, result
