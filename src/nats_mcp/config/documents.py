"""The YAML-document boundary: a policy or targets file parsed and validated into its model, or one clear error."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_document(text: str, model: type[M], where: str, error: type[Exception], shape: str, top: str) -> M:
    """``text`` as ``model``; else ``error`` naming ``where``, the place (``top`` for the document itself) and the
    problem (the first ten). ``shape`` says what the document must be when it is not a mapping."""
    import yaml  # here: importing the policy module (every command that calls a tool) parses no YAML (issue 22)

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping with {shape}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or top}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()[:10]
        )
        raise error(f"{where}: {problems}") from None
