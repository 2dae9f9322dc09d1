"""With no NATS URL, `nats-mcp serve` starts the shared embedded server, connects with its token, and doctor agrees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters, stdio_client

from nats_mcp.bus.embedded import EmbeddedNats
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import wait_for_sync

pytestmark = pytest.mark.slow


async def test_serve_starts_and_shares_the_embedded_server(tmp_path: Path) -> None:
    exe = nats_mcp_exe()
    env = isolated_env(tmp_path)
    embedded = EmbeddedNats(Path(env["XDG_DATA_HOME"]) / "nats-mcp")
    log_path = tmp_path / "serve.log"
    try:
        with log_path.open("w") as errlog:
            params = StdioServerParameters(command=exe, args=["serve"], env=env, cwd=str(tmp_path))
            async with Client(stdio_client(params, errlog=errlog)) as first:
                await first.list_tools()
                wait_for_sync(lambda: "NATS connected" in log_path.read_text(), 20, message=log_path.read_text)
                assert "auth: embedded token" in log_path.read_text()
                assert "exited at start" not in log_path.read_text()  # the first start raised no false alarm
                first_pid = embedded.status().pid
                # A second agent on the same laptop reuses the same server.
                async with Client(stdio_client(params, errlog=errlog)) as second:
                    await second.list_tools()
                    wait_for_sync(lambda: log_path.read_text().count("NATS connected") >= 2, 20)
                assert embedded.status().pid == first_pid
        token = (embedded.data_dir / "token").read_text().strip()
        assert token not in log_path.read_text()

        proc = subprocess.run([exe, "doctor", "--json"], env=env, capture_output=True, text=True, timeout=60)
        report = json.loads(proc.stdout)
        assert proc.returncode == 0, report
        assert token not in proc.stdout
    finally:
        embedded.stop(timeout=15)
    assert not embedded.status().running
