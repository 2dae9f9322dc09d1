"""The `fleet` role of the NATS permissions generator: a coordinator writes its own bucket and no agent's keys;
agents get nothing of its bucket, gateways read it (the dashboard)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nats_mcp.bus.layout import DIRECTORY_BUCKET, Layout
from nats_mcp.bus.natsperms import build_permissions
from nats_mcp.cli.main import app
from tests.support.env import isolated_env

NS = "team-a"
GUID = "0123456789abcdef0123456789abcdef"
LAY = Layout(NS)
FLEET_STREAM = f"KV_{LAY.fleet_bucket}"


def publish(role: str, **kw: object) -> list[str]:
    return build_permissions(role, [NS], channels=["roadmap"], **kw).as_dict()["publish"]["allow"]  # type: ignore[arg-type]


def test_a_fleet_coordinator_writes_its_bucket_and_no_agents_keys() -> None:
    perms = build_permissions("fleet", [NS], channels=["roadmap"])
    allowed = perms.as_dict()["publish"]["allow"]
    assert (
        perms.inbox_prefix == f"_INBOX_fleet_{NS}"
        and perms.as_dict()["subscribe"]["allow"][0] == "_INBOX_fleet_team-a.>"
    )
    for forbidden in ("STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "CONSUMER.DELETE"):
        assert not [s for s in allowed if forbidden in s], forbidden
    assert [s for s in allowed if s.startswith("$KV.")] == [
        f"$KV.{LAY.fleet_bucket}.>",
        f"$KV.{LAY.identity_bucket}.lock.*",  # registry GC's lock, as every process takes it
        f"$KV.{LAY.work_state_bucket}.item.*",  # the work-events mover, as in every process
        f"$KV.{LAY.work_state_bucket}.requeue.*",
        f"$KV.{LAY.work_state_bucket}.sub.*",
        f"$KV.{LAY.work_state_bucket}.blocked.*",
        f"$KV.{LAY.work_state_bucket}.rdep.*.*",
    ]
    assert f"$JS.API.CONSUMER.CREATE.{FLEET_STREAM}" in allowed  # listing its keys reads through a watch
    for read in (LAY.registry_bucket, DIRECTORY_BUCKET):
        assert f"$JS.API.CONSUMER.CREATE.KV_{read}" in allowed  # who is online
    # nobody's agent: no channel sends, no DMs, no inbox
    assert LAY.channel_subject("roadmap") not in allowed
    assert not [s for s in allowed if LAY.inbox_stream in s or s.startswith(f"nmcp.{NS}.inbox")]
    assert any("only writer" in c for c in perms.caveats)


def test_agents_get_nothing_of_the_fleet_bucket_and_gateways_read_it() -> None:
    assert not [s for s in publish("agent", agent=GUID) if LAY.fleet_bucket in s]
    assert not [s for s in publish("agent") if LAY.fleet_bucket in s]
    gateway = [s for s in publish("gateway") if LAY.fleet_bucket in s]
    assert gateway and not [s for s in gateway if s.startswith("$KV.")]
    assert f"$JS.API.STREAM.INFO.{FLEET_STREAM}" in gateway


@pytest.mark.parametrize(
    ("namespaces", "kwargs"),
    [([], {}), ([NS, "b"], {}), ([NS], {"agent": GUID}), ([NS], {"dm_namespaces": ["b"]})],
)
def test_the_fleet_role_takes_one_namespace_and_nothing_agent_like(
    namespaces: list[str], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="the fleet role needs exactly one namespace"):
        build_permissions("fleet", namespaces, **kwargs)  # type: ignore[arg-type]


def test_the_command_prints_the_fleet_block(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["nats-permissions", "--role", "fleet", "--namespace", NS], env=isolated_env(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"# nats-mcp NATS permissions: role fleet, namespace {NS}\n")
    assert f'"$KV.{LAY.fleet_bucket}.>"' in result.stdout
