"""Unit tests of the settings layers: precedence, Warp compatibility, secrets from files, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nats_mcp.config.loader import ConfigError, effective_settings, load_settings


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment isolated from the developer's home and config."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **extra}


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_defaults(tmp_path: Path) -> None:
    loaded = load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(tmp_path)))
    s = loaded.settings
    assert [c.name for c in s.channels] == ["roadmap", "parallel-work", "errors"]
    assert s.nats.url is None and s.transport == "stdio" and s.work.ack_timeout_ms == 300_000
    assert loaded.source_of("work.ack_timeout_ms") == "default"


def test_precedence_of_every_layer(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    e = env(tmp_path, MCP_PROJECT_PATH=str(project))
    home = Path(e["HOME"])
    write(home / ".nats-mcp" / "config.json", {"natsUrl": "nats://user-warp:1", "namespace": "from-user"})
    write(home / ".config" / "nats-mcp" / "config.yaml", "nats:\n  url: nats://user-yaml:1\n")
    write(project / ".mcp-config.json", {"natsUrl": "nats://project:1", "logging": {"level": "DEBUG"}})
    yaml_file = write(tmp_path / "c.yaml", "nats:\n  url: nats://yaml:1\nlogging:\n  format: text\n")

    def url(**kw: str) -> tuple[str | None, str]:
        loaded = load_settings(config_file=kw.pop("config", None) and yaml_file, environ={**e, **kw})
        return loaded.settings.nats.url, loaded.source_of("nats.url")

    assert url() == ("nats://project:1", f"project file {project / '.mcp-config.json'}")
    assert url(config="1")[0] == "nats://yaml:1"
    assert url(config="1", NATS_URL="nats://warp-env:1") == ("nats://warp-env:1", "env NATS_URL")
    assert url(config="1", NATS_URL="nats://warp-env:1", NATS_MCP_NATS_URL="nats://ours:1")[0] == "nats://ours:1"
    loaded = load_settings(
        {"nats.url": "nats://cli:1"},
        environ={**e, "NATS_MCP_NATS_URL": "nats://ours:1"},
        flags={"nats.url": "--nats-url"},
    )
    assert (loaded.settings.nats.url, loaded.source_of("nats.url")) == ("nats://cli:1", "flag --nats-url")
    # Values from lower layers that nobody overrides survive the merge.
    loaded = load_settings(config_file=yaml_file, environ=e)
    assert loaded.settings.namespace == "from-user"
    assert loaded.settings.logging.level == "DEBUG" and loaded.settings.logging.format == "text"
    # The user YAML beats Warp's user file.
    (project / ".mcp-config.json").unlink()
    assert load_settings(environ=e).settings.nats.url == "nats://user-yaml:1"


def test_project_file_searched_up_to_four_parents(tmp_path: Path) -> None:
    root = tmp_path / "a"
    write(root / ".mcp-config.json", {"namespace": "found"})
    deep4 = root / "b" / "c" / "d" / "e"
    deep5 = deep4 / "f"
    deep5.mkdir(parents=True)
    assert load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(deep4))).settings.namespace == "found"
    assert load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(deep5))).settings.namespace is None


def test_warp_project_file_maps_every_key(tmp_path: Path) -> None:
    write(
        tmp_path / ".mcp-config.json",
        {
            "namespace": "team-a",
            "channels": [{"name": "ops", "description": "Ops", "maxMessages": 5, "maxBytes": 2048, "maxAge": "1h"}],
            "natsUrl": "nats://h:4222",
            "logging": {"level": "WARN", "format": "text"},
            "workQueue": {"ackTimeoutMs": 2000, "maxDeliveryAttempts": 7, "deadLetterTTLMs": 5000},
        },
    )
    s = load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(tmp_path))).settings
    assert s.namespace == "team-a" and s.nats.url == "nats://h:4222"
    assert [(c.name, c.max_messages, c.max_bytes, c.max_age_seconds) for c in s.channels] == [("ops", 5, 2048, 3600)]
    assert (s.logging.level, s.logging.format) == ("WARNING", "text")
    assert (s.work.ack_timeout_ms, s.work.max_attempts, s.work.dlq_ttl_ms) == (2000, 7, 5000)


def test_warp_environment_variables_take_effect(tmp_path: Path) -> None:
    guid = "0123456789abcdef0123456789abcdef"
    s = load_settings(
        environ=env(
            tmp_path,
            MCP_PROJECT_PATH=str(tmp_path),
            LOOMINAL_PROJECT_ID="0123456789abcdef",
            LOOMINAL_AGENT_ID=guid,
            LOOMINAL_SUBAGENT_TYPE="reviewer",
            LOG_LEVEL="debug",
            LOG_FORMAT="text",
            WORKQUEUE_ACK_TIMEOUT="1500",
            WORKQUEUE_MAX_ATTEMPTS="9",
            WORKQUEUE_DLQ_TTL="60000",
            NATS_USER="bob",
            NATS_PASS="pw",
        )
    ).settings
    assert s.project.path == tmp_path.resolve() and s.resolved_project_id == "0123456789abcdef"
    assert (s.identity.agent_id, s.identity.subagent_type) == (guid, "reviewer")
    assert (s.logging.level, s.logging.format) == ("DEBUG", "text")
    assert (s.work.ack_timeout_ms, s.work.max_attempts, s.work.dlq_ttl_ms) == (1500, 9, 60000)
    assert s.nats.user == "bob" and s.nats.password is not None and s.nats.password.get_secret_value() == "pw"


def test_namespace_derived_like_warp(tmp_path: Path) -> None:
    import hashlib

    s = load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(tmp_path))).settings
    assert s.resolved_namespace == hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()[:16]


def test_secrets_from_file_variables(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    s = load_settings(environ=env(tmp_path, NATS_MCP_NATS_PASSWORD_FILE=str(secret))).settings
    assert s.nats.password is not None and s.nats.password.get_secret_value() == "from-file"
    s = load_settings(environ=env(tmp_path, NATS_PASS_FILE=str(secret))).settings
    assert s.nats.password is not None and s.nats.password.get_secret_value() == "from-file"
    with pytest.raises(ConfigError, match="NATS_MCP_NATS_TOKEN_FILE"):
        load_settings(environ=env(tmp_path, NATS_MCP_NATS_TOKEN_FILE=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="both"):
        load_settings(environ=env(tmp_path, NATS_MCP_NATS_TOKEN="a", NATS_MCP_NATS_TOKEN_FILE=str(secret)))


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"WORKQUEUE_ACK_TIMEOUT": "soon"}, "work.ack_timeout_ms = soon (from env WORKQUEUE_ACK_TIMEOUT)"),
        ({"WORKQUEUE_ACK_TIMEOUT": "10"}, "greater than or equal to 1000"),
        ({"LOG_LEVEL": "LOUD"}, "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ({"LOOMINAL_AGENT_ID": "not-a-guid"}, "identity.agent_id = not-a-guid (from env LOOMINAL_AGENT_ID)"),
        ({"LOOMINAL_PROJECT_ID": "xyz"}, "16 lowercase hexadecimal"),
        ({"NATS_URL": "http://h:1"}, "nats://, tls://, ws://, wss://"),
        ({"NATS_MCP_NAMESPACE": "Bad.NS"}, "namespace = Bad.NS (from env NATS_MCP_NAMESPACE)"),
        ({"NATS_MCP_NATS_TLS_CERT_FILE": "/x"}, "cert_file and key_file go together"),
        ({"NATS_MCP_NATS_TOKEN": "t", "NATS_MCP_NATS_CREDS_FILE": "/c"}, "choose one authentication method"),
        ({"NATS_MCP_CHANNELS": '[{"name": "a", "description": "x", "maxAge": "1h"}]'}, "unknown setting"),
    ],
)
def test_invalid_values_name_key_source_and_rule(tmp_path: Path, variables: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env(tmp_path, **variables))
    assert expected in str(info.value)


def test_unknown_key_in_project_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / ".mcp-config.json", {"namespace": "a", "natsURL": "nats://typo:1"})
    with pytest.raises(ConfigError, match=r"project file .*unknown key\(s\) natsURL"):
        load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(tmp_path)))


def test_malformed_files_are_reported(tmp_path: Path) -> None:
    write(tmp_path / ".mcp-config.json", "{not json")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_settings(environ=env(tmp_path, MCP_PROJECT_PATH=str(tmp_path)))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.yaml", environ=env(tmp_path))


def test_secrets_never_from_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never taken from the command line"):
        load_settings({"nats.password": "pw"}, environ=env(tmp_path))
    with pytest.raises(ConfigError, match="carries credentials"):
        load_settings({"nats.url": "nats://u:pw@h:1"}, environ=env(tmp_path))


def test_effective_settings_mask_secrets(tmp_path: Path) -> None:
    loaded = load_settings(
        environ=env(tmp_path, NATS_URL="nats://alice:wonderland@h:1", NATS_MCP_NATS_TOKEN="tok-very-secret")
    )
    text = json.dumps(effective_settings(loaded))
    assert "wonderland" not in text and "tok-very-secret" not in text
    rows = {r["key"]: r for r in effective_settings(loaded)}
    assert rows["nats.url"]["source"] == "env NATS_URL" and rows["nats.token"]["value"] == "***"


def run_cli(args: list[str], environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nats_mcp.cli.main", *args],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_invalid_value_exits_2_with_one_line(tmp_path: Path) -> None:
    import os

    e = {**env(tmp_path), "PATH": os.environ["PATH"], "WORKQUEUE_MAX_ATTEMPTS": "0"}
    proc = run_cli(["config", "show"], e, tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert (
        "work.max_attempts" in lines[0]
        and "WORKQUEUE_MAX_ATTEMPTS" in lines[0]
        and ">= 1" in lines[0].replace("greater than or equal to 1", ">= 1")
    )


def test_cli_config_show_json_has_sources_and_no_secret(tmp_path: Path) -> None:
    import os

    e = {**env(tmp_path), "PATH": os.environ["PATH"], "NATS_PASS": "pa55word", "NATS_USER": "u"}
    proc = run_cli(["--namespace", "cli-ns", "config", "show", "--json"], e, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pa55word" not in proc.stdout + proc.stderr
    rows = {r["key"]: r for r in json.loads(proc.stdout)["settings"]}
    assert rows["namespace"] == {
        "key": "namespace",
        "value": "cli-ns",
        "source": "flag --namespace",
        "env": "NATS_MCP_NAMESPACE",
    }
    assert rows["nats.password"]["value"] == "***" and rows["nats.password"]["source"] == "env NATS_PASS"


def test_cli_version(tmp_path: Path) -> None:
    import os

    from nats_mcp import __version__

    proc = run_cli(["--version"], {**env(tmp_path), "PATH": os.environ["PATH"]}, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"nats-mcp {__version__}"


def test_setting_one_key_of_a_section_keeps_the_others_at_their_defaults(tmp_path: Path) -> None:
    """Every scalar leaf set alone to its own default value (an environment variable, as people set one) leaves the
    whole settings equal to the defaults. Was: a pool given one key failed as "total ... Field required", and
    ``rate_per_address`` given its burst fell back to a ``RateSettings``' 20/s instead of its 50/s."""
    from nats_mcp.config.leaves import LEAVES

    base = env(tmp_path, MCP_PROJECT_PATH=str(tmp_path))
    defaults = load_settings(environ=base).settings
    tried = 0
    for leaf in LEAVES.values():
        value: object = defaults
        for part in leaf.path:
            value = getattr(value, part)
        if isinstance(value, bool) or not isinstance(value, int | float) or leaf.secret:
            continue  # numbers cover the sections at stake; strings and lists have parse rules of their own
        got = load_settings(environ={**base, leaf.env: str(value)}).settings
        assert got == defaults, leaf.key
        tried += 1
    assert tried > 50
    pools = load_settings(environ={**base, "NATS_MCP_SECURITY_POOLS_CLAIM_WAITS_PER_PRINCIPAL": "64"}).settings
    assert (pools.security.pools.claim_waits.total, pools.security.pools.claim_waits.per_principal) == (1000, 64)
    yaml_file = write(tmp_path / "c.yaml", "security:\n  rate_per_address:\n    burst: 200\n")
    rate = load_settings(config_file=yaml_file, environ=base).settings.security.rate_per_address
    assert (rate.rate_per_s, rate.burst) == (50.0, 200)
