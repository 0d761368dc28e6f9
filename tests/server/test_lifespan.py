"""The app's ServerContext: created with the app, its background parts started by the
lifespan, closed with it (server/context.py). A real uvicorn server on DynamoDB Local."""

from __future__ import annotations

from typing import Any

import pytest

from server.app import create_app
from server.config import Settings
from server.context import ServerContext
from tests.server.feed_support import Store
from tests.support import serve, wait_until

pytestmark = pytest.mark.dynamodb


def test_the_lifespan_runs_the_feed_and_closes_the_context_with_the_app(
        dynamodb_local: Any) -> None:
    store = Store.create(dynamodb_local, feed_enabled=True)
    app = create_app(store.ctx.settings)
    ctx: ServerContext = app.state.ctx
    assert ctx.feed is not None
    assert not ctx.feed.running  # nothing runs before the lifespan
    with serve(app):
        assert ctx.feed.running
        store.put("u#a", "todos", "t1", title="by a script")
        wait_until(lambda: store.log("u#a"))  # this app's feed logged it
    assert not ctx.feed.running
    with pytest.raises(RuntimeError):  # the push pools accept no more work
        ctx.pools.pushers.submit(lambda: None)


def test_each_app_has_its_own_clock_and_pools() -> None:
    nowhere = Settings(dynamodb_endpoint="http://127.0.0.1:9")
    one, other = create_app(nowhere).state.ctx, create_app(nowhere).state.ctx
    assert one.clock.node != other.clock.node
    assert one.pools.pushers is not other.pools.pushers
    assert one.feed is None  # feed_enabled is off unless asked for
