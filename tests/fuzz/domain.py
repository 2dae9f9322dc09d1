"""Hypothesis strategies for tool arguments that are valid for the schema AND the domain (configured channels,
registered agents, items really claimed or dead-lettered), so the call has to succeed; and arguments with one thing
wrong, each with the error code the server has to answer for it.

A strategy draws the free fields; the fields that name live state (an agent's GUID, a claimed item's id) come from
:class:`Given`, filled by the test's set-up calls for each example (see ``NEEDS``)."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.schemas import JSON, valid

CHANNELS = ("roadmap", "parallel-work", "errors")
"""The channels a server configures by default (the fuzz fixture checks warp_channels_list says so)."""
WORK_CAP = "fuzz_work"
"""The capability the set-up registers and offers items for (claims need it registered)."""
UUID_FIELDS = {"workItemId", "itemId", "dependsOn", "reservationId"}
"""Pattern fields whose bad values are invalid arguments; every other pattern field is a name: invalid_name."""
FREE = st.text(max_size=200).filter(lambda s: s.strip() != "")
"""Free text the domain takes: anything with a character that is not white space."""
LONG_AGO, FAR_AHEAD = datetime(2000, 1, 1), datetime(2100, 1, 1)
PATH = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12).filter(
        lambda s: s not in (".", "..")
    )
    | st.sampled_from(["*", "**", "*.py"]),
    min_size=1,
    max_size=4,
).map("/".join)
"""Project paths and globs a reservation takes (core/pathglob.py)."""
ESCAPES = st.sampled_from(["../x", "src/../../x", "/etc/passwd", "C:/x", "a\x00b", "a\\b", "./"])
"""Paths a reservation refuses (invalid_argument): outside the project, control characters, backslashes, empty."""
"""Naive bounds: Hypothesis draws naive moments between them, then gives them UTC."""


@dataclass
class Given:
    """Live state the set-up made for one example."""

    peer: str = ""
    """The GUID of another registered agent."""
    item: str = ""
    """A work item claimed by the fuzzing agent (progress, complete, fail)."""
    dead: str = ""
    """A dead-lettered work item (DLQ retry, discard)."""
    reservation: str = ""
    """A live reservation of the fuzzing agent (renew, release, force-release)."""


AT_LEAST_ONE = {"warp_registry_update_presence": ("status", "currentTaskCount", "capabilities")}
"""Tools whose optional fields are not all optional at once: a call has to give one of them."""
NEEDS: dict[str, str] = {
    "warp_registry_update_presence": "registered",
    "warp_registry_deregister": "registered",
    "warp_work_claim": "offered",
    "warp_work_claim_batch": "offered",
    "warp_work_progress": "claimed",
    "warp_work_complete": "claimed",
    "warp_work_fail": "claimed",
    "warp_dlq_retry": "dead",
    "warp_dlq_discard": "dead",
    "warp_work_broadcast": "claimed",  # an item to name in dependsOn
    "warp_work_get": "claimed",
    "warp_work_cancel": "claimed",
    "warp_work_force_cancel": "claimed",
    "warp_reservations_acquire": "unreserved",
    "warp_reservations_renew": "reserved",
    "warp_reservations_release": "reserved",
    "warp_reservations_force_release": "reserved",
}
"""The set-up a tool's example needs before its call: the agent registered (with WORK_CAP), an item offered for
WORK_CAP, one claimed, or one dead-lettered; none of the agent's reservations left (an agent holds at most 100), or
one made. Other tools need none."""


def _iso(low: datetime, high: datetime) -> st.SearchStrategy[str]:
    """ISO 8601 UTC moments between two naive ones, as a client would write them."""
    moments = st.datetimes(min_value=low, max_value=high, timezones=st.just(UTC))
    return moments.map(lambda d: d.isoformat().replace("+00:00", "Z"))


def future() -> st.SearchStrategy[str]:
    """Moments a day to 70 years ahead of the call: an offset is drawn (the draw must not depend on the clock)."""
    seconds = st.integers(86_400, 70 * 365 * 86_400)
    return seconds.map(lambda s: (datetime.now(UTC) + timedelta(seconds=s)).isoformat().replace("+00:00", "Z"))


def any_moment() -> st.SearchStrategy[str]:
    return _iso(LONG_AGO, FAR_AHEAD)


def _field(tool: str, key: str, schema: dict[str, Any], given: Given) -> st.SearchStrategy[Any] | None:
    """The domain's values for one field (None: leave it out); the schema's own values where the domain takes all."""
    fixed = {
        "guid": given.peer,
        "recipientGuid": given.peer,
        "workItemId": given.item,
        "itemId": given.dead,
        "reservationId": given.reservation,
        "holderGuid": given.peer,
    }
    if key in fixed:
        return st.just(fixed[key])
    if key == "cursor":
        return None  # only a cursor a previous page returned is valid
    if key == "channel":
        return st.sampled_from(CHANNELS)
    if key in ("message", "taskId", "description", "reason"):
        return FREE
    if key == "hostname":
        return st.text(alphabet=string.ascii_letters + string.digits + "-. ", min_size=1, max_size=60).filter(str.strip)
    if key == "deadline":
        return future()
    if key in ("deadlineBefore", "deadlineAfter"):
        return any_moment()
    if key in ("contextData", "metadata"):
        return st.dictionaries(st.text(max_size=10), JSON, max_size=4)
    if key == "result":
        return JSON
    if key == "capability" and tool in ("warp_work_claim", "warp_work_claim_batch", "warp_work_get"):
        return st.just(WORK_CAP)
    if key == "dependsOn":
        return st.just([given.item]) if given.item else None
    if key == "waitMs" and tool == "warp_channels_read":
        return st.just(0)  # a wait needs afterSequence (its own refusal); the waiting reads have their own tests
    if key == "waitMs":
        return st.integers(0, 200)  # the item is claimed and stays so: a long wait is only a hang
    if key == "timeout":
        return st.integers(0, 200)  # a waiting claim is not what is fuzzed
    if key == "resources":
        return st.lists(PATH, min_size=1, max_size=5)
    if key == "resource":
        return PATH
    return valid(schema)


@st.composite
def domain_valid(draw: st.DrawFn, tool: str, schema: dict[str, Any], given: Given) -> dict[str, Any]:
    """Arguments ``tool`` has to carry out: valid for its schema and for the live state in ``given``."""
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    args: dict[str, Any] = {}
    for key, prop in props.items():
        strategy = _field(tool, key, prop, given)
        if strategy is None:
            continue
        if key in required or draw(st.booleans(), label=f"with {key}"):
            args[key] = draw(strategy, label=key)
    some = AT_LEAST_ONE.get(tool, ())
    if some and not any(key in args for key in some):
        key = draw(st.sampled_from(some), label="one of")
        args[key] = draw(valid(props[key]), label=key)
    if "minPriority" in args and "maxPriority" in args and args["minPriority"] > args["maxPriority"]:
        args["minPriority"], args["maxPriority"] = args["maxPriority"], args["minPriority"]
    return args


def _is_name(key: str, schema: dict[str, Any]) -> bool:
    return "pattern" in schema and key not in UUID_FIELDS


def _wrong_type(schema: dict[str, Any]) -> st.SearchStrategy[Any] | None:
    """Values of another JSON type than the field's (none the server's lax parsing could take for it)."""
    kind = schema.get("type")
    nested = st.just({"nested": [1, {"deep": None}]})
    others = {
        "string": st.integers() | st.lists(st.integers(), max_size=3) | nested,
        "integer": st.just("abc") | st.floats(-1e6, 1e6).filter(lambda f: f != int(f)) | nested,
        "boolean": st.lists(st.integers(), min_size=1, max_size=3) | nested,
        "array": st.integers() | nested,
        "object": st.integers() | st.lists(st.integers(), max_size=3) | st.just("text"),
    }
    return others.get(kind) if isinstance(kind, str) else None


def _bad_values(key: str, schema: dict[str, Any]) -> list[tuple[st.SearchStrategy[Any], str]]:
    """Every kind of bad value the field has, each with the code the server answers for it."""
    out: list[tuple[st.SearchStrategy[Any], str]] = []
    wrong = _wrong_type(schema)
    if wrong is not None:
        out.append((wrong, "invalid_argument"))
    if "enum" in schema:
        out.append((st.text(max_size=12).filter(lambda s: s not in schema["enum"]), "invalid_argument"))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        out.append((st.integers(max_value=low - 1), "invalid_argument"))
    if high is not None:
        out.append((st.integers(min_value=high + 1), "invalid_argument"))
    if schema.get("type") == "string":
        code = "invalid_name" if _is_name(key, schema) else "invalid_argument"
        if "pattern" in schema:
            pattern = re.compile(schema["pattern"])
            odd = st.text(alphabet=" .*>\x00\n\t/ÄÖ\u202eXYZ", min_size=1, max_size=20)
            out.append((odd.filter(lambda s: not pattern.fullmatch(s)), code))
        if "maxLength" in schema:
            out.append((st.just("a" * (schema["maxLength"] + 1)), code))
    if schema.get("type") == "array" and "pattern" in schema.get("items", {}):
        item = schema["items"]
        out.append((st.just(["ok", "Not A Name!"]), "invalid_name" if _is_name(key, item) else "invalid_argument"))
    return out


def _domain_defects(tool: str, key: str) -> list[tuple[st.SearchStrategy[Any], str]]:
    """Values the schema takes and the domain refuses, with their codes."""
    unknown_guid = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
    unknown_uuid = st.uuids(version=4).map(str)
    other_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
    blank = st.text(alphabet=" \t\n", min_size=1, max_size=5)
    table: dict[str, list[tuple[st.SearchStrategy[Any], str]]] = {
        "channel": [(other_names.filter(lambda c: c not in CHANNELS), "not_found")],
        "message": [(blank, "invalid_argument")],  # a DM only refuses "": see below
        "taskId": [(blank, "invalid_argument"), (st.just("t" * 257), "invalid_argument")],
        "description": [(blank, "invalid_argument")],
        "reason": [(blank, "invalid_argument")],
        "guid": [(unknown_guid, "not_found")],
        "recipientGuid": [(unknown_guid, "not_found")],
        "workItemId": [(unknown_uuid, "not_found")],
        "itemId": [(unknown_uuid, "not_found")],
        "dependsOn": [(unknown_uuid.map(lambda u: [u]), "not_found")],
        "hostname": [(st.just("\x00"), "invalid_argument")],
        "cursor": [(st.sampled_from(["abc", "not-a-cursor"]), "invalid_cursor")],
        "deadline": [
            (_iso(LONG_AGO, datetime(2020, 1, 1)), "invalid_argument"),
            (st.just("next tuesday"), "invalid_argument"),
        ],
        "deadlineBefore": [(st.just("soon"), "invalid_argument")],
        "deadlineAfter": [(st.just("later"), "invalid_argument")],
    }
    if key == "capability" and tool in ("warp_work_claim", "warp_work_claim_batch"):
        return [(other_names.filter(lambda c: c != WORK_CAP), "forbidden")]
    if tool.startswith("warp_reservations_"):
        return {
            "resources": [(ESCAPES.map(lambda p: ["ok/path", p]), "invalid_argument")],
            "resource": [(ESCAPES, "invalid_argument")],
            "reservationId": [(unknown_uuid, "not_found")],
        }.get(key, [])  # a blank reason is no defect here: it is optional
    if key == "message" and tool == "warp_messages_send_direct":
        # empty, or white space only: refused as a channel message is (the fuzzer found DMs took white space)
        return [(st.sampled_from(["", " ", "\n\t "]), "invalid_argument")]
    return table.get(key, [])


@st.composite
def one_thing_wrong(draw: st.DrawFn, tool: str, schema: dict[str, Any], given: Given) -> tuple[dict[str, Any], str]:
    """Domain-valid arguments with one thing wrong, and the code the server must answer: an unknown key or a
    required one missing (invalid_argument), a value the schema refuses (by kind), one the domain refuses."""
    props: dict[str, Any] = schema.get("properties", {})
    args = draw(domain_valid(tool, schema, given), label="valid base")
    defects: list[tuple[str, str, st.SearchStrategy[Any], str]] = []
    for key, prop in props.items():
        defects += [("value", key, values, code) for values, code in _bad_values(key, prop)]
        defects += [("value", key, values, code) for values, code in _domain_defects(tool, key)]
    defects += [("missing", key, st.none(), "invalid_argument") for key in schema.get("required", ())]
    defects.append(("unknown", "", JSON, "invalid_argument"))
    if AT_LEAST_ONE.get(tool):
        defects.append(("none of", "", st.none(), "invalid_argument"))
    how, key, values, code = draw(st.sampled_from(defects), label="defect")
    if how == "unknown":
        extra = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in props), label="unknown key")
        args[extra] = draw(values)
    elif how == "missing":
        del args[key]
    elif how == "none of":
        args = {}
    else:
        args[key] = draw(values, label=f"bad {key}")
    return args, code
