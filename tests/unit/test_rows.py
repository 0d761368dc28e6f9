"""Record rows: local writes, push results and server changes. Pure logic on CPython."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pysync.outbox import Entry
from pysync.protocol import MutationResult, ServerRecord
from pysync.rows import RecordRow, acknowledged, local_write, server_change, unconfirmed
from pysync.schema import Collection, Index

TODOS = Collection("todos", indexes=(Index("by_done", "done"),
                                     Index("by_title", "title", unique=True)))


def written(row: RecordRow | None, op: str, value: dict[str, Any] | None, order: int = 1,
            hlc: str = "h1") -> tuple[RecordRow | None, Entry | None]:
    out = local_write(row, "todos", "t1", op, value, hlc, order)  # type: ignore[arg-type]
    return out.row, out.put_entry


def synced(value: dict[str, Any], version: int = 3) -> RecordRow:
    row = server_change(None, ServerRecord("todos", "t1", version, False, value, "s1"), [])
    assert row is not None
    return row


def test_a_new_put_makes_a_pending_row_and_an_entry() -> None:
    row, e = written(None, "put", {"title": "Milk"})
    assert row is not None
    assert e is not None
    assert (row.value, row.entries, row.version, e.op, e.base_version) == \
        ({"title": "Milk"}, 1, None, "put", None)


def test_every_field_is_stamped_by_its_write() -> None:
    row, _ = written(None, "put", {"a": 1, "b": 2}, hlc="h1")
    assert row is not None
    row, _ = written(row, "patch", {"b": 3}, hlc="h2")
    assert row is not None
    assert row.stamps == {"a": "h1", "b": "h2"}


def test_an_edit_of_a_synced_record_is_based_on_its_version() -> None:
    _, e = written(synced({"title": "Milk"}, version=3), "patch", {"done": True})
    assert e is not None
    assert e.base_version == 3


def test_deleting_an_unsynced_new_record_leaves_no_row() -> None:
    row, _ = written(None, "put", {"title": "Milk"})
    out = local_write(row, "todos", "t1", "delete", None, "h2", 2)
    assert out.row is None
    assert out.drop_entry == 1


def test_deleting_a_synced_record_keeps_a_pending_tombstone() -> None:
    row, e = written(synced({"title": "Milk"}), "delete", None)
    assert row is not None
    assert e is not None
    assert row.value is None
    assert e.op == "delete"
    assert row.server_value == {"title": "Milk"}


def test_applied_ack_confirms_the_write_with_the_new_version() -> None:
    row, e = written(None, "put", {"title": "Milk"})
    assert row is not None
    assert e is not None
    done = acknowledged(row, e, MutationResult(1, "applied", version=1), [])
    assert done is not None
    assert (done.value, done.version, done.entries, done.pending) == \
        ({"title": "Milk"}, 1, 0, None)


def test_rejected_ack_reverts_to_the_confirmed_copy() -> None:
    row, e = written(synced({"title": "Milk"}), "patch", {"title": "Eggs"})
    assert row is not None
    assert e is not None
    done = acknowledged(row, e, MutationResult(1, "rejected", error_code="x"), [])
    assert done is not None
    assert done.value == {"title": "Milk"}
    assert done.entries == 0


def test_conflict_stores_the_server_record_under_later_local_edits() -> None:
    row, first = written(synced({"title": "Milk", "n": 1}), "patch", {"n": 2}, order=1)
    assert row is not None
    assert first is not None
    # the first entry goes on the wire; a second edit is then a separate pending entry
    row = RecordRow(**{**row.__dict__, "pending": None})
    row, second = written(row, "patch", {"title": "Eggs"}, order=2, hlc="h2")
    assert row is not None
    assert second is not None
    assert second.chained
    server = ServerRecord("todos", "t1", 5, False, {"title": "Bread", "n": 9}, "s5")
    done = acknowledged(row, first, MutationResult(1, "conflict", server=server), [second])
    assert done is not None
    assert (done.value, done.version, done.entries) == ({"title": "Eggs", "n": 9}, 5, 1)


def test_a_duplicate_ack_with_the_record_confirms_the_servers_copy() -> None:
    # the first answer (lost) was a conflict: the local edit never reached the record
    row, e = written(synced({"title": "Milk"}), "patch", {"title": "Eggs"})
    assert row is not None
    assert e is not None
    server = ServerRecord("todos", "t1", 5, False, {"title": "Bread"}, "s5")
    done = acknowledged(row, e, MutationResult(1, "duplicate", server=server), [])
    assert done is not None
    assert (done.value, done.version, done.stale, done.entries) == \
        ({"title": "Bread"}, 5, False, 0)


def test_a_duplicate_ack_without_the_record_waits_for_the_pull() -> None:
    row, e = written(synced({"title": "Milk"}), "patch", {"title": "Eggs"})
    assert row is not None
    assert e is not None
    done = acknowledged(row, e, MutationResult(1, "duplicate"), [])
    assert done is not None
    assert done.value == {"title": "Eggs"}
    assert done.stale


def test_an_older_server_version_changes_nothing() -> None:
    row = synced({"title": "Milk"}, version=4)
    stale = ServerRecord("todos", "t1", 3, False, {"title": "Old"}, "s3")
    assert server_change(row, stale, []) == row


def test_pending_local_edits_stay_visible_over_a_server_change() -> None:
    row, e = written(synced({"title": "Milk", "done": False}), "patch", {"done": True})
    assert row is not None
    assert e is not None
    change = ServerRecord("todos", "t1", 4, False, {"title": "Oat milk", "done": False}, "s4")
    after = server_change(row, change, [e])
    assert after is not None
    assert (after.value, after.version, after.server_value) == \
        ({"title": "Oat milk", "done": True}, 4, {"title": "Oat milk", "done": False})


def test_a_server_delete_under_a_pending_patch_hides_the_record() -> None:
    row, e = written(synced({"title": "Milk"}), "patch", {"done": True})
    assert row is not None
    assert e is not None
    gone = ServerRecord("todos", "t1", 4, True, None, "s4")
    after = server_change(row, gone, [e])
    assert after is not None
    assert after.value is None
    assert after.entries == 1


def test_a_row_survives_its_stored_form() -> None:
    row, _ = written(synced({"title": "Milk", "b": b"\x01"}), "patch", {"done": True})
    assert row is not None
    assert RecordRow.from_row(row.to_row(TODOS)) == row


def test_a_live_row_carries_one_index_key_per_index_and_unique_keys() -> None:
    stored = synced({"title": "Milk", "done": False}).to_row(TODOS)
    assert stored["l"] == ["todos", "t1"]
    assert stored["ix"] == [["todos", "by_done", 2, 0, "t1"],
                            ["todos", "by_title", 4, "Milk", "t1"]]
    assert stored["ux"] == [["todos", "by_title", 4, "Milk"]]


def test_a_deleted_row_is_in_no_index() -> None:
    row, _ = written(synced({"title": "Milk"}), "delete", None)
    assert row is not None
    stored = row.to_row(TODOS)
    assert "l" not in stored
    assert "ix" not in stored
    assert "ux" not in stored


def test_a_put_after_a_pending_patch_replaces_it_even_without_the_patched_field() -> None:
    row, _ = written(synced({"title": "Milk"}), "patch", {"done": True}, order=1)
    row, e = written(row, "put", {"title": "Eggs"}, order=2, hlc="h2")
    assert row is not None
    assert e is not None
    assert (e.order, e.op, e.value, row.value) == (1, "put", {"title": "Eggs"}, {"title": "Eggs"})


def test_a_pending_patch_hidden_by_a_server_delete_is_still_sent_as_it_was() -> None:
    row, e = written(synced({"title": "Milk"}), "patch", {"done": True})
    assert row is not None
    assert e is not None
    gone = server_change(row, ServerRecord("todos", "t1", 4, True, None, "s4"), [e])
    assert gone is not None
    assert gone.value is None
    pending = gone.pending_entry()
    assert pending is not None
    assert (pending.op, pending.value) == ("patch", {"done": True})


# --- a resync (after a reset): the confirmed copy awaits the server's confirmation ---

def awaiting_resync(value: dict[str, Any], version: int = 3) -> RecordRow:
    return replace(synced(value, version), resync=True)


def test_the_resync_mark_is_stored_with_the_row() -> None:
    row = awaiting_resync({"title": "Milk"})
    assert RecordRow.from_row(row.to_row(TODOS)) == row
    assert "rs" not in synced({"title": "Milk"}).to_row(TODOS)


def test_a_server_change_confirms_a_row_awaiting_a_resync_even_at_a_lower_version() -> None:
    # After the server's tables were re-created, versions start again from 1.
    row = server_change(awaiting_resync({"title": "old"}, version=7),
                        ServerRecord("todos", "t1", 1, False, {"title": "new"}, "s2"), [])
    assert row is not None
    assert (row.value, row.version, row.resync) == ({"title": "new"}, 1, False)


def test_a_local_edit_keeps_the_resync_mark_and_an_applied_push_clears_it() -> None:
    row, e = written(awaiting_resync({"title": "Milk"}), "patch", {"done": True})
    assert row is not None
    assert e is not None
    assert row.resync
    done = acknowledged(row, e, MutationResult(1, "applied", version=4), [])
    assert done is not None
    assert not done.resync


def test_a_rejected_push_leaves_the_row_awaiting_the_resync() -> None:
    row, e = written(awaiting_resync({"title": "Milk"}), "patch", {"done": True})
    assert row is not None
    assert e is not None
    done = acknowledged(row, e, MutationResult(1, "rejected", error_code="x"), [])
    assert done is not None
    assert done.resync


def test_an_unconfirmed_record_without_local_edits_goes() -> None:
    assert unconfirmed(awaiting_resync({"title": "Milk"}), []) is None


def test_an_unconfirmed_record_keeps_a_pending_put_as_a_record_the_server_never_saw() -> None:
    row, e = written(awaiting_resync({"title": "Milk"}), "put", {"title": "Oat milk"})
    assert row is not None
    assert e is not None
    out = unconfirmed(row, [e])
    assert out is not None
    assert (out.value, out.version, out.server_value, out.entries, out.resync) == \
        ({"title": "Oat milk"}, None, None, 1, False)


def test_an_unconfirmed_record_hides_a_pending_patch_as_a_server_delete_does() -> None:
    row, e = written(awaiting_resync({"title": "Milk"}), "patch", {"done": True})
    assert row is not None
    assert e is not None
    out = unconfirmed(row, [e])
    assert out is not None
    assert out.value is None
    assert out.entries == 1
