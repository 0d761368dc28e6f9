"""Benchmark (not a test): encoding push's items with server/codec.py's Serializer against
plain boto3 TypeSerializer.

    python -m tests.bench.codec_bench [--repeat 7] [--chunks 20]

Times `server.records.encode_item` over a chunk of 99 records shaped like the load
benchmark's (three fields, with the meta push writes), once with the codec's direct path for
the value types records hold and once with boto3's TypeSerializer as it is, alternating,
and prints the median and fastest milliseconds per chunk of each (docs/server.md, "Push
performance").
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from boto3.dynamodb.types import TypeSerializer

import server.records as records
from pysync.merge import RecordState
from server import codec

STAMP = "0001764400000000:00000:abcdef"


def chunk_states() -> list[RecordState]:
    states = []
    for n in range(99):
        value: dict[str, Any] = {"title": f"todo number {n}", "done": n % 2 == 0, "rank": n}
        states.append(RecordState(fields=value, version=1, hlc=STAMP,
                                  stamps=dict.fromkeys(value, STAMP), deleted=False,
                                  exists=True))
    return states


def ms_per_chunk(serialize: Callable[[Any], Any], states: list[RecordState], repeat: int,
                 chunks: int) -> list[float]:
    setattr(records, "to_wire", serialize)  # noqa: B010 (what encode_item calls per attribute)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(chunks):
            for i, state in enumerate(states):
                records.encode_item("u#bench", "todos", f"k{i}", state, "client:1")
        times.append((time.perf_counter() - start) * 1000 / chunks)
    setattr(records, "to_wire", codec.to_wire)  # noqa: B010
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--chunks", type=int, default=20)
    args = p.parse_args()
    states = chunk_states()
    sides: dict[str, list[float]] = {"codec.Serializer": [], "plain TypeSerializer": []}
    for _ in range(2):  # alternate, so a burst of other work on the machine hits both
        sides["codec.Serializer"] += ms_per_chunk(codec.to_wire, states, args.repeat,
                                                  args.chunks)
        sides["plain TypeSerializer"] += ms_per_chunk(TypeSerializer().serialize, states,
                                                      args.repeat, args.chunks)
    for name, times in sides.items():
        print(f"{name:22s} encode_item x 99: median {statistics.median(times):5.2f} ms, "
              f"fastest {min(times):5.2f} ms per chunk")
    ratio = statistics.median(sides["plain TypeSerializer"]) / statistics.median(
        sides["codec.Serializer"])
    print(f"plain TypeSerializer / codec.Serializer: {ratio:.2f}x")


if __name__ == "__main__":
    main()
