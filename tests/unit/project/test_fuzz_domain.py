"""The fuzzer's argument strategies (tests/fuzz/domain.py), checked against the tools' own JSON schemas without a
server: domain-valid arguments are valid for the schema, and every schema-level bad value is one the schema refuses."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from nats_mcp.api.server import ToolTable
from tests.fuzz.domain import AT_LEAST_ONE, Given, _bad_values, domain_valid, one_thing_wrong

SCHEMAS = {tool.name: tool.input_schema for tool in ToolTable("warp_").tools}
GIVEN = Given(peer="ab" * 16, item=str(uuid.uuid4()), dead=str(uuid.uuid4()), reservation=str(uuid.uuid4()))
QUICK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@QUICK
@given(data=st.data())
def test_domain_valid_arguments_are_valid_for_the_schema(name: str, data: Any) -> None:
    args = data.draw(domain_valid(name, SCHEMAS[name], GIVEN))
    errors = [e.message for e in Draft202012Validator(SCHEMAS[name]).iter_errors(args)]
    assert not errors, (name, args, errors)
    assert "cursor" not in args  # only a cursor a page returned is valid
    if name in AT_LEAST_ONE:
        assert set(args) & set(AT_LEAST_ONE[name])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@QUICK
@given(data=st.data())
def test_every_schema_level_bad_value_is_refused_by_the_schema(name: str, data: Any) -> None:
    for key, prop in SCHEMAS[name].get("properties", {}).items():
        for values, code in _bad_values(key, prop):
            value = data.draw(values)
            assert list(Draft202012Validator(prop).iter_errors(value)), (name, key, value, code)
            assert code in ("invalid_argument", "invalid_name")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@QUICK
@given(data=st.data())
def test_one_thing_wrong_names_a_code_and_changes_the_arguments(name: str, data: Any) -> None:
    args, code = data.draw(one_thing_wrong(name, SCHEMAS[name], GIVEN))
    assert code in {"invalid_argument", "invalid_name", "not_found", "forbidden", "invalid_cursor"}
    schema_ok = not list(Draft202012Validator(SCHEMAS[name]).iter_errors(args))
    if schema_ok:  # what the schema takes, only the domain refuses
        assert code in {"not_found", "forbidden", "invalid_cursor", "invalid_argument"}, (args, code)
