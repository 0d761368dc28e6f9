"""Benchmark (not a test): the demo's time to interactive next to a bare `loadPyodide()`.

    python -m tests.bench.boot_bench [--rounds 5] [--warm 2]

Time to interactive is the demo's page (index.html) from navigation start until its data is
shown and its inputs are enabled (demo.py sets `body[data-ready]`). The baseline, in the same
run, from the same origin and server, is a page that does nothing but `loadPyodide()` of the
same bundle. Each round measures, alternating the two so both see the same machine load:

- cold: a fresh browser context (no HTTP cache, no service worker, no snapshot);
- warm: reloads of that page in the same context (HTTP cache, and for the demo its service
  worker and Pyodide memory snapshot once the cold boot has stored them);
- offline (demo only): a reload with the context offline, served by the service worker.

The breakdown comes from the page's own `performance` marks (boot.js marks each step; for a
page without marks, each change of the status line is a mark), as each step's share of the
time to interactive.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from starlette.applications import Starlette

from server.assets import ensure_pysync_wheel
from server.static import static_routes
from tests.e2e.conftest import BOOT_TIMEOUT_MS, CHROMIUM, CHROMIUM_ARGS
from tests.support import serve

BARE_PATH = "/bench-bare-pyodide.html"
# The baseline page: served by the benchmark itself (a route) at a URL of the same origin, so
# its Pyodide files come from the same server and the same HTTP cache as the demo's.
BARE_HTML = """<!doctype html><meta charset="utf-8"><title>bare</title>
<script type="module">
import { loadPyodide } from "/pyodide/pyodide.mjs";
await loadPyodide({ indexURL: "/pyodide/" });
window.benchReadyAt = performance.now();
</script>"""

# Marks every change of the status line and the moment the demo is ready, from navigation
# start: works for any version of the page, with or without boot.js's own marks.
OBSERVE = """
document.addEventListener("readystatechange", () => {
  if (document.readyState !== "interactive") return;  // parsed; module scripts not yet run
  const status = document.getElementById("status");
  const mark = () => performance.mark("status: " + status.textContent.replace(/[0-9]+/g, "N"));
  if (status) new MutationObserver(mark)
    .observe(status, { childList: true, characterData: true, subtree: true });
  new MutationObserver(() => {
    if (document.body.dataset.ready && window.benchReadyAt === undefined)
      window.benchReadyAt = performance.now();
  }).observe(document.body, { attributes: true });
});
"""

READY = "window.benchReadyAt !== undefined"
MARKS = """() => performance.getEntriesByType("mark").map((m) => [m.name, m.startTime])"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, browser: Browser, url: str) -> None:
        self.browser = browser
        self.url = url
        self.times: dict[str, list[float]] = defaultdict(list)
        self.steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.failures: dict[str, str] = {}

    def context(self) -> BrowserContext:
        context = self.browser.new_context()
        context.route(f"**{BARE_PATH}", lambda route: route.fulfill(
            status=200, content_type="text/html", body=BARE_HTML))
        context.add_init_script(OBSERVE)
        return context

    def load(self, page: Page, label: str, path: str | None) -> None:
        if path is None:
            page.reload()
        else:
            page.goto(f"{self.url}{path}")
        page.wait_for_function(READY, timeout=BOOT_TIMEOUT_MS, polling=20)
        ready = float(page.evaluate("window.benchReadyAt"))
        self.times[label].append(ready)
        marks: list[tuple[str, float]] = [(n, float(t)) for n, t in page.evaluate(MARKS)]
        self.record_steps(label, marks, ready)

    def record_steps(self, label: str, marks: list[tuple[str, float]], ready: float) -> None:
        """Each step's time: from its mark to the next one (the last to ready)."""
        own = [(n.removeprefix("pysync:"), t) for n, t in marks if n.startswith("pysync:")]
        marks = own or [(n, t) for n, t in marks if n.startswith("status: ")]
        if not marks:
            return
        marks = [("page and boot script", 0.0), *sorted(marks, key=lambda m: m[1])]
        for (name, start), (_, end) in zip(marks, [*marks[1:], ("ready", ready)], strict=True):
            self.steps[label][name].append(end - start)

    def settle(self, page: Page) -> None:
        """Let the cold boot finish its background work (the snapshot stored, the service
        worker installed) before the warm reloads, as a user's next visit would find it."""
        page.evaluate("async () => { await window.pysyncBoot?.settled; }")

    def round(self, warm: int) -> None:
        context = self.context()
        page = context.new_page()
        self.load(page, "bare cold", BARE_PATH)
        for _ in range(warm):
            self.load(page, "bare warm", None)
        context.close()

        context = self.context()
        page = context.new_page()
        self.load(page, "demo cold", "/")
        self.settle(page)
        for _ in range(warm):
            self.load(page, "demo warm", None)
        context.set_offline(True)
        try:
            self.load(page, "demo offline", None)
        except PlaywrightError as e:  # no service worker: the reload fails
            self.failures["demo offline"] = str(e).splitlines()[0]
        context.set_offline(False)
        context.close()


def report(bench: Bench, rounds: int, version: str) -> None:
    t = {label: median(values) for label, values in bench.times.items()}
    print(f"Boot benchmark (Chromium {version}; {rounds} rounds, medians; the demo's time to "
          f"interactive next to a bare loadPyodide() of the same bundle from the same origin)")
    for label in ("bare cold", "bare warm", "demo cold", "demo warm", "demo offline"):
        if label in t:
            print(f"  {label:13}: {t[label]:7.0f} ms  (n={len(bench.times[label])})")
        elif label in bench.failures:
            print(f"  {label:13}: failed ({bench.failures[label]})")
    targets = (("cold", "bare cold", 1.5), ("warm", "bare warm", 0.5),
               ("offline", "bare warm", 0.5))
    for kind, base, target in targets:
        if f"demo {kind}" in t:
            ratio = t[f"demo {kind}"] / t[base]
            print(f"  demo {kind:7} / {base}: {ratio:.2f}x  (target <= {target}x)")
    for label in ("demo cold", "demo warm", "demo offline"):
        steps = bench.steps.get(label)
        if not steps:
            continue
        total = t[label]
        print(f"  {label} by step (median ms, share of time to interactive):")
        for name, values in steps.items():
            ms = median(values)
            print(f"    {name[:60]:60} {ms:7.0f} ms  {ms / total:5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=2, help="warm reloads per round")
    args = parser.parse_args()
    ensure_pysync_wheel()
    with serve(Starlette(routes=static_routes())) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        bench = Bench(browser, url)
        for _ in range(args.rounds):
            bench.round(args.warm)
        version = browser.version
        browser.close()
    report(bench, args.rounds, version)


if __name__ == "__main__":
    main()

