"""The section base boundary: what every settings section shares (strict keys, Warp durations, name rules)."""

from __future__ import annotations

import re
import typing

from pydantic import BaseModel, ConfigDict

from nats_mcp.core.names import InvalidNameError

_DURATION = re.compile(r"^(\d+)(ns|us|ms|s|m|h|d)$")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Section(BaseModel):
    """A section of the settings: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def duration_seconds(text: str) -> float:
    """Seconds in a Warp duration such as ``24h``, ``30s`` or ``500ms``."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit ns|us|ms|s|m|h|d, e.g. 24h")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def name_check(fn: typing.Callable[[object], str], value: str) -> str:
    """``fn(value)`` (a validator of ``core/names.py``), its InvalidNameError as the ValueError pydantic reports."""
    try:
        return fn(value)
    except InvalidNameError as exc:
        raise ValueError(str(exc)) from None
