"""The start-up cache's boundary: an entry is used only when its key and every file it depends on match; the
stdio fast path's command line: only a stdio `serve` with options it reads goes past Typer."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.cli.fastpath import Plan, stdio_plan
from nats_mcp.config.leaves import LEAVES, SPECIAL_ENV, WARP_ENV
from nats_mcp.config.loader import load_settings
from nats_mcp.transports import startup_cache
from nats_mcp.transports.startup_cache import ENV_NAMES, ENV_PREFIXES, cache_key, load, local_secret, store

ANSWERS: dict[str, Any] = {
    "handshake_versions": ["2025-11-25"],
    "latest_handshake": "2025-11-25",
    "modern_versions": ["2026-07-28"],
    "initialize": {"2025-11-25": '{"protocolVersion":"2025-11-25"}'},
    "discover": {"2026-07-28": "{}"},
    "tools_list": {"2025-11-25": '{"tools":[]}', "2026-07-28": '{"tools":[]}'},
    "ping": {"2025-11-25": "{}"},
}


def test_an_entry_is_read_back_while_its_files_are_unchanged(tmp_path: Path) -> None:
    policy, absent = tmp_path / "policy.yaml", tmp_path / "project" / ".mcp-config.json"
    policy.write_text("version: 1\n")
    deps = {str(policy): startup_cache.file_hash(str(policy)), str(absent): None}
    store("k1", deps, ANSWERS, tmp_path / "cache")
    entry = load("k1", tmp_path / "cache")
    assert entry is not None and entry.tools_list == ANSWERS["tools_list"] and entry.negotiate("x") == "2025-11-25"
    assert load("k2", tmp_path / "cache") is None  # another key
    policy.write_text("version: 1\nroles: {}\n")
    assert load("k1", tmp_path / "cache") is None  # the policy changed
    policy.write_text("version: 1\n")
    assert load("k1", tmp_path / "cache") is not None
    absent.parent.mkdir()
    absent.write_text("{}")
    assert load("k1", tmp_path / "cache") is None  # a project file appeared


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: "{not json",
        lambda data: json.dumps({**data, "format": 0}),  # written by another version of the layout
        lambda data: json.dumps({**data, "key": "other"}),  # a file renamed onto this key
        lambda data: json.dumps({**data, "answers": {**data["answers"], "ping": None}}),
        lambda data: json.dumps({**data, "answers": {**data["answers"], "initialize": {}}}),
        lambda data: json.dumps({**data, "answers": {**data["answers"], "tools_list": {"2025-11-25": 5}}}),
        lambda data: json.dumps({**data, "deps": None}),
        lambda data: json.dumps(data)[:40],  # cut short
    ],
)
def test_a_damaged_or_foreign_entry_is_a_miss(tmp_path: Path, damage: Any) -> None:
    path = store("k", {}, ANSWERS, tmp_path)
    assert load("k", tmp_path) is not None
    path.write_text(damage(json.loads(path.read_text())))
    assert load("k", tmp_path) is None


def test_only_the_most_recently_used_entries_are_kept(tmp_path: Path) -> None:
    for i in range(startup_cache.MAX_ENTRIES):
        os.utime(store(f"k{i}", {}, ANSWERS, tmp_path), ns=(i * 10**9, i * 10**9))
    assert load("k0", tmp_path) is not None  # used now: the newest
    store("new", {}, ANSWERS, tmp_path)
    kept = {p.stem for p in tmp_path.glob("*.json")}
    assert len(kept) == startup_cache.MAX_ENTRIES and {"k0", "new"} <= kept and "k1" not in kept


def test_store_leaves_no_temporary_file_and_is_private(tmp_path: Path) -> None:
    store("k", {}, ANSWERS, tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["k.json"]
    assert (tmp_path / "c").stat().st_mode & 0o077 == 0


def test_the_key_follows_argv_settings_environment_and_directory(tmp_path: Path, monkeypatch: Any) -> None:
    env = {"HOME": "/h", "NATS_URL": "nats://a", "TERM": "xterm"}
    secret = b"k" * 32

    def key(argv: list[str], environ: dict[str, str]) -> str:
        return cache_key(argv, environ, secret)

    base = key(["serve"], env)
    assert key(["serve"], {**env, "TERM": "vt100"}) == base  # settings do not read it
    assert key(["--namespace", "x", "serve"], env) != base
    assert key(["serve"], {**env, "NATS_URL": "nats://b"}) != base
    assert key(["serve"], {**env, "NATS_MCP_TOOL_PREFIX": "x_"}) != base
    assert key(["serve"], {**env, "HOME": "/other"}) != base
    assert cache_key(["serve"], env, b"j" * 32) != base  # keyed: without the cache's secret no guess can be tested
    monkeypatch.chdir(tmp_path)
    assert key(["serve"], env) != base


def test_the_cache_secret_is_private_and_a_cache_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    secret = local_secret(folder)
    assert len(secret) == 32 and local_secret(folder) == secret  # made once, then read
    assert stat.S_IMODE((folder / "secret").stat().st_mode) == 0o600
    env = {"XDG_CACHE_HOME": str(tmp_path / "x"), "NATS_URL": "nats://a"}
    assert cache_key(["serve"], env) == cache_key(["serve"], env)
    assert (tmp_path / "x" / "nats-mcp" / "startup" / "secret").exists()
    store("k", {}, ANSWERS, folder)
    assert load("k", folder) is not None
    (folder / "k.json").chmod(0o620)  # group-writable: another user could have put answers there
    assert load("k", folder) is None
    (folder / "k.json").chmod(0o600)
    folder.chmod(0o777)
    assert load("k", folder) is None
    with pytest.raises(PermissionError):
        local_secret(folder)


def test_every_variable_settings_read_is_in_the_key() -> None:
    names = {leaf.env for leaf in LEAVES.values()} | {leaf.env + "_FILE" for leaf in LEAVES.values()}
    names |= set(WARP_ENV) | SPECIAL_ENV
    names |= {"NATS_MCP_SECURITY_POLICY_FILE", "XDG_CONFIG_HOME", "HOME"}
    assert all(name.startswith(ENV_PREFIXES) or name in ENV_NAMES for name in names), names


def test_settings_name_every_file_they_depend_on(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("namespace: x\n")
    env = {"HOME": str(tmp_path / "home"), "MCP_PROJECT_PATH": str(tmp_path / "p" / "q")}
    consulted = load_settings(config_file=config, environ=env).consulted
    assert str(config) in consulted
    assert str(tmp_path / "home" / ".config" / "nats-mcp" / "config.yaml") in consulted
    assert str(tmp_path / "home" / ".nats-mcp" / "config.json") in consulted
    assert str(tmp_path / "p" / "q" / ".mcp-config.json") in consulted
    assert str(tmp_path / "p" / ".mcp-config.json") in consulted


@pytest.mark.parametrize(
    ("argv", "plan"),
    [
        (["serve"], Plan()),
        (["serve", "--transport", "stdio"], Plan(transport="stdio")),
        (["serve", "--transport=stdio", "--metrics-port", "0"], Plan(transport="stdio", metrics_port=0)),
        (
            ["--config", "c.yaml", "--set", "a=1", "--set=b=2", "--namespace", "n", "serve"],
            Plan(config=Path("c.yaml"), sets=["a=1", "b=2"], flags={"namespace": "n"}),
        ),
        (
            ["--nats-url=nats://x", "--log-level", "DEBUG", "serve"],
            Plan(flags={"nats_url": "nats://x", "log_level": "DEBUG"}),
        ),
    ],
)
def test_stdio_serve_lines_are_read_by_hand(argv: list[str], plan: Plan) -> None:
    assert stdio_plan(argv, {}) == plan


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["serve", "--help"],
        ["serve", "-h"],
        ["serve", "--transport", "http"],
        ["serve", "--transport", "STDIO"],
        ["serve", "--metrics-port", "x"],
        ["serve", "--metrics-port", "-1"],
        ["serve", "--port", "1"],
        ["serve", "--insecure-dev"],
        ["serve", "extra"],
        ["--version", "serve"],
        ["--bogus", "1", "serve"],
        ["--namespace", "serve"],  # "serve" is the option's value: Typer says what is missing
        ["--namespace=", "serve"],
        ["config", "show"],
    ],
)
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert stdio_plan(argv, {}) is None


def test_the_config_variable_is_read_as_typer_reads_it() -> None:
    assert stdio_plan(["serve"], {"NATS_MCP_CONFIG": "x.yaml"}) == Plan(config=Path("x.yaml"))
    assert stdio_plan(["--config", "y.yaml", "serve"], {"NATS_MCP_CONFIG": "x.yaml"}) == Plan(config=Path("y.yaml"))
