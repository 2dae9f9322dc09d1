"""Boundary of targets files: what `nats-mcp fleet check` accepts and the clear refusals of everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from nats_mcp.fleet.targets import TargetsError, parse_targets, resolve_env

GOOD = """
version: 1
targets:
  - name: py
    capabilities: [python]
    max: 2
    mechanism: local
    local:
      command: ["python", "w.py", "--name", "{agent_name}", "--caps", "{capabilities}"]
      env:
        WORK_MS: {value: "5"}
        API_TOKEN: {fromEnv: MY_TOKEN}
        DB_PASSWORD: {fromFile: SECRET_FILE}
"""


def _with(**repl: str) -> str:
    text = GOOD
    for old, new in repl.items():
        text = text.replace(old, new)
    return text


def test_valid_file_and_secrets_read_at_start(tmp_path: Path) -> None:
    secret = tmp_path / "db"
    secret.write_text("s3cret\n")
    doc = parse_targets(GOOD.replace("SECRET_FILE", str(secret)))
    (target,) = doc.targets
    assert (target.name, target.min, target.max, target.mechanism) == ("py", 0, 2, "local")
    assert target.boundaries == []  # unbounded work only
    assert parse_targets(_with(**{"[python]": "[python]\n    boundaries: [corporate, '*']"})).targets[0].boundaries == [
        "corporate",
        "*",
    ]
    assert target.local is not None
    env = resolve_env(target.local, {"MY_TOKEN": "tok"})
    assert env == {"WORK_MS": "5", "API_TOKEN": "tok", "DB_PASSWORD": "s3cret"}
    with pytest.raises(TargetsError, match=r"API_TOKEN \(fromEnv MY_TOKEN\) is not set") as missing:
        resolve_env(target.local, {})
    assert "tok" not in str(missing.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"mechanism: local": "mechanism: kubernetes"},
            "mechanism kubernetes needs a `kubernetes:` section",
        ),
        ({"mechanism: local": "mechanism: ssh"}, "mechanism ssh needs an `ssh:` section"),
        ({"mechanism: local": "mechanism: carrier-pigeon"}, "unknown mechanism 'carrier-pigeon'"),
        ({"{fromEnv: MY_TOKEN}": '{value: "abc"}'}, "API_TOKEN looks like a secret, so give it fromEnv or fromFile"),
        ({"max: 2": "max: 2\n    min: 3"}, "min (3) is above max (2)"),
        ({"{agent_name}": "{password}"}, "command placeholder {password} unknown"),
        ({"name: py": "name: Py_x"}, "invalid target name"),
        ({"[python]": "[]"}, "capabilities"),
        ({"[python]": "[python]\n    boundaries: [Corp.x]"}, "invalid boundary"),
        ({'{value: "5"}': '{value: "5", fromEnv: X}'}, "exactly one of value, fromEnv, fromFile"),
        ({"version: 1": "version: 2"}, "version"),
        ({"    local:\n": "    lokal:\n"}, "lokal"),
    ],
)
def test_refusals_name_the_place(change: dict[str, str], message: str) -> None:
    with pytest.raises(TargetsError) as exc:
        parse_targets(_with(**change), "fleet.yaml")
    assert str(exc.value).startswith("fleet.yaml: ")
    assert message in str(exc.value)


def test_duplicate_names_and_non_yaml() -> None:
    twice = GOOD + GOOD.split("targets:\n", 1)[1]
    with pytest.raises(TargetsError, match="target names must be unique: py"):
        parse_targets(twice)
    with pytest.raises(TargetsError, match="not valid YAML"):
        parse_targets("targets: [")
    with pytest.raises(TargetsError, match="expected a mapping"):
        parse_targets("- 1")
