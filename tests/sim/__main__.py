"""Replay seeded histories: `python -m tests.sim --seed 17` prints one history and its
verdict; `--seeds 0-999` runs a range and prints one line per seed and the totals.
`--browser`: the browser tier's histories (tests/sim/browser.py), in Chromium."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable

from server.dynamo_local import DynamoDBLocal
from tests.sim.known import REPORT_APART
from tests.sim.model import History, Outcome
from tests.sim.world import run_history, summary, totals

STEPS = 30  # per history, the CPython tiers


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int, help="replay one seed, printing its history")
    group.add_argument("--seeds", type=seed_range, help="a range of seeds, e.g. 0-999")
    parser.add_argument("--steps", type=int,
                        help=f"steps per history ({STEPS}; the browser tier: 40)")
    parser.add_argument("--browser", action="store_true",
                        help="the browser tier: 3 Chromium contexts (tests/sim/browser.py)")
    parser.add_argument("--json", help="write the totals to this file")
    parser.add_argument("--tolerate-known", action="store_true",
                        help="count the known defect shapes of tests/sim/known.py apart")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    if args.seed is None:
        # A round cut short by a crash logs its traceback (the database closed under it):
        # expected here, and noise over a thousand histories.
        logging.getLogger("pysync").setLevel(logging.CRITICAL)
    runs: list[tuple[History, Outcome]] = []
    started = time.monotonic()

    def report(history: History, outcome: Outcome) -> None:
        runs.append((history, outcome))
        print(summary(history, outcome), flush=True)
        for problem in outcome.problems + outcome.known:
            print("   ", problem, flush=True)
        if args.browser and args.seed is None and not outcome.ok:
            # A browser replay is not exact (its timing is the browser's): keep the history.
            print("\n".join(history.lines), flush=True)
        if args.seed is not None:
            print("faults:", dict(history.faults), "ops:", dict(history.ops))

    with DynamoDBLocal() as local:
        if args.browser:
            run_browser(local, seeds, args.steps, args.seed is not None, report,
                        REPORT_APART if args.tolerate_known else frozenset())
        else:
            for seed in seeds:
                report(*run_history(
                    seed, local, args.steps or STEPS, verbose=args.seed is not None,
                    tolerate=REPORT_APART if args.tolerate_known else frozenset()))
    result = totals(runs)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["seeds"] = f"{seeds[0]}-{seeds[-1]}"
    result["tier"] = "browser" if args.browser else "cpython"
    print(json.dumps(result, default=dict, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, default=dict, indent=1)
    return 1 if result["failed"] else 0


def run_browser(local: DynamoDBLocal, seeds: list[int], steps: int | None, verbose: bool,
                report: Callable[[History, Outcome], None], tolerate: frozenset[str]) -> None:
    """The browser tier's histories, one Chromium and 3 contexts for all of them."""
    from playwright.sync_api import sync_playwright

    from tests.sim.browser import LONG_STEPS, Lab, launched, run_browser_history

    with sync_playwright() as playwright, launched(playwright) as browser:
        lab = Lab(browser, local)
        try:
            for seed in seeds:
                try:
                    report(*run_browser_history(lab, seed, steps or LONG_STEPS,
                                                verbose=verbose, tolerate=tolerate))
                except Exception as e:
                    # The driver failed (a page that did not boot in time, say): a failed
                    # history, reported; the next one starts on new contexts.
                    traceback.print_exc()
                    outcome = Outcome()
                    outcome.flag("driver_error", f"{type(e).__name__}: {e}"[:600])
                    report(History(seed, {}), outcome)
                    lab.close()
                    lab = Lab(browser, local)
        finally:
            lab.close()


if __name__ == "__main__":
    sys.exit(main())
