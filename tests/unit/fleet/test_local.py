"""Boundary of the `local` mechanism with real child processes: start, poll, stop; adoption by a successor."""

from __future__ import annotations

import sys
import uuid

import pytest

from nats_mcp.fleet.local import LocalMechanism
from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.targets import LocalSpec
from tests.support.natsserver import wait_for

SLEEPER = LocalSpec(command=[sys.executable, "-c", "import time; time.sleep(60)"], stopTimeoutS=5)
CRASHER = LocalSpec(command=[sys.executable, "-c", "import os, sys; sys.exit(int(os.environ['CODE']))"])


def _spec(target: str, **env: str) -> StartSpec:
    return StartSpec(target, "i1", "0" * 32, f"{target}-i1", ("python",), env)


async def test_start_poll_exit_code_and_stop() -> None:
    mech = LocalMechanism({"sleep": SLEEPER, "crash": CRASHER}, base_env={})
    crash = await mech.start(_spec("crash", CODE="3"))
    assert Handle.from_json(crash.to_json()) == crash
    assert {"host", "pidns", "pid", "pidStart", "target"} <= set(crash.ref)
    assert await _ended(mech, crash) == Exit(3)

    sleep = await mech.start(_spec("sleep"))
    assert await mech.poll(sleep) is True
    # a successor on this host (another LocalMechanism: not the parent) sees it, and stops it by process group
    heir = LocalMechanism({"sleep": SLEEPER}, base_env={})
    assert await heir.poll(sleep) is True
    await heir.stop(sleep)
    assert await _ended(mech, sleep) == Exit(-15)  # the parent reaps it: SIGTERM
    assert await heir.poll(sleep) == Exit(None)  # gone; the heir cannot know the code
    await heir.stop(sleep)  # stopping what has ended is no error

    # elsewhere: cannot tell (the coordinator falls back to registry presence), and never signals
    far = Handle("local", {**sleep.ref, "host": "another-host"})
    assert await heir.poll(far) is None


async def test_a_successor_finds_an_instance_whose_starter_died_before_recording_it() -> None:
    """The leader records an instance, starts it, and dies before recording its pid: the next leader finds it by the
    marker in its environment (the session leader, not what it started) and can stop it, so it is not orphaned."""
    mine, other = f"i-{uuid.uuid4().hex}", f"i-{uuid.uuid4().hex}"  # unique: another run on this host has its own
    mech = LocalMechanism({"sleep": SLEEPER}, base_env={})
    started = await mech.start(_spec("sleep", NATS_MCP_FLEET_INSTANCE=mine))
    try:
        heir = LocalMechanism({"sleep": SLEEPER}, base_env={})
        found = heir.find("sleep", mine)
        assert found is not None and found.ref["pid"] == started.ref["pid"]
        assert found.ref["pidStart"] == started.ref["pidStart"]
        assert heir.find("sleep", other) is None  # another instance's marker: nothing
        await heir.stop(found)
        assert await _ended(mech, started) == Exit(-15)
        assert heir.find("sleep", mine) is None  # ended: nothing to adopt
    finally:
        await mech.stop(started)


async def test_missing_command_is_a_clear_error() -> None:
    mech = LocalMechanism({"x": LocalSpec(command=["/nonexistent/agent"])}, base_env={})
    with pytest.raises(MechanismError, match="cannot run '/nonexistent/agent'"):
        await mech.start(_spec("x"))


async def _ended(mech: LocalMechanism, handle: Handle) -> Exit | bool | None:
    async def done() -> Exit | None:
        state = await mech.poll(handle)
        return state if isinstance(state, Exit) else None

    return await wait_for(done, 10)
