"""Hypothesis strategies from our tools' JSON input schemas: arguments a schema accepts (tests/fuzz/domain.py builds
on them: arguments the domain takes too, and arguments with one thing wrong).

Our schemas are small (objects of strings, integers, booleans, enums, arrays, free objects and ``anyOf`` with
null), so a direct translation is enough; hypothesis-jsonschema 0.23 does not run with this Hypothesis.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

JSON_LEAVES = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=30)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values ``schema`` accepts (as far as JSON Schema says; the domain may still refuse them)."""
    if "anyOf" in schema:
        return st.one_of([valid(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        if not props:
            return st.dictionaries(st.text(max_size=10), JSON, max_size=4)
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: valid(v) for k, v in props.items() if k in required},
            optional={k: valid(v) for k, v in props.items() if k not in required},
        )
    if kind == "string":
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"], fullmatch=True)
            return text.filter(lambda s: len(s) <= schema.get("maxLength", 10_000))
        return st.text(max_size=min(schema.get("maxLength", 200), 200))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(valid(schema.get("items", {})), max_size=5)
    if kind == "null":
        return st.none()
    return JSON
