"""The chaos seeds of tests/support: fixed, fresh, or given back through NATS_MCP_CHAOS_SEED (and refused when
not a number)."""

from __future__ import annotations

import pytest

from tests.support.chaos_seed import FIXED_SEED, SEED_ENV, SLOTS, SeedError, chaos_seed, replay_hint


def test_the_fixed_slot_is_the_same_whatever_the_environment() -> None:
    assert chaos_seed("fixed", {}) == FIXED_SEED
    assert chaos_seed("fixed", {SEED_ENV: "42"}) == FIXED_SEED


def test_a_printed_seed_given_back_is_the_one_used() -> None:
    assert chaos_seed("fresh", {SEED_ENV: "4711"}) == 4711
    assert chaos_seed("fresh", {SEED_ENV: " 4711\n"}) == 4711


def test_a_fresh_seed_comes_from_the_os_when_none_is_given() -> None:
    seeds = {chaos_seed("fresh", {}) for _ in range(20)}
    assert all(0 <= s < 1_000_000 for s in seeds)
    assert len(seeds) > 1  # 20 draws from a million: all alike once in ~10^114 runs
    assert chaos_seed("fresh", {SEED_ENV: ""}) in range(1_000_000)


@pytest.mark.parametrize("bad", ["abc", "1.5", "0x10"])
def test_a_seed_that_is_not_a_number_is_refused_clearly(bad: str) -> None:
    with pytest.raises(SeedError, match=f"{SEED_ENV}='{bad}': a chaos seed is a whole number"):
        chaos_seed("fresh", {SEED_ENV: bad})


def test_an_unknown_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown seed slot 'other'"):
        chaos_seed("other", {})
    assert SLOTS == ("fixed", "fresh")


def test_the_replay_hint_names_the_slot_and_the_variable() -> None:
    assert replay_hint("tests/chaos/test_x.py::test_y", 4711) == (
        f"seed 4711: {SEED_ENV}=4711 pytest 'tests/chaos/test_x.py::test_y[fresh]'"
    )
    assert replay_hint("t", FIXED_SEED) == f"seed {FIXED_SEED} (the fixed one): pytest 't[fixed]'"
