"""The long tier (`sim_long`) runs only when asked for with `-m sim_long` (or `make sim`);
otherwise its histories are deselected, not run."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "sim_long" in (config.getoption("-m") or ""):
        return
    long = [item for item in items if "sim_long" in item.keywords]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if "sim_long" not in item.keywords]
