"""Session-wide fixtures: one real DynamoDB Local for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.dynamo_local import DynamoDBLocal


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as local:
        yield local
