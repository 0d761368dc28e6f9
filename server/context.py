"""What every request handler and background task of one server process shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from server.config import Settings
from server.db import dynamodb_client, streams_client
from server.tables import TableNames

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient


@dataclass
class ServerContext:
    settings: Settings
    dynamodb: DynamoDBClient
    streams: DynamoDBStreamsClient
    tables: TableNames

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerContext:
        return cls(settings, dynamodb_client(settings), streams_client(settings),
                   TableNames.with_prefix(settings.table_prefix))


def context_of(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx
