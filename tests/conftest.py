"""Session-wide fixtures: one real DynamoDB Local for the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from server.dynamo_local import DynamoDBLocal

E2E = Path(__file__).parent / "e2e"

# No per-example deadline: these machines are shared and noisy, and a slow example is not a
# failure (the brief: no timed assertions in tests).
settings.register_profile("pysync", deadline=None)
settings.load_profile("pysync")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last. Playwright's sync API keeps an asyncio loop running in the
    main thread from its first use to the end of the session, and `asyncio.run` (which the
    CPython tests use) refuses to start while one is running.

    The long tiers of the simulation (`sim_long`: tests/sim and its browser tier in
    tests/e2e) run only when asked for with `-m sim_long` (or `make sim`, `make
    sim-browser`); otherwise they are deselected, not run."""
    items.sort(key=lambda item: E2E in Path(str(item.path)).parents)
    if "sim_long" in (config.getoption("-m") or ""):
        return
    long = [item for item in items if "sim_long" in item.keywords]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if "sim_long" not in item.keywords]


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as local:
        yield local
