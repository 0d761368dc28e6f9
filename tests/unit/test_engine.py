"""The sync client's pure decisions (pysync.engine): answers, backoff, the SSE decoder."""

from __future__ import annotations

import itertools
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysync.engine import Backoff, SSEDecoder, SSEEvent, classify, parse_retry_after


def error(code: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": f"{code} happened", **extra}}


def test_a_2xx_answer_is_ok() -> None:
    assert classify(200, {"last_mutation_id": 3, "results": []}).verdict == "ok"


def test_401_asks_for_a_new_token() -> None:
    answer = classify(401, error("token_expired"))
    assert (answer.verdict, answer.code) == ("reauth", "token_expired")


def test_mutation_gap_is_its_own_verdict_with_the_expected_id() -> None:
    answer = classify(409, error("mutation_gap", expected=42))
    assert (answer.verdict, answer.expected) == ("gap", 42)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retried(status: int) -> None:
    assert classify(status, error("store_unavailable")).verdict == "retry"


def test_retry_after_travels_with_a_retry_verdict() -> None:
    assert classify(503, error("store_unavailable"), retry_after="7").retry_after == 7.0


@pytest.mark.parametrize("status", [400, 403, 404, 413, 415])
def test_other_client_errors_are_not_retried_as_is(status: int) -> None:
    answer = classify(status, error("invalid_request"))
    assert (answer.verdict, answer.message) == ("fatal", "invalid_request happened")


def test_an_answer_without_a_json_error_body_still_gets_a_message() -> None:
    answer = classify(502, None)
    assert (answer.verdict, answer.code, answer.message) == ("retry", None, "HTTP 502")


def test_retry_after_as_an_http_date_is_relative_to_now() -> None:
    assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30.0


def test_unreadable_retry_after_is_ignored() -> None:
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None


def test_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    top = Backoff(base_s=1.0, cap_s=8.0, rand=lambda: 1.0)
    assert [top.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    bottom = Backoff(base_s=1.0, cap_s=8.0, rand=lambda: 0.0)
    assert [bottom.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_backoff_honours_a_longer_retry_after() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, rand=lambda: 1.0)
    assert backoff.next(retry_after=20.0) == 20.0
    assert backoff.next(retry_after=0.5) == 2.0


def test_backoff_starts_over_after_a_success() -> None:
    backoff = Backoff(base_s=1.0, rand=lambda: 1.0)
    backoff.next()
    backoff.next()
    backoff.reset()
    assert backoff.next() == 1.0


STREAM = ("retry: 2000\n\nevent: poke\ndata: {\"head\": 3}\n\n: heartbeat\n\n"
          "event: poke\r\ndata: a\r\ndata: b\r\nid: 7\r\n\r\ndata: plain\n\n")
EVENTS = [SSEEvent("poke", '{"head": 3}'), SSEEvent("poke", "a\nb", "7"),
          SSEEvent("message", "plain", "7")]


def test_sse_events_comments_and_retry_are_decoded() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) == EVENTS
    assert decoder.retry_ms == 2000


def test_an_sse_event_is_only_complete_at_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("event: poke\ndata: 1\n") == []
    assert decoder.feed("\n") == [SSEEvent("poke", "1")]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_sse_decoding_does_not_depend_on_where_chunks_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    decoder = SSEDecoder()
    events = [e for a, b in itertools.pairwise(bounds)
              for e in decoder.feed(STREAM[a:b])]
    assert events == EVENTS
