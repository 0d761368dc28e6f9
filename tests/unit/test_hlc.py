"""The hybrid logical clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysync.hlc import ClockError, HybridClock, Stamp


def frozen(ms: int) -> HybridClock:
    return HybridClock("n1", clock=lambda: ms)


def test_a_stamp_prints_and_parses_back() -> None:
    s = Stamp(1_700_000_000_000, 7, "node-1")
    assert str(s) == "001700000000000:000007:node-1"
    assert Stamp.parse(str(s)) == s


@pytest.mark.parametrize("text", ["", "1:2:n", "001700000000000:000007:", "x" * 30,
                                  "00170000000000a:000007:n"])
def test_a_malformed_stamp_is_refused(text: str) -> None:
    with pytest.raises(ClockError):
        Stamp.parse(text)


def test_now_advances_with_a_stopped_wall_clock() -> None:
    clock = frozen(1000)
    stamps = [clock.now() for _ in range(3)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3


def test_now_follows_the_wall_clock_when_it_moves_forward() -> None:
    ms = [1000]
    clock = HybridClock("n1", clock=lambda: ms[0])
    clock.now()
    ms[0] = 2000
    assert clock.now() == Stamp(2000, 0, "n1")


def test_a_wall_clock_going_back_never_makes_stamps_go_back() -> None:
    ms = [5000]
    clock = HybridClock("n1", clock=lambda: ms[0])
    first = clock.now()
    ms[0] = 1000
    assert clock.now() > first


def test_observing_a_remote_stamp_ahead_moves_past_it() -> None:
    clock = frozen(1000)
    remote = Stamp(9000, 4, "n2")
    assert clock.observe(remote) > remote
    assert clock.now() > remote


def test_a_clock_resumes_after_its_persisted_stamp() -> None:
    last = Stamp(9000, 4, "n1")
    assert HybridClock("n1", clock=lambda: 1000, last=last).now() > last


@given(st.lists(st.tuples(st.integers(0, 10**14), st.integers(0, 999_999)), min_size=2))
def test_stamps_order_as_strings_the_way_they_order_as_stamps(
        parts: list[tuple[int, int]]) -> None:
    stamps = [Stamp(w, c, "n") for w, c in parts]
    assert sorted(stamps) == sorted(stamps, key=str)


def test_a_counter_overflow_is_an_error() -> None:
    clock = HybridClock("n1", clock=lambda: 1, last=Stamp(1, 999_999, "n1"))
    with pytest.raises(ClockError):
        clock.now()
