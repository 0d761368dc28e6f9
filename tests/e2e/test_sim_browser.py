"""The browser tier of the seeded simulation (tests/sim/browser.py, docs/reliability.md): 3
Chromium contexts on the real IndexedDB against the real server over HTTP, with offline
toggles, reloads, pages closed mid-push, lost requests and answers, and writes by another
program; judged by the same accounting as the CPython tiers (tests/sim/model.py).

A few short histories run with the suite; the long tier (`-m sim_long`, or `make
sim-browser`) runs PYSYNC_SIM_BROWSER_SEEDS (100-129 by default). A failing seed prints
its replay command."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from server.dynamo_local import DynamoDBLocal
from tests.sim.browser import FAST_STEPS, LONG_STEPS, Lab, run_browser_history
from tests.sim.world import summary

pytestmark = pytest.mark.dynamodb

# Short histories that between them close a page at both points of a push, reload one and
# have another program write (tests/sim/browser.py draws them from the seed).
FAST_SEEDS = (3, 20)


def _long_seeds() -> range:
    first, _, last = os.environ.get("PYSYNC_SIM_BROWSER_SEEDS", "100-129").partition("-")
    return range(int(first), int(last or first) + 1)


@pytest.fixture(scope="module")
def lab(browser: Browser, dynamodb_local: DynamoDBLocal) -> Iterator[Lab]:
    """3 contexts with a booted page each, shared by the module's histories."""
    lab = Lab(browser, dynamodb_local)
    yield lab
    lab.close()


def _check(lab: Lab, seed: int, steps: int) -> None:
    history, outcome = run_browser_history(lab, seed, steps)
    print(summary(history, outcome))
    assert outcome.ok, (f"{summary(history, outcome)}\n" + "\n".join(outcome.problems)
                        + "\n" + "\n".join(history.lines)
                        + f"\nreplay: python -m tests.sim --browser --seed {seed} "
                          f"--steps {steps}")


@pytest.mark.parametrize("seed", FAST_SEEDS, ids=lambda s: f"seed={s}")
def test_a_seeded_browser_history_converges_with_every_acknowledged_write_accounted_for(
        seed: int, lab: Lab) -> None:
    _check(lab, seed, FAST_STEPS)


@pytest.mark.sim_long
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", _long_seeds(), ids=lambda s: f"seed={s}")
def test_long_tier_browser_history_converges(seed: int, lab: Lab) -> None:
    _check(lab, seed, LONG_STEPS)
