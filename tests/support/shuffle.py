"""An opt-in pytest plugin that runs the collected tests in a shuffled order (the suite must not depend on order):

    .venv/bin/python -m pytest -p tests.support.shuffle [NATS_MCP_SHUFFLE_SEED=N] ...

The seed is printed in the header; give it back through ``NATS_MCP_SHUFFLE_SEED`` to replay an order. (Neither
pytest-randomly nor pytest-random-order is in the lock; this is the few lines we need of them.)"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, MutableSequence
from typing import TypeVar

import pytest

SEED_ENV = "NATS_MCP_SHUFFLE_SEED"
T = TypeVar("T")


def shuffle_seed(environ: Mapping[str, str] = os.environ) -> int:
    given = environ.get(SEED_ENV, "").strip()
    return int(given) if given else random.SystemRandom().randrange(1_000_000)


def shuffled(items: MutableSequence[T], seed: int) -> None:
    """Shuffle ``items`` in place, the same way for the same seed."""
    random.Random(seed).shuffle(items)


_SEED = shuffle_seed()


def pytest_configure(config: pytest.Config) -> None:
    # Set only where the plugin is loaded (importing this module, as its unit test does, must leave the environment
    # alone: in-process CLI tests would read the variable as an unknown setting). xdist workers start after this and
    # inherit it: they all collect one order.
    os.environ[SEED_ENV] = str(_SEED)


def pytest_report_header() -> str:
    return f"shuffled order: {SEED_ENV}={_SEED}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    shuffled(items, _SEED)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"shuffled order: {SEED_ENV}={_SEED}")  # -q drops the header: the seed goes last too
