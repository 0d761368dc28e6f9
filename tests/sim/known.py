"""Known defects the simulation finds that are being fixed elsewhere, tolerated in the fast
tier ONLY through this switch, so `make test` stays green while the fix is under way.

Each entry names a defect shape the checker recognises (tests/sim/model.py); a history whose
only violations have that shape passes, and the violations are counted and printed as
`known:<name>`. The long tier (`make sim`) and `python -m tests.sim` tolerate nothing unless
told (`--tolerate-known`). REMOVE an entry as soon as the fix is merged.

- stale-delete-after-reset: after a pull reset (log retention passed, store epoch moved), a
  record deleted on the server while the device's cursor was stale stays on the device (the
  reset's snapshot lists live records only and the device keeps what it does not mention).
  Being fixed in pysync/store.py / pysync/client.py (reset handling). Replay: seed 5, 7.
"""

from __future__ import annotations

from tests.sim.model import STALE_DELETE_AFTER_RESET

FAST_TIER_TOLERATES: frozenset[str] = frozenset({STALE_DELETE_AFTER_RESET})
