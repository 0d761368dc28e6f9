"""`python -m tests.bench` (or `make bench`): run every benchmark, one after the other.

Each prints its figures next to a baseline measured in the same run, as a ratio. Benchmarks are
not tests: nothing here asserts a time. `python -m tests.bench NAME...` runs only those.
"""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ("idb_bench", "codec_bench", "push_bench", "feed_bench", "latency_bench", "load_bench",
              "cost_bench", "dynamo_ops_bench", "boot_bench", "first_sync_bench")


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        print(f"\n=== {name} ===", flush=True)
        runpy.run_module(f"tests.bench.{name}", run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
