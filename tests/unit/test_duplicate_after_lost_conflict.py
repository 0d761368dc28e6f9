"""A defect found by the browser tier of the simulation (seed 120 of make sim-browser, and
CPython seeds 1305 and 1922; docs/reliability.md), on the real store over the in-memory twin.

A `version` write is pushed with a base the server has moved past (a pull brought the new
version after the write was made): the server answers `conflict`, and that answer is lost (the
page reloads). Sent again, the mutation is answered `duplicate`. A bare duplicate carries no
version: the store took it for "applied, version unknown", showed the refused write as the
server's copy and waited for a pull that never came (the device already had the current
version), so a later edit of the record was held in the outbox forever. The server now
answers a duplicate with the record as it is (server/push.py), and the store takes it as it
takes a conflict's record.
"""

from __future__ import annotations

import asyncio

import pysync
from pysync.memdb import MemoryStorage
from pysync.protocol import MutationResult, PushResponse, ServerRecord
from pysync.replica import Replica
from pysync.schema import Collection, Schema

SCHEMA = Schema(Collection("accounts", strategy="version"))


def test_a_duplicate_answer_after_a_lost_conflict_does_not_hold_later_edits_forever() -> None:
    async def main() -> tuple[object, int, int]:
        db = await pysync.open_database("dup", SCHEMA, storage=MemoryStorage())
        replica = Replica(db)
        accounts = db.collection("accounts")
        await replica.apply_server_changes([ServerRecord("accounts", "k", 1, False, {"n": 1}, "1")])
        await accounts.put("k", {"n": 2})  # based on version 1
        current = ServerRecord("accounts", "k", 2, False, {"n": 3}, "2")
        await replica.apply_server_changes([current],
                                      complete=True)  # a pull brings version 2 meanwhile
        [sent] = (await replica.take()).mutations
        assert sent.base_version == 1
        # The server answered conflict (it has version 2); the answer never arrived.
        await replica.release()
        await replica.take()  # sent again, with the same id
        await replica.acknowledge(PushResponse(sent.id, (
            MutationResult(sent.id, "duplicate", server=current),)))
        await replica.apply_server_changes([], complete=True)  # the pulls bring nothing new
        shown = await accounts.get("k")
        await accounts.delete("k")
        taken = len((await replica.take()).mutations)
        return shown, taken, await db.pending_count()

    shown, taken, pending = asyncio.run(main())
    # The server never applied {"n": 2}; the delete must go out (to be answered by the server).
    assert shown == {"n": 3}
    assert (taken, pending) == (1, 1)
