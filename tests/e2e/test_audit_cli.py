"""`nats-mcp audit` as an operator runs it against a real nats-server: verify (exit 0 on real chains, 1 and the
first bad record on a chain with one record altered, removed or reordered), verify --file, tail and tail --follow."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import nats
import pytest

from nats_mcp.bus.layout import AUDIT_STREAM
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.store import FileSink, StreamSink, audit_stream_config
from nats_mcp.security.principal import Principal
from tests.support.env import connected, isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, wait_for_sync

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkYW4ifQ.ZGFuLXNlY3JldC1zaWduYXR1cmUtdmFsdWU"
DAN = Principal(subject="dan", issuer="https://idp.example", method="jwt", peer="203.0.113.9")


def audit(tmp_path: Path, url: str | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = isolated_env(tmp_path, COLUMNS="250", **({"NATS_URL": url} if url else {}))
    return subprocess.run(
        [nats_mcp_exe(), "audit", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )


async def write_chains(
    tmp_path: Path, url: str, *, writers: int = 2, calls: int = 5, file: Path | None = None
) -> list[str]:
    """Real chains, as server processes write them: one AuditLog per process, each closed cleanly."""
    chains = []
    async with connected(tmp_path / "writer", url) as conn:
        logs = [
            AuditLog([StreamSink(conn), *([FileSink(file)] if file else [])], transport="http") for _ in range(writers)
        ]
        for i in range(calls):
            for n, log in enumerate(logs):
                log.record(
                    AuditEvent(
                        "tool_call",
                        principal=DAN,
                        tool="warp_channels_send",
                        namespace="team",
                        outcome="ok",
                        latency_ms=2.0 + i,
                        arguments={"i": i, "writer": n, "token": TOKEN},
                    ),
                )
        logs[0].record(
            AuditEvent(
                "auth_failure", transport="http", peer="198.51.100.7", outcome="unauthenticated", reason="bad_signature"
            )
        )
        for log in logs:
            chains.append(log.chain)
            await log.close()
    return chains


async def rewrite(url: str, tamper: str) -> str:
    """Alter, remove or reorder one record of the first chain in the stream (deletes are refused: recreate the
    stream); returns that chain's id."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(AUDIT_STREAM)
        msgs = [await js.get_msg(AUDIT_STREAM, s) for s in range(info.state.first_seq, info.state.last_seq + 1)]
        items = [(m.subject, m.data) for m in msgs]
        subject = items[0][0]
        mine = [i for i, (s, _) in enumerate(items) if s == subject]
        at = mine[2]  # seq 3 of the first chain
        if tamper == "alter":
            data = json.loads(items[at][1])
            items[at] = (subject, json.dumps({**data, "outcome": "forbidden"}, separators=(",", ":")).encode())
        elif tamper == "remove":
            del items[at]
        else:
            items[at], items[mine[3]] = items[mine[3]], items[at]
        await js.delete_stream(AUDIT_STREAM)
        await js.add_stream(audit_stream_config())
        for s, data in items:
            await js.publish(s, data, stream=AUDIT_STREAM)
    finally:
        await nc.close()
    return subject.rsplit(".", 1)[1]


@pytest.mark.slow
async def test_verify_passes_on_real_chains(tmp_path: Path, nats_server: NatsServer) -> None:
    chains = await write_chains(tmp_path, nats_server.url)
    proc = audit(tmp_path, nats_server.url, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "13 records in 2 chains verified" in proc.stdout
    assert "writer _INBOX: 2 chains" in proc.stdout  # who wrote them: the NATS user (by its reply prefix)
    proc = audit(tmp_path, nats_server.url, "verify", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and report["records"] == 13
    assert {c["writer"] for c in report["chains"]} == {"_INBOX"}
    assert sorted(c["chain"] for c in report["chains"]) == sorted(chains) and report["open_chains"] == []
    anchor = next(f"{c['chain']}:{c['last_seq']}:{c['head']}" for c in report["chains"])
    assert audit(tmp_path, nats_server.url, "verify", "--anchor", anchor).returncode == 0
    table = audit(tmp_path, nats_server.url, "verify", "-v")
    assert anchor in table.stdout.splitlines()  # printed whole, on its own line, ready to keep
    assert table.returncode == 0 and chains[0] in table.stdout and "ended" in table.stdout


@pytest.mark.parametrize("tamper", ["alter", "remove", "reorder"])
async def test_verify_fails_and_prints_the_first_bad_record(
    tmp_path: Path, nats_server: NatsServer, tamper: str
) -> None:
    chains = await write_chains(tmp_path, nats_server.url)
    chain = await rewrite(nats_server.url, tamper)
    assert chain in chains
    proc = audit(tmp_path, nats_server.url, "verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    seq = 3 if tamper == "alter" else 4
    assert f"audit chain broken: chain {chain} seq {seq} (stream sequence " in proc.stdout
    assert f'"seq":{seq}' in proc.stdout  # the record itself is printed
    report = json.loads(audit(tmp_path, nats_server.url, "verify", "--json").stdout)
    assert report["ok"] is False and report["problem"]["chain"] == chain and report["problem"]["seq"] == seq


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_verify_a_file_and_a_cut_tail_with_an_anchor(tmp_path: Path, nats_server: NatsServer) -> None:
    path = tmp_path / "audit.jsonl"
    await write_chains(tmp_path, nats_server.url, writers=1, file=path)
    proc = audit(tmp_path, None, "verify", "--file", str(path))
    assert proc.returncode == 0 and "7 records in 1 chain verified" in proc.stdout, proc.stdout + proc.stderr
    assert audit(tmp_path, None, "verify", "--file", str(path), "--closed").returncode == 0  # it ended cleanly
    report = json.loads(audit(tmp_path, None, "verify", "--file", str(path), "--json").stdout)
    head = report["chains"][0]
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:-1]) + b"\n")  # cut the last record
    cut = audit(tmp_path, None, "verify", "--file", str(path))
    assert cut.returncode == 0 and "have no end record" in cut.stdout  # a bare chain cannot tell; it says so
    crashed = audit(tmp_path, None, "verify", "--file", str(path), "--closed")  # what a crashed writer leaves
    assert crashed.returncode == 1 and f"chain {head['chain']}: no end record after seq 6" in crashed.stderr
    anchored = audit(
        tmp_path, None, "verify", "--file", str(path), "--anchor", f"{head['chain']}:{head['last_seq']}:{head['head']}"
    )
    assert anchored.returncode == 1 and "before the anchored seq 7" in anchored.stdout
    path.write_bytes(b"\n".join([lines[0], lines[2], *lines[3:]]) + b"\n")
    removed = audit(tmp_path, None, "verify", "--file", str(path))
    assert removed.returncode == 1 and "(line 2)" in removed.stdout and "1 record missing" in removed.stdout


@pytest.mark.slow
async def test_verify_without_a_stream_or_nats_fails(tmp_path: Path, nats_server: NatsServer) -> None:
    proc = audit(tmp_path, nats_server.url, "verify")
    assert proc.returncode == 1 and "no audit stream" in proc.stderr
    url = nats_server.url
    nats_server.stop()
    proc = audit(tmp_path, url, "verify", "--timeout", "1")
    assert proc.returncode == 1 and "cannot connect to NATS" in proc.stderr
    assert audit(tmp_path, None, "verify").returncode == 1  # no URL, embedded not running: not started to read


@pytest.mark.slow
async def test_tail_prints_the_newest_records_and_never_a_secret(tmp_path: Path, nats_server: NatsServer) -> None:
    chains = await write_chains(tmp_path, nats_server.url)
    proc = audit(tmp_path, nats_server.url, "tail", "-n", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 4 and [r["kind"] for r in records][-2:] == ["chain_end", "chain_end"]
    text = audit(tmp_path, nats_server.url, "tail", "--chain", chains[0])
    lines = text.stdout.splitlines()
    assert text.returncode == 0 and len(lines) == 7
    assert lines[0].split()[1] == "tool_call" and "dan@https://idp.example (jwt)" in lines[0]
    assert "warp_channels_send" in lines[0] and "ns team" in lines[0] and f"[{chains[0][:8]}#1]" in lines[0]
    assert all(line.endswith(" by _INBOX") for line in lines)  # the writer: the NATS user, by its subject
    assert "reason: bad_signature" in lines[5] and "from 198.51.100.7" in lines[5]
    everything = audit(tmp_path, nats_server.url, "tail", "-n", "100", "--json").stdout
    assert TOKEN not in everything and TOKEN not in text.stdout
    assert audit(tmp_path, nats_server.url, "tail", "--chain", "not-a-chain").returncode == 2


async def test_tail_follow_shows_records_as_they_are_written(tmp_path: Path, nats_server: NatsServer) -> None:
    await write_chains(tmp_path, nats_server.url, writers=1, calls=2)
    env = isolated_env(tmp_path, NATS_URL=nats_server.url)
    proc = subprocess.Popen(
        [nats_mcp_exe(), "audit", "tail", "--follow", "--json", "-n", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        await asyncio.to_thread(wait_for_sync, lambda: len(lines) >= 1, 30, message="the newest record is shown")
        assert lines[0]["kind"] == "chain_end"
        async with connected(tmp_path / "live", nats_server.url) as conn:
            log = AuditLog([StreamSink(conn)])
            for i in range(3):
                log.record(
                    AuditEvent(
                        "rate_limited",
                        principal=DAN,
                        tool="warp_channels_read",
                        outcome="rate_limited",
                        reason="too many calls",
                        arguments={"i": i},
                    ),
                )
            await log.close()
            await asyncio.to_thread(wait_for_sync, lambda: len(lines) >= 5, 30, message="live records followed")
        assert [r["kind"] for r in lines[1:5]] == ["rate_limited"] * 3 + ["chain_end"]
        assert [r["seq"] for r in lines[1:5]] == [1, 2, 3, 4] and lines[1]["chain"] == log.chain
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        thread.join(timeout=10)
