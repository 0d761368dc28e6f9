"""Per-user rate limiting: the token bucket (pure, with a fake clock) and 429 over HTTP."""

from __future__ import annotations

import pytest

from server.dynamo_local import DynamoDBLocal
from server.errors import RateLimited
from server.ratelimit import RateLimiter
from tests.server.api_support import client_id, mutation, push_body, running_api


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def taken(limiter: RateLimiter, user: str) -> bool:
    """True if the limiter let one request of `user` through, False if it refused it."""
    try:
        limiter.take(user)
    except RateLimited:
        return False
    return True


def test_a_burst_is_allowed_then_refused_with_the_time_until_a_token_is_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("alice")
    with pytest.raises(RateLimited) as info:
        limiter.take("alice")
    assert info.value.retry_after == pytest.approx(0.5)


def test_tokens_refill_with_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=1, clock=clock)
    limiter.take("alice")
    clock.now = 0.25  # half a token back: still refused, with the time to the whole one
    with pytest.raises(RateLimited) as early:
        limiter.take("alice")
    assert early.value.retry_after == pytest.approx(0.25)
    clock.now = 0.5  # a whole token back (2 per second): allowed once, then empty again
    assert taken(limiter, "alice") is True
    assert taken(limiter, "alice") is False


def test_users_have_separate_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock())
    limiter.take("alice")
    limiter.take("bob")
    with pytest.raises(RateLimited):
        limiter.take("alice")


def test_a_refused_request_spends_no_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.take("alice")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.take("alice")
    clock.now = 1.0
    limiter.take("alice")


def test_a_zero_rate_disables_the_limit() -> None:
    limiter = RateLimiter(rate=0, burst=0, clock=FakeClock())
    assert limiter.enabled is False
    # burst 0 and no time passing: any enabled limiter would refuse the very first request.
    assert [taken(limiter, "alice") for _ in range(100)] == [True] * 100


@pytest.mark.dynamodb
def test_too_many_pushes_are_429_with_retry_after(dynamodb_local: DynamoDBLocal) -> None:
    with running_api(dynamodb_local, rate_limit_per_s=0.01, rate_limit_burst=2) as api:
        alice, cid = api.token("alice"), client_id()
        codes = [api.push(alice, push_body(cid, mutation(i))).status_code for i in (1, 2)]
        limited = api.push(alice, push_body(cid, mutation(3)))
        other_user = api.push(api.token("bob"), push_body(client_id(), mutation(1)))
    assert codes == [200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert other_user.status_code == 200
