"""The shuffle plugin of tests/support: the same seed gives the same order, another seed another one, and a seed
given back through the environment is the one used."""

from __future__ import annotations

from tests.support.shuffle import SEED_ENV, shuffle_seed, shuffled


def test_the_same_seed_gives_the_same_order_and_keeps_every_item() -> None:
    first, second = list(range(50)), list(range(50))
    shuffled(first, 7)
    shuffled(second, 7)
    assert first == second and sorted(first) == list(range(50))
    third = list(range(50))
    shuffled(third, 8)
    assert third != first  # two seeds, one order of 50 items: once in 50! runs
    assert first != list(range(50))


def test_a_given_seed_is_used_and_none_draws_one() -> None:
    assert shuffle_seed({SEED_ENV: "123"}) == 123
    assert 0 <= shuffle_seed({}) < 1_000_000
