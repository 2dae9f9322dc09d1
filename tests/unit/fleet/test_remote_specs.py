"""Boundary of the ``ssh`` and ``webhook`` sections of a targets file (what is accepted and the clear refusals), the
webhook signature's own check, and examples/fleet.yaml with its commented-out ssh and webhook targets switched on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nats_mcp.cli.main import app
from nats_mcp.fleet.ssh_remote import env_script
from nats_mcp.fleet.targets import TargetsError, parse_targets
from nats_mcp.fleet.webhook import sign, verify

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fleet.yaml"

SSH = """
version: 1
targets:
  - name: remote
    capabilities: [python]
    max: 2
    mechanism: ssh
    ssh:
      host: build-1.example.net
      user: agent
      identityFile: /etc/nats-mcp/fleet_key
      knownHostsFile: /etc/nats-mcp/known_hosts
      command: ["nats-mcp-worker", "--name", "{agent_name}"]
      env:
        API_TOKEN: {fromEnv: TOKEN}
"""

HOOK = """
version: 1
targets:
  - name: hooked
    capabilities: [python]
    max: 2
    mechanism: webhook
    webhook:
      url: https://agents.example.net/fleet
      secret: {fromEnv: HOOK_SECRET}
"""


def test_ssh_and_webhook_sections_accepted_with_defaults() -> None:
    (remote,) = parse_targets(SSH).targets
    assert remote.ssh is not None and remote.mechanism == "ssh"
    assert (remote.ssh.port, remote.ssh.log, remote.ssh.state_dir) == (22, "/dev/null", "~/.nats-mcp-fleet")
    (hooked,) = parse_targets(HOOK).targets
    assert hooked.webhook is not None and not hooked.webhook.include_env
    local = parse_targets(HOOK.replace("https://agents.example.net", "http://127.0.0.1:8080")).targets[0]
    assert local.webhook is not None and local.webhook.url.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    ("doc", "change", "message"),
    [
        (SSH, {"build-1.example.net": "-oProxyCommand=sh"}, "host '-oProxyCommand=sh' is not a host name"),
        (SSH, {"user: agent": "user: -l"}, "user '-l' is not a user name"),
        (SSH, {"{fromEnv: TOKEN}": '{value: "t"}'}, "API_TOKEN looks like a secret, so give it fromEnv or fromFile"),
        (SSH, {"{agent_name}": "{secret}"}, "command placeholder {secret} unknown"),
        (SSH, {"      env:": "      stateDir: state\n      env:"}, "stateDir must be absolute or start with ~/"),
        (SSH, {"      env:": "      log: '{agent_guid}.log'\n      env:"}, "log placeholder {agent_guid} unknown"),
        (SSH, {"      identityFile: /etc/nats-mcp/fleet_key\n": ""}, "identityFile"),
        (SSH, {"      knownHostsFile: /etc/nats-mcp/known_hosts\n": ""}, "knownHostsFile"),
        (HOOK, {"https://agents": "http://agents"}, "url must be https (plain http only to a loopback address)"),
        (HOOK, {"https://agents": "https://user:pw@agents"}, "url must not hold credentials"),
        (HOOK, {"https://agents.example.net/fleet": "ftp://x/y"}, "is not an http(s) URL"),
        (HOOK, {"{fromEnv: HOOK_SECRET}": '{value: "s"}'}, "value"),
        (HOOK, {"{fromEnv: HOOK_SECRET}": "{}"}, "give exactly one of fromEnv, fromFile (a secret is never inline)"),
        (HOOK, {"      secret:": "      env: {A: {value: b}}\n      secret:"}, "env is sent only with includeEnv"),
    ],
)
def test_refusals(doc: str, change: dict[str, str], message: str) -> None:
    for old, new in change.items():
        assert old in doc
        doc = doc.replace(old, new)
    with pytest.raises(TargetsError) as exc:
        parse_targets(doc, "fleet.yaml")
    assert message in str(exc.value)


def test_signature_recipe_refuses_tampering_another_secret_and_replays() -> None:
    body = b'{"event":"start"}'
    header = sign(b"k", 1_000_000, body)
    assert re.fullmatch(r"t=1000000,v1=[0-9a-f]{64}", header)
    assert verify(b"k", header, body, now=1_000_100)
    assert not verify(b"k", header, body + b" ", now=1_000_100)  # the body changed
    assert not verify(b"other", header, body, now=1_000_100)  # another secret
    assert not verify(b"k", header, body, now=1_000_301)  # older than the window: a replay
    assert not verify(b"k", header.replace("t=1000000", "t=1000001"), body, now=1_000_100)  # the time changed
    assert not verify(b"k", "v1=abc", body, now=1_000_100)


def test_env_script_quotes_everything() -> None:
    assert env_script({"A": "it's $(x) `y`\nz"}) == b"export A='it'\"'\"'s $(x) `y`\nz'\n"


def test_example_file_with_its_remote_targets_switched_on() -> None:
    text = EXAMPLE.read_text()
    assert parse_targets(text, str(EXAMPLE)).targets
    switched = "\n".join(line.replace("# ", "", 1) if line.startswith("  # ") else line for line in text.splitlines())
    mechanisms = {t.mechanism for t in parse_targets(switched, str(EXAMPLE)).targets}
    assert {"local", "ssh", "webhook"} <= mechanisms


def test_run_refuses_an_unreadable_key_or_a_missing_webhook_secret_before_connecting(tmp_path: Path) -> None:
    targets = tmp_path / "t.yaml"
    runner = CliRunner()
    targets.write_text(SSH.replace("/etc/nats-mcp/fleet_key", str(tmp_path / "no-key")))
    refused = runner.invoke(app, ["fleet", "run", str(targets)], env={"TOKEN": "x"})
    assert refused.exit_code == 2
    assert f"target remote: identityFile {tmp_path / 'no-key'} cannot be read" in refused.stderr
    targets.write_text(HOOK)
    refused = runner.invoke(app, ["fleet", "run", str(targets)], env={"HOOK_SECRET": None})
    assert refused.exit_code == 2
    assert "target hooked: webhook secret (fromEnv HOOK_SECRET) is not set in this environment" in refused.stderr
