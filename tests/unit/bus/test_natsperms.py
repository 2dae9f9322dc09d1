"""The NATS permissions generator: what each role gets, what it never gets, the rendered block and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from nats_mcp.bus.layout import DIRECTORY_BUCKET, Layout
from nats_mcp.bus.natsperms import (
    AUDIT_STREAM,
    NatsPermissions,
    build_permissions,
    check_inbox_prefix,
    default_inbox_prefix,
    inbox_consumer,
)
from nats_mcp.cli.main import app
from tests.support.env import isolated_env

NS = "team-a"
GUID = "0123456789abcdef0123456789abcdef"
OTHER_GUID = "fedcba9876543210fedcba9876543210"
CHANNELS = ["roadmap", "errors"]

_TOKEN = re.compile(r"^[^\s.*>]+$")


def valid_subject(subject: str) -> bool:
    """A NATS subject or filter: non-empty tokens, ``*`` only as a whole token, ``>`` only as the last one."""
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if token == ">" and i == len(tokens) - 1:
            continue
        if token != "*" and not _TOKEN.match(token):
            return False
    return True


def agent(**kw: object) -> NatsPermissions:
    return build_permissions("agent", [NS], agent=GUID, channels=CHANNELS, **kw)  # type: ignore[arg-type]


def all_subjects(perms: NatsPermissions) -> list[str]:
    lists = perms.as_dict()
    return [s for kind in lists.values() for subjects in kind.values() for s in subjects]


# -- the agent ------------------------------------------------------------------------------------


def test_an_agent_subscribes_only_to_its_own_inbox_replies_and_namespace_signals() -> None:
    lay = Layout(NS)
    perms = agent()
    assert perms.as_dict()["subscribe"] == {
        "allow": [
            f"_INBOX_{GUID}.>",
            lay.channel_subject("roadmap"),
            lay.channel_subject("errors"),
            lay.inbox_subject(GUID),
            lay.work_subjects,
            f"$KV.{lay.work_state_bucket}.item.*",  # a waiting warp_work_get: the namespace's shared work state
            f"$KV.{lay.work_state_bucket}.sub.*",
            lay.reservations_subject,
        ],
        "deny": [],
    }
    assert perms.inbox_prefix == f"_INBOX_{GUID}"


def test_an_agent_creates_and_changes_no_stream_and_touches_no_other_namespace() -> None:
    publish = agent().as_dict()["publish"]["allow"]
    for forbidden in ("STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "CONSUMER.DELETE", "STREAM.NAMES"):
        assert not [s for s in publish if forbidden in s], forbidden
    assert "$JS.API.>" not in publish and ">" not in publish
    assert not [s for s in publish if s.startswith("$JS.API.") and s.split(".")[2:3] == [">"]]
    # every project name it may use is of its namespace, the shared directory or the audit stream
    for subject in publish:
        if subject.startswith("$JS.FC.") or subject.startswith("$JS.ACK."):
            assert f"_{NS}_" in subject or DIRECTORY_BUCKET in subject
        elif "nmcp" in subject:
            assert NS in subject or DIRECTORY_BUCKET in subject or AUDIT_STREAM in subject or "nmcp.audit." in subject


def test_an_agent_writes_only_its_own_keys() -> None:
    lay = Layout(NS)
    kv_writes = [s for s in agent().as_dict()["publish"]["allow"] if s.startswith("$KV.")]
    assert kv_writes == [
        f"$KV.{lay.registry_bucket}.{GUID}",
        f"$KV.{lay.identity_bucket}.lease.{GUID}",
        f"$KV.{lay.identity_bucket}.handle.{GUID}",
        f"$KV.{lay.identity_bucket}.lock.*",
        f"$KV.{DIRECTORY_BUCKET}.{NS}.{GUID}",
        f"$KV.{lay.work_state_bucket}.item.*",
        f"$KV.{lay.work_state_bucket}.requeue.*",
        f"$KV.{lay.work_state_bucket}.sub.*",  # submissions and dependencies: the namespace's shared work state
        f"$KV.{lay.work_state_bucket}.blocked.*",
        f"$KV.{lay.work_state_bucket}.rdep.*.*",
        f"$KV.{lay.reservations_bucket}.table",  # the namespace's one reservation table, shared like the work state
    ]


def test_an_agent_with_a_guid_is_isolated_by_default_and_shared_only_when_asked() -> None:
    assert agent().isolate_inbox and agent().as_dict() == agent(isolate_inbox=True).as_dict()
    assert not build_permissions("agent", [NS], channels=CHANNELS).isolate_inbox  # no GUID: no own consumer to use
    assert not build_permissions("gateway", [NS], channels=CHANNELS).isolate_inbox


def test_the_stream_wide_inbox_api_is_granted_and_said_to_be_unisolated() -> None:
    perms = agent(isolate_inbox=False)
    stream = Layout(NS).inbox_stream
    publish = perms.as_dict()["publish"]["allow"]
    for api in ("DIRECT.GET", "STREAM.MSG.GET", "STREAM.MSG.DELETE"):
        assert f"$JS.API.{api}.{stream}" in publish
    assert any("not isolated between agents" in c for c in perms.caveats)
    assert any("8274" in c for c in perms.caveats)


def test_an_isolated_inbox_is_reached_only_through_the_agents_own_filtered_consumer() -> None:
    lay = Layout(NS)
    stream, own = lay.inbox_stream, lay.inbox_subject(GUID)
    perms = agent(isolate_inbox=True)
    publish, deny = perms.as_dict()["publish"]["allow"], perms.as_dict()["publish"]["deny"]
    on_inbox = [s for s in publish if stream in s]
    consumer = inbox_consumer(GUID)
    assert on_inbox == [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{own}",
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]
    for api in ("DIRECT.GET", "STREAM.MSG.GET", "STREAM.MSG.DELETE", "STREAM.PURGE"):
        assert f"$JS.API.{api}.{stream}" in deny
    assert f"$JS.API.DIRECT.GET.{stream}.>" in deny
    assert not any("not isolated between agents" in c for c in perms.caveats)
    assert any("NATS_MCP_NATS_ISOLATE_INBOX=true" in c for c in perms.caveats)


def test_an_agent_without_guid_may_act_as_any_agent_of_its_namespace_and_is_told_so() -> None:
    lay = Layout(NS)
    perms = build_permissions("agent", [NS], channels=[])
    assert perms.inbox_prefix == f"_INBOX_ns_{NS}"
    assert lay.inbox_subjects in perms.as_dict()["subscribe"]["allow"]
    assert f"$KV.{lay.registry_bucket}.*" in perms.as_dict()["publish"]["allow"]
    assert any("no agent GUID" in c for c in perms.caveats)


def test_dm_namespaces_get_send_and_stream_info_only() -> None:
    other = Layout("ops")
    perms = agent(dm_namespaces=["ops", NS])
    touching = [s for s in all_subjects(perms) if "ops" in s]
    assert touching == [other.inbox_subjects, f"$JS.API.STREAM.INFO.{other.inbox_stream}"]


def test_audit_is_append_and_last_record_only_and_can_be_left_out() -> None:
    perms = agent()
    with_audit = [s for s in perms.as_dict()["publish"]["allow"] if "audit" in s]
    assert with_audit == [
        f"nmcp.audit.{perms.inbox_prefix}.*",  # its own writer token only: the subject proves who wrote a chain
        f"$JS.API.STREAM.INFO.{AUDIT_STREAM}",
        f"$JS.API.STREAM.MSG.GET.{AUDIT_STREAM}",
    ]
    assert not [s for s in all_subjects(agent(audit=False)) if "audit" in s]


# -- gateway and admin ----------------------------------------------------------------------------


def test_a_gateway_serves_every_agent_of_each_of_its_namespaces() -> None:
    perms = build_permissions("gateway", ["b-team", NS], channels=CHANNELS, audit=False)
    subscribe = perms.as_dict()["subscribe"]["allow"]
    for ns in ("b-team", NS):
        lay = Layout(ns)
        assert lay.inbox_subjects in subscribe
        assert f"$KV.{DIRECTORY_BUCKET}.{ns}.*" in perms.as_dict()["publish"]["allow"]
        assert f"$JS.API.DIRECT.GET.{lay.inbox_stream}" in perms.as_dict()["publish"]["allow"]
    assert f"nmcp.audit.{perms.inbox_prefix}.*" in perms.as_dict()["publish"]["allow"]  # always, whatever audit says
    assert any("the guard is what keeps" in c for c in perms.caveats)
    same = build_permissions("gateway", [NS, "b-team"], channels=CHANNELS)
    assert perms.inbox_prefix == same.inbox_prefix == default_inbox_prefix("gateway", [NS, "b-team"])
    assert perms.inbox_prefix != default_inbox_prefix("gateway", [NS])


def test_admin_gets_the_jetstream_api_and_the_project_subjects() -> None:
    perms = build_permissions("admin")
    assert perms.as_dict() == {
        "publish": {"allow": ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "nmcp.>"], "deny": []},
        "subscribe": {"allow": ["nmcp.>", "_INBOX_admin.>"], "deny": []},
    }
    assert any("account of its own" in c for c in perms.caveats)


def test_a_jetstream_domain_changes_the_api_prefix_and_adds_the_v2_ack_form() -> None:
    perms = agent(jetstream_domain="hub")
    publish = perms.as_dict()["publish"]["allow"]
    assert not [s for s in publish if s.startswith("$JS.API.")]
    assert f"$JS.hub.API.DIRECT.GET.{Layout(NS).work_stream}" in publish
    assert f"$JS.hub.*.{Layout(NS).work_stream}.*.>".replace("$JS.hub", "$JS.ACK.hub") in publish
    assert build_permissions("admin", jetstream_domain="hub").as_dict()["publish"]["allow"][0] == "$JS.hub.API.>"


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "namespaces", "kwargs", "message"),
    [
        ("root", [NS], {}, "role must be one of"),
        ("agent", [], {}, "exactly one namespace"),
        ("agent", [NS, "b"], {}, "exactly one namespace"),
        ("agent", ["Bad NS"], {}, "namespace"),
        ("agent", [NS], {"agent": "not-a-guid"}, "agent GUID"),
        ("agent", [NS], {"isolate_inbox": True}, "needs the agent's GUID"),
        ("agent", [NS], {"channels": ["a.b"]}, "channel"),
        ("agent", [NS], {"inbox_prefix": "_INBOX"}, "replies of every client"),
        ("agent", [NS], {"inbox_prefix": "_INBOX.>"}, "no wildcards"),
        ("agent", [NS], {"inbox_prefix": "nmcp.mine"}, "project prefix"),
        ("agent", [NS], {"jetstream_domain": "a.b"}, "jetstream domain"),
        ("gateway", [], {}, "at least one namespace"),
        ("gateway", [NS], {"agent": GUID}, "no agent GUID"),
        ("admin", [NS], {}, "covers every namespace"),
    ],
)
def test_arguments_that_do_not_fit_the_role_are_refused(
    role: str, namespaces: list[str], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_permissions(role, namespaces, **kwargs)  # type: ignore[arg-type]


def test_a_custom_inbox_prefix_is_used_and_the_default_one_is_fine_for_admin() -> None:
    assert agent(inbox_prefix="_INBOX.abc").as_dict()["subscribe"]["allow"][0] == "_INBOX.abc.>"
    assert check_inbox_prefix("_INBOX", "admin") == "_INBOX"


# -- rendering ------------------------------------------------------------------------------------


def test_the_block_is_a_commented_permissions_stanza_with_every_subject_quoted() -> None:
    perms = agent(isolate_inbox=True)
    text = perms.render()
    assert text.startswith("# nats-mcp NATS permissions: role agent, namespace team-a, agent " + GUID)
    assert f"inbox prefix '_INBOX_{GUID}'" in text
    body = text[text.index("\npermissions: {") + 1 :]
    assert body.rstrip().endswith("}")
    assert body.count("{") == body.count("}") == 3
    entries = [line.split("#", 1)[0].strip() for line in body.splitlines() if line.strip().startswith('"')]
    subjects = [json.loads(entry) for entry in entries]
    assert subjects == all_subjects(perms)
    assert "deny: [" in body
    # outside comments, a "$" only ever appears inside a quoted string (an unquoted one is a config variable)
    for line in body.splitlines():
        code = line.split("  #", 1)[0]
        assert "$" not in code or code.strip().startswith('"')


def test_json_carries_the_lists_reasons_caveats_and_the_block() -> None:
    perms = agent()
    data = perms.to_json()
    assert data["permissions"] == perms.as_dict()
    assert data["config"] == perms.render()
    assert data["inbox_prefix"] == f"_INBOX_{GUID}"
    assert set(data["reasons"]["publish_allow"]) == set(perms.as_dict()["publish"]["allow"])
    assert all(data["reasons"]["publish_allow"].values())
    json.dumps(data)


names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
guids = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)


@given(namespace=names, guid=guids, channels=st.lists(names, max_size=4), isolate=st.booleans())
def test_every_subject_is_a_valid_nats_subject(namespace: str, guid: str, channels: list[str], isolate: bool) -> None:
    perms = build_permissions("agent", [namespace], agent=guid, channels=channels, isolate_inbox=isolate)
    subjects = all_subjects(perms)
    assert all(valid_subject(s) for s in subjects), [s for s in subjects if not valid_subject(s)]
    assert len(perms.as_dict()["publish"]["allow"]) == len(set(perms.as_dict()["publish"]["allow"]))
    # another agent's inbox subject is never subscribable
    assert Layout(namespace).inbox_subject(OTHER_GUID if guid != OTHER_GUID else GUID) not in subjects


# -- the command ----------------------------------------------------------------------------------


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(app, list(args), env=isolated_env(tmp_path, NATS_MCP_NAMESPACE=NS))
    return result.exit_code, result.stdout, result.stderr


def test_the_command_prints_the_block(tmp_path: Path) -> None:
    code, out, _ = run(
        tmp_path,
        "nats-permissions",
        "--role",
        "agent",
        "--namespace",
        NS,
        "--agent",
        GUID,
        "--channel",
        "roadmap",
        "--channel",
        "errors",
    )
    assert code == 0
    assert out == agent().render()


def test_the_command_prints_json_with_configured_channels_and_namespace(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, "nats-permissions", "--role", "gateway", "--dm-namespace", "ops", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["role"] == "gateway" and data["namespaces"] == [NS]
    expected = build_permissions(
        "gateway", [NS], channels=["roadmap", "parallel-work", "errors"], dm_namespaces=["ops"]
    )
    assert data["permissions"] == expected.as_dict()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "boss"], "--role must be one of"),
        (["--role", "agent", "--agent", "xyz"], "agent GUID"),
        (["--role", "admin", "--namespace", NS], "covers every namespace"),
        (["--role", "agent", "--isolate-inbox"], "needs the agent's GUID"),
    ],
)
def test_the_command_refuses_bad_arguments_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run(tmp_path, "nats-permissions", *args)
    assert code == 2 and out == ""
    assert message in " ".join(err.split())
