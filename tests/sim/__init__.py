"""Seeded simulation: several real Database + SyncClient devices on the in-memory IndexedDB
twin against the real server app, its change feed and DynamoDB Local, with faults, and
Jepsen-style accounting of every acknowledged write. See docs/reliability.md.

    python -m tests.sim --seed 17          # replay one history, printing it
    python -m tests.sim --seeds 0-999      # a range (the long tier)
    python -m tests.sim --browser --seed 120   # the browser tier (tests/sim/browser.py)
"""
