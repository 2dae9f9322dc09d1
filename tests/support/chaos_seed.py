"""Reproducible chaos: the seed of a chaos test's random choices, a fixed one and a fresh one per run, and how to
give a printed one back (``NATS_MCP_CHAOS_SEED``)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

SEED_ENV = "NATS_MCP_CHAOS_SEED"
FIXED_SEED = 261207
"""The seed every run tries (CI included), so a run-to-run difference is the code's, not the dice's."""
SLOTS = ("fixed", "fresh")
"""A chaos test runs once per slot: the fixed seed, and a fresh one (or the one ``NATS_MCP_CHAOS_SEED`` gives)."""


class SeedError(ValueError):
    """NATS_MCP_CHAOS_SEED is not a whole number."""


def chaos_seed(slot: str, environ: Mapping[str, str] = os.environ) -> int:
    """The seed of ``slot``: the fixed one, or the given one, or a fresh one from the OS."""
    if slot == "fixed":
        return FIXED_SEED
    if slot != "fresh":
        raise ValueError(f"unknown seed slot {slot!r} (one of {', '.join(SLOTS)})")
    given = environ.get(SEED_ENV, "").strip()
    if not given:
        return random.SystemRandom().randrange(1_000_000)
    try:
        return int(given)
    except ValueError:
        raise SeedError(f"{SEED_ENV}={given!r}: a chaos seed is a whole number, as a failed run prints it") from None


def replay_hint(test: str, seed: int) -> str:
    """What to run to replay a seed (printed at the start of a chaos test: pytest shows it when the test fails)."""
    if seed == FIXED_SEED:
        return f"seed {seed} (the fixed one): pytest '{test}[fixed]'"
    return f"seed {seed}: {SEED_ENV}={seed} pytest '{test}[fresh]'"
