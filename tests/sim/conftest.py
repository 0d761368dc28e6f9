"""The long tier (`sim_long`) runs only when asked for with `-m sim_long` (or `make sim`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "sim_long" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long simulation tier: run with -m sim_long or make sim")
    for item in items:
        if "sim_long" in item.keywords:
            item.add_marker(skip)
