"""A big sliced write on the browser's real IndexedDB: the helper issues it a slice at a
time (pysync/idb_helper.js), and the transaction still behaves as one: requests in the order
Python issued them, all or nothing. Driven from Python in the page through pysync.idb."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.e2e.conftest import run_py

OPEN = """
from pysync import idb
from pysync.errors import ConstraintViolation
from pysync.layout import UPGRADES
await idb.delete_database(%(name)r)
conn = await idb.Connection.open(%(name)r, 1, UPGRADES)
rows = [{"k": ["c", f"k{i:05d}"], "v": "{}", "l": ["c", f"k{i:05d}"]} for i in range(1000)]
None
"""


def test_reads_and_writes_after_a_big_write_see_it_in_order(app_page: Page) -> None:
    out = run_py(app_page, OPEN % {"name": "bulk-order"} + """
tx = conn.transaction(["records", "meta"], "readwrite")
seen = []
def after(results):
    seen.extend([results[0], results[1]["k"][1]])
    tx.write([("records", "delete", [["c", "k00000"]])])  # after the rest of the slices
    tx.read([idb.count("records")], lambda r: seen.append(r[0]))
tx.write([("records", "put", rows[:600]), ("meta", "put", [{"k": "x", "v": 1}]),
          ("records", "put", idb.encode_rows(rows[600:]))], sliced=True)
tx.read([idb.count("records"), idb.get("records", ["c", "k00999"])], after)
await tx.done()
check = conn.transaction(["records"], "readonly")
seen_after = []
check.read([idb.count("records"), idb.count("records", "live")], seen_after.extend)
await check.done()
conn.close()
[seen, seen_after]
""")
    assert out == [[1000, "k00999", 999], [999, 999]]


def test_a_big_write_that_fails_in_a_later_slice_writes_nothing(app_page: Page) -> None:
    out = run_py(app_page, OPEN % {"name": "bulk-abort"} + """
bad = [dict(r, ux=[["c", "u", 1]]) for r in rows[900:902]]  # one unique key, twice
tx = conn.transaction(["records"], "readwrite")
tx.write([("records", "put", rows[:900] + bad)], sliced=True)
try:
    await tx.done()
    error = None
except ConstraintViolation as e:
    error = type(e).__name__
check = conn.transaction(["records"], "readonly")
count = []
check.read([idb.count("records")], count.extend)
await check.done()
conn.close()
[error, count[0]]
""")
    assert out == ["ConstraintViolation", 0]
