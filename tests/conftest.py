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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last. Playwright's sync API keeps an asyncio loop running in the
    main thread from its first use to the end of the session, and `asyncio.run` (which the
    CPython tests use) refuses to start while one is running."""
    items.sort(key=lambda item: E2E in Path(str(item.path)).parents)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as local:
        yield local
