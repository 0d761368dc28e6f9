"""Benchmark (not a test): pysync's IndexedDB writes vs raw JS IndexedDB, in one page.

    python -m tests.bench.idb_bench [--records 10000] [--singles 200] [--rounds 3]

The raw JS baseline writes the same bytes pysync writes: for every record, the record row
(value as JSON text, computed index keys) and the outbox entry, built by pysync before the
clock starts, into a database with the same stores and indexes; one transaction for the bulk
write, one transaction per record for single writes. pysync additionally checks (single
writes: reads and compares inside the same transaction, without waiting for the read) or reads
(bulk: which keys exist) each record and the writer meta row, and writes the writer row: the
baseline does neither.
"""

from __future__ import annotations

import argparse
import statistics

from playwright.sync_api import Page, sync_playwright
from starlette.applications import Starlette

from server.assets import ensure_pysync_wheel
from server.static import static_routes
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, run_py
from tests.support import serve

RAW_JS = r"""
window.rawBench = (() => {
  const open = (name, upgrades) => new Promise((ok, ko) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const db = req.result, tx = req.transaction;
      for (const [op, a, b, c, d] of upgrades["1"]) {
        if (op === "createStore") db.createObjectStore(a, b);
        else tx.objectStore(a).createIndex(b, c, d);
      }
    };
    req.onsuccess = () => ok(req.result);
    req.onerror = () => ko(req.error);
  });
  const fresh = async (name, upgrades) => {
    await new Promise((ok) => { const r = indexedDB.deleteDatabase(name); r.onsuccess = ok; });
    return open(name, upgrades);
  };
  const write = (db, records, entries) => new Promise((ok, ko) => {
    const tx = db.transaction(["records", "outbox"], "readwrite");
    const rs = tx.objectStore("records"), os = tx.objectStore("outbox");
    for (let i = 0; i < records.length; i++) { rs.put(records[i]); os.add(entries[i]); }
    tx.oncomplete = ok; tx.onabort = () => ko(tx.error);
  });
  return {
    async bulk(name, upgradesJson, recordsJson, entriesJson) {
      const upgrades = JSON.parse(upgradesJson);
      const records = JSON.parse(recordsJson), entries = JSON.parse(entriesJson);
      const db = await fresh(name, upgrades);
      const t0 = performance.now();
      await write(db, records, entries);
      const ms = performance.now() - t0;
      db.close();
      return ms;
    },
    async singles(name, upgradesJson, recordsJson, entriesJson) {
      const upgrades = JSON.parse(upgradesJson);
      const records = JSON.parse(recordsJson), entries = JSON.parse(entriesJson);
      const db = await fresh(name, upgrades);
      const out = [];
      for (let i = 0; i < records.length; i++) {
        const t0 = performance.now();
        await write(db, [records[i]], [entries[i]]);
        out.push(performance.now() - t0);
      }
      db.close();
      return out;
    },
  };
})();
"""

SETUP = """
import json, time, js
import pysync
from pysync import Schema, Collection, Index
from pysync.layout import UPGRADES
from pysync.rows import local_write

SCHEMA = Schema(Collection("todos", indexes=(Index("by_done", "done"),
                                             Index("by_list", "list", "rank"))))
DECL = SCHEMA.get("todos")

def items(n, prefix):
    return [(f"{prefix}{i:06d}", {"title": f"Buy item number {i}", "done": i % 2 == 0,
                                  "list": ["home", "work", "misc"][i % 3], "rank": i,
                                  "notes": "x" * 40}) for i in range(n)]

def raw_rows(pairs):
    # exactly what pysync stores for a first put of each record
    records, entries = [], []
    for order, (k, v) in enumerate(pairs, 1):
        out = local_write(None, "todos", k, "put", v, "001700000000000:000000:bench", order)
        records.append(out.row.to_row(DECL))
        entries.append(out.put_entry.to_row())
    return json.dumps(records), json.dumps(entries)

UPGRADES_JSON = json.dumps({str(k): [list(s) for s in v] for k, v in UPGRADES.items()})
None
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bulk_round(page: Page, n: int, r: int) -> tuple[float, float]:
    raw = run_py(page, f"""
records, entries = raw_rows(items({n}, "r"))
await js.rawBench.bulk("bench-raw-{r}", UPGRADES_JSON, records, entries)
""")
    ours = run_py(page, f"""
await pysync.delete_database("bench-py-{r}")
db = await pysync.open_database("bench-py-{r}", SCHEMA)
pairs = items({n}, "p")
t0 = js.performance.now()
await db.collection("todos").put_many(pairs)
ms = js.performance.now() - t0
assert await db.pending_count() == {n}
db.close()
ms
""")
    return float(raw), float(ours)


def bridge_floor(page: Page, n: int, chunk: int) -> list[float]:
    """Python-driven writes through pysync.idb with no pysync logic: the same two rows per
    transaction, issued from Python, completion awaited from Python. The floor set by
    Pyodide's bridge and event loop, not by the store."""
    return [float(x) for x in run_py(page, f"""
from pysync import idb
raw = await idb.Connection.open("bench-floor", 1, UPGRADES)
records, entries = raw_rows(items({n}, "f{chunk}-"))
records, entries = json.loads(records), json.loads(entries)
out = []
for r, e in zip(records, entries):
    e["o"] += {chunk} * 100000
    t0 = js.performance.now()
    tx = raw.transaction(["records", "outbox"], "readwrite")
    tx.write([("records", "put", [r]), ("outbox", "add", [e])])
    await tx.done()
    out.append(js.performance.now() - t0)
raw.close()
out
""")]


def singles_chunk(page: Page, n: int, chunk: int) -> tuple[list[float], list[float]]:
    raw = run_py(page, f"""
records, entries = raw_rows(items({n}, "s{chunk}-"))
list(await js.rawBench.singles("bench-raw-s{chunk}", UPGRADES_JSON, records, entries))
""")
    ours = run_py(page, f"""
db = await pysync.open_database("bench-py-s", SCHEMA)
todos = db.collection("todos")
out = []
for k, v in items({n}, "s{chunk}-"):
    t0 = js.performance.now()
    await todos.put(k, v)
    out.append(js.performance.now() - t0)
db.close()
out
""")
    return [float(x) for x in raw], [float(x) for x in ours]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ensure_pysync_wheel()
    with serve(Starlette(routes=static_routes())) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{url}/test.html")
        page.wait_for_function("window.pysyncTest !== undefined")
        page.evaluate("window.pysyncTest.ready")
        page.set_default_timeout(300_000)
        page.evaluate(RAW_JS)
        run_py(page, SETUP)
        run_py(page, 'await pysync.delete_database("bench-py-s")\n'
                     'await pysync.delete_database("bench-floor")')
        bulk_round(page, 500, 99)  # warm-up: JIT, first-open costs
        singles_chunk(page, 10, 99)
        # The machine may be shared: alternate raw and pysync, in rounds and in chunks.
        bulks = [bulk_round(page, args.records, r) for r in range(args.rounds)]
        raw_s: list[float] = []
        py_s: list[float] = []
        floor: list[float] = []
        chunks = 10
        for chunk in range(chunks):
            raw, ours = singles_chunk(page, args.singles // chunks, chunk)
            raw_s += raw
            py_s += ours
            floor += bridge_floor(page, args.singles // chunks, chunk)
        version = browser.version
        browser.close()
    n = args.records
    print(f"IndexedDB write benchmark (Chromium {version}; raw JS and pysync alternate in the "
          f"same page)")
    print(f"bulk write of {n} records, one transaction (record row + outbox entry each), "
          f"{args.rounds} rounds:")
    for label, pick in (("best", min), ("median", statistics.median)):
        raw_ms = pick(b[0] for b in bulks)
        py_ms = pick(b[1] for b in bulks)
        print(f"  {label:6}: raw JS {raw_ms:7.1f} ms ({n / raw_ms * 1000:5.0f}/s)   "
              f"pysync {py_ms:7.1f} ms ({n / py_ms * 1000:5.0f}/s)   "
              f"throughput ratio {raw_ms / py_ms:.2f}x"
              + ("  (target >= 0.9x)" if label == "median" else ""))
    print(f"single-record writes, {len(py_s)} sequential transactions each:")
    for label, pct in (("p50", 50.0), ("p95", 95.0)):
        raw_ms, ours_ms = percentile(raw_s, pct), percentile(py_s, pct)
        print(f"  {label}: raw JS {raw_ms:6.2f} ms   pysync {ours_ms:6.2f} ms   "
              f"ratio {ours_ms / raw_ms:.2f}x" + ("  (target <= 1.5x)" if label == "p50" else ""))
    f50 = percentile(floor, 50)
    print(f"  reference: the same two puts issued and awaited from Python via pysync.idb "
          f"(no store logic) p50 {f50:.2f} ms = {f50 / percentile(raw_s, 50):.2f}x raw JS")

if __name__ == "__main__":
    main()
