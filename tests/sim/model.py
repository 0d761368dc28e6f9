"""The accounting of one simulated history, and the reference model that judges it.

Pure Python, no I/O and no pysync.merge: the rules are restated here from the declared
strategies (docs/api.md), so a bug in the code under test cannot hide in the checker.

What is recorded while the history runs (tests/sim/world.py):
- every local write the app's API acknowledged (the call returned), with the HLC stamp the
  store gave it (the writer clock after the write);
- every mutation that went over the wire (each request body the network layer saw, whether
  it was then dropped, duplicated or delayed), and every verdict the server gave for it
  (each push response the server produced, including those the network then dropped);
- every write another program made with boto3 on the items table.

What is read after quiescing: every device's view, a fresh device's snapshot, the items
table (fields and `_v`, `_hlc`, `_fh`, `_del`, `_w`) and the change log (`v`, `d`, `h`, `w`
of every entry).

Invariants (each violation is counted under one name):
- divergent: a device's view, or a fresh snapshot, differs from the server's live records;
  or a device still has pending outbox entries.
- lost: a local write never went over the wire (no mutation of that client and record with
  a stamp at or after it), or a mutation got no verdict at all, or an applied mutation is
  neither in the final state nor overwritten by a later write under its strategy:
    version  the record's final `_v` is below the version the server gave the mutation, or
             equal to it and the final record is not the mutation's effect (nor its `_w`);
    lww      its effective stamp is newer than the final record's `_hlc`, or equal to it
             and the final record is not its effect;
    merge    per field it wrote: its stamp is newer than the final field stamp (`_fh`, or
             the newest tombstone for a field the record no longer has), or equal to it and
             the field does not hold its value; a put/patch newer than a final tombstone.
- duplicated: a mutation with two verdicts that are not `duplicate` (processed twice), a
  writer `<client_id>:<mutation_id>` on two log entries, two applied mutations with the same
  version of a record.
- resurrected: an applied delete whose record is live at the end although no write newer
  than the delete (by the strategy's order) exists.
- unauthorized: a mutation into a shared scope applied while its user was not an owner or
  editor of it (the memberships' history is the server's own answers to the member routes);
  forbidden: a mutation refused as `forbidden` while its user could write there.
- Shared scopes (docs/sharing.md): every record is judged in its scope (`u#<user>` or
  `s#<id>`). After quiescing a device holds exactly the scopes its user belongs to (the
  personal one and its memberships): each equals the server, and no row of any other scope
  is left on it (divergent otherwise). A write refused as `forbidden` is not acknowledged
  by the server, so it is not lost: one the server refused has that verdict; one the device
  dropped unsent with a revoked scope (reported to on_conflict as rejected/forbidden) is
  exempt only if its user could not write there at some moment between the write and the
  report.

A mutation whose effective stamp is not observable (the server replaced a stamp more than
60 s ahead by its own, and the log does not pin it down) is counted as `unverifiable` for
the stamp checks, never silently passed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Rec = tuple[str, str]  # (collection, key)
WRITERS = ("owner", "editor")
END = 1 << 62  # a seq after every event


def norm(value: Any) -> Any:
    """DynamoDB's numbers (Decimal) as the ints/floats a device holds, for comparison."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    return value


@dataclass
class LocalWrite:
    seq: int
    device: str
    client_id: str
    user: str
    collection: str
    key: str
    op: str
    value: dict[str, Any] | None
    stamp: str
    # A delete that sends nothing: of a record the device holds no copy of (never had it,
    # or already deleted it), or that the server never had as far as the device knew
    # (nothing confirmed, nothing in flight: the store drops the pending put).
    local_only: bool = False
    scope: str = ""  # the record's scope (DynamoDB pk): "" for the user's own, `u#<user>`

    @property
    def pk(self) -> str:
        return self.scope or f"u#{self.user}"


@dataclass
class Sent:
    client_id: str
    user: str
    id: int
    collection: str
    key: str
    op: str
    value: dict[str, Any] | None
    base_version: int | None
    hlc: str
    clamped: bool  # the stamp was > 60 s ahead of the server's clock when sent
    scope: str  # the record's scope (DynamoDB pk): `u#<user>` or `s#<id>`


@dataclass
class Verdict:
    seq: int
    client_id: str
    id: int
    status: str
    version: int | None
    error: str | None = None  # a rejection's code


@dataclass
class ExternalWrite:
    seq: int
    scope: str  # DynamoDB pk: `u#<user>` or `s#<id>`
    collection: str
    key: str
    kind: str  # put / update / delete
    field: str | None = None  # the one field an update sets (a put or delete: all of them)


@dataclass
class FinalItem:
    fields: dict[str, Any]
    deleted: bool
    version: int
    hlc: str
    fh: dict[str, str]
    writer: str


@dataclass
class LogEntry:
    collection: str
    key: str
    version: int
    deleted: bool
    hlc: str
    writer: str


@dataclass
class History:
    seed: int
    strategies: dict[str, str]
    local: list[LocalWrite] = field(default_factory=list)
    sent: dict[tuple[str, int], Sent] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    external: list[ExternalWrite] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    resets: Counter[str] = field(default_factory=Counter)  # device -> pulls answered reset
    # (device, scope pk, collection, key) of every delete a pull delivered to a device
    pulled_deletes: set[tuple[str, str, str, str]] = field(default_factory=set)
    ops: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)  # the printed history
    # Every membership change the server made (its 2xx answers to the member routes, whether
    # or not the device got them), in order: (seq, scope pk, user, role; None: removed).
    memberships: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # the shared scopes' ids
    # (seq, device, scope pk, collection, key) of each rejected/forbidden event a device saw
    forbidden: list[tuple[int, str, str, str, str]] = field(default_factory=list)

    def role_at(self, scope: str, user: str, seq: int) -> str | None:
        """`user`'s role in `scope` just before event `seq` (a personal scope: its owner)."""
        if scope == f"u#{user}":
            return "owner"
        role = None
        for s, sc, u, r in self.memberships:
            if s < seq and sc == scope and u == user:
                role = r
        return role

    def could_not_write(self, scope: str, user: str, first: int, last: int) -> bool:
        """Whether `user` was not a writer of `scope` at some moment between `first` and
        `last` (event seqs)."""
        moments = [first] + [s + 1 for s, sc, u, _ in self.memberships
                             if first < s < last and sc == scope and u == user]
        return any(self.role_at(scope, user, t) not in WRITERS for t in moments)


@dataclass
class Final:
    items: dict[str, dict[Rec, FinalItem]]  # scope pk -> record -> item
    log: dict[str, list[LogEntry]]  # scope pk -> entries in position order
    # device -> (user, scope pk -> view); every scope of the history, held or not
    views: dict[str, tuple[str, dict[str, dict[str, Any]]]]
    fresh: dict[str, dict[str, dict[str, Any]]]  # user -> scope pk -> a fresh snapshot
    pending: dict[str, int]  # device -> outbox entries left
    # device -> (scope pk, collection, key) of its outbox entries left
    stuck: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # user -> scope pks, read back
    held: dict[str, set[str]] = field(default_factory=dict)  # device -> pks it has rows of


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    tolerate: frozenset[str] = frozenset()
    known: list[str] = field(default_factory=list)  # violations of tolerated known defects

    def flag(self, kind: str, message: str, known: str | None = None) -> None:
        """Count a violation; one that matches the shape of a tolerated known defect is
        counted as `known:<name>` and listed apart, still printed, never silently passed."""
        if known is not None and known in self.tolerate:
            self.counts[f"known:{known}"] += 1
            self.known.append(f"known:{known} ({kind}): {message}")
            return
        self.counts[kind] += 1
        self.problems.append(f"{kind}: {message}")

    @property
    def ok(self) -> bool:
        return not self.problems


def server_view(items: dict[Rec, FinalItem]) -> dict[str, Any]:
    return {f"{c}/{k}": it.fields for (c, k), it in sorted(items.items()) if not it.deleted}


def judge(h: History, final: Final, tolerate: frozenset[str] = frozenset()) -> Outcome:
    """The verdict on a history. `tolerate`: names of known defects (tests/sim/known.py)
    whose violations are counted under `known:<name>` and do not fail the history."""
    out = Outcome(tolerate=tolerate)
    _convergence(h, final, out)
    applied = _verdicts(h, final, out)
    _authority(h, out)
    _local_writes(h, final, out)
    _effects(h, final, applied, out)
    return out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys
                     if a.get(k) != b.get(k))[:600]


# Shapes of known defects (tests/sim/known.py says which are tolerated where, and why).
STALE_DELETE_AFTER_RESET = "stale-delete-after-reset"
HELD_ENTRY_AFTER_RESET = "held-entry-after-reset"
VERSION_REUSE_AFTER_EXTERNAL_DELETE = "version-reuse-after-external-delete"


def _gone(final: Final, scope: str, rec: Rec) -> bool:
    item = final.items.get(scope, {}).get(rec)
    return item is None or item.deleted


def _held_after_reset(h: History, final: Final, device: str, scope: str, rec: Rec) -> bool:
    """The shape of HELD_ENTRY_AFTER_RESET: the device's pulls were reset, its entry on a
    record the server deleted is still in its outbox."""
    return bool(h.resets[device]) and (scope, *rec) in final.stuck.get(device, set()) \
        and _gone(final, scope, rec)


def _external_delete_between(h: History, scope: str, rec: Rec, after: int,
                             before: int | None = None) -> bool:
    return any(e.kind == "delete" and e.scope == scope and (e.collection, e.key) == rec
               and e.seq > after and (before is None or e.seq < before) for e in h.external)


def _convergence(h: History, final: Final, out: Outcome) -> None:
    for device, (user, views) in sorted(final.views.items()):
        _device_convergence(h, final, device, user, views, out)
    for user, views in sorted(final.fresh.items()):
        members = final.members.get(user, {f"u#{user}"})
        for scope, view in sorted(views.items()):
            expected = server_view(final.items.get(scope, {})) if scope in members else {}
            if view != expected:
                out.flag("divergent", f"fresh snapshot of {user} != server in {scope}: "
                                      f"{_diff(view, expected)}")
    for user, members in sorted(final.members.items()):
        answered = {f"u#{user}"} | {scope for scope in {m[1] for m in h.memberships}
                                    if h.role_at(scope, user, END)}
        if members != answered:
            out.flag("divergent", f"{user}'s memberships {sorted(members)} are not what the "
                                  f"server answered: {sorted(answered)}")


def _device_convergence(h: History, final: Final, device: str, user: str,
                        views: dict[str, dict[str, Any]], out: Outcome) -> None:
    """The device holds exactly its user's scopes, each equal to the server's, and nothing
    is left in its outbox."""
    members = final.members.get(user, {f"u#{user}"})
    for scope, view in sorted(views.items()):
        if scope not in members:
            if view:
                out.flag("divergent", f"{device} (user {user}) holds records of {scope}, "
                                      f"not a scope of its user: {sorted(view)}")
            continue
        expected = server_view(final.items.get(scope, {}))
        if view != expected:
            # The known defect's shape: after a reset, the device still holds records
            # the server deleted, and no pull ever brought it their delete (a device
            # that was told and kept the record anyway is another defect); nothing else
            # differs.
            extra = [k for k in view if view[k] != expected.get(k)]
            extra_only = all(k not in expected for k in extra) \
                and all(k in view and view[k] == v for k, v in expected.items())
            never_told = all((device, scope, *k.split("/", 1)) not in h.pulled_deletes
                             for k in extra)
            known = STALE_DELETE_AFTER_RESET if extra_only and never_told \
                and h.resets[device] else None
            out.flag("divergent", f"{device} (user {user}) != server in {scope}: "
                                  f"{_diff(view, expected)}", known)
    for scope in sorted(members - set(views)):
        if server_view(final.items.get(scope, {})):
            out.flag("divergent", f"{device} (user {user}) does not hold {scope}")
    left = sorted(final.held.get(device, set()) - members)
    if left:
        out.flag("divergent", f"{device} (user {user}) keeps rows of scopes it is not a "
                              f"member of: {left}")
    if final.pending.get(device):
        stuck = final.stuck.get(device, set())
        known = HELD_ENTRY_AFTER_RESET if stuck and all(
            _held_after_reset(h, final, device, s, (c, k)) for s, c, k in stuck) else None
        out.flag("divergent", f"{device} still has {final.pending[device]} outbox entries "
                              f"({sorted(stuck)})", known)


def _verdicts(h: History, final: Final, out: Outcome) -> dict[tuple[str, int], Verdict]:
    """The one real verdict of each mutation; duplicates and missing ones flagged."""
    by_id: dict[tuple[str, int], list[Verdict]] = defaultdict(list)
    for v in h.verdicts:
        by_id[(v.client_id, v.id)].append(v)
    applied: dict[tuple[str, int], Verdict] = {}
    for mid, m in sorted(h.sent.items()):
        real = [v for v in by_id.get(mid, []) if v.status != "duplicate"]
        # A retry into a scope its user may not write now is answered `forbidden` again
        # (docs/api.md), whatever the first answer was: it writes nothing, like a duplicate.
        real = real[:1] + [v for v in real[1:] if (v.status, v.error) != ("rejected",
                                                                          "forbidden")]
        if not real:
            out.flag("lost", f"mutation {m.client_id[:8]}:{m.id} ({m.op} {m.collection}/"
                             f"{m.key}) got no verdict from the server")
            continue
        if len(real) > 1:
            out.flag("duplicated", f"mutation {m.client_id[:8]}:{m.id} processed "
                                   f"{len(real)} times: {[v.status for v in real]}")
        if real[0].status == "applied":
            applied[mid] = real[0]
    for scope, entries in final.log.items():
        writers = Counter(e.writer for e in entries if e.writer and e.writer != "external")
        for writer, n in writers.items():
            if n > 1:
                out.flag("duplicated", f"writer {writer} on {n} log entries of {scope}")
    seen: dict[tuple[str, Rec, int], Verdict] = {}
    for mid, v in sorted(applied.items(), key=lambda kv: kv[1].seq):
        m = h.sent[mid]
        if v.version is None:
            continue
        rec = (m.collection, m.key)
        slot = (m.scope, rec, v.version)
        if slot in seen and not (m.op == "delete" and h.sent[_key(seen[slot])].op == "delete"):
            # (a delete that finds the record deleted writes nothing and answers "applied"
            # with the tombstone's version: the same version twice, one write)
            known = VERSION_REUSE_AFTER_EXTERNAL_DELETE if _external_delete_between(
                h, m.scope, rec, seen[slot].seq, v.seq) else None
            out.flag("duplicated", f"two mutations applied as version {v.version} of "
                                   f"{m.scope} {m.collection}/{m.key}", known)
        seen[slot] = v
    return applied


def _key(v: Verdict) -> tuple[str, int]:
    return (v.client_id, v.id)


def _authority(h: History, out: Outcome) -> None:
    """Each verdict against the user's role in the mutation's scope at that moment: applied
    needs owner or editor, `forbidden` needs the opposite."""
    for v in h.verdicts:
        m = h.sent.get((v.client_id, v.id))
        if m is None or v.status not in ("applied", "rejected"):
            continue
        role = h.role_at(m.scope, m.user, v.seq)
        name = f"{m.op} {m.scope} {m.collection}/{m.key} by {m.client_id[:8]}:{m.id} " \
               f"({m.user}, role {role})"
        if v.status == "applied" and role not in WRITERS:
            out.flag("unauthorized", f"{name} applied")
        elif v.status == "rejected" and v.error == "forbidden" and role in WRITERS:
            out.flag("forbidden", f"{name} refused as forbidden")


def _local_writes(h: History, final: Final, out: Outcome) -> None:
    """Each acknowledged local write went over the wire, alone or with later edits, unless
    the device dropped it with a scope its user could not write (revoked)."""
    newest: dict[tuple[str, str, Rec], str] = {}
    for m in h.sent.values():
        k = (m.client_id, m.scope, (m.collection, m.key))
        newest[k] = max(newest.get(k, ""), m.hlc)
    # A local write followed, before anything was sent, by a delete of a record the server
    # never had is cancelled by that later write: nothing goes over the wire.
    cancelled: dict[tuple[str, str, Rec], str] = {}
    for w in h.local:
        if w.local_only:
            k = (w.client_id, w.pk, (w.collection, w.key))
            cancelled[k] = max(cancelled.get(k, ""), w.stamp)
    for w in h.local:
        k = (w.client_id, w.pk, (w.collection, w.key))
        if w.local_only or cancelled.get(k, "") > w.stamp:
            continue
        if newest.get(k, "") < w.stamp:
            rec = (w.collection, w.key)
            if any(device == w.device and (scope, c, key) == (w.pk, *rec) and seq > w.seq
                   and h.could_not_write(w.pk, w.user, w.seq, seq)
                   for seq, device, scope, c, key in h.forbidden):
                continue  # dropped unsent with its revoked scope, and reported
            known = HELD_ENTRY_AFTER_RESET if _held_after_reset(h, final, w.device, w.pk,
                                                                rec) else None
            out.flag("lost", f"local write #{w.seq} by {w.device} ({w.op} {w.pk} "
                             f"{w.collection}/{w.key}, stamp {w.stamp}) never reached the "
                             f"server", known)


def _effect_holds(m: Sent, item: FinalItem | None) -> bool:
    if m.op == "delete":
        return item is None or item.deleted
    if item is None or item.deleted:
        return False
    value = m.value or {}
    if m.op == "put":
        return bool(norm(item.fields) == value)
    return all(norm(item.fields.get(f)) == v and f in item.fields for f, v in value.items())


def _effects(h: History, final: Final, applied: dict[tuple[str, int], Verdict],
             out: Outcome) -> None:
    logs: dict[tuple[str, Rec], list[LogEntry]] = defaultdict(list)
    for scope, entries in final.log.items():
        for e in entries:
            logs[(scope, (e.collection, e.key))].append(e)
    for mid, verdict in sorted(applied.items()):
        m = h.sent[mid]
        rec = (m.collection, m.key)
        item = final.items.get(m.scope, {}).get(rec)
        strategy = h.strategies[m.collection]
        name = f"{m.op} {m.scope} {m.collection}/{m.key} by {m.client_id[:8]}:{m.id}"
        if item is None and _external_delete_between(h, m.scope, rec, verdict.seq):
            continue  # another program deleted the item outright afterwards (a later write)
        if strategy == "version":
            known = VERSION_REUSE_AFTER_EXTERNAL_DELETE if _external_delete_between(
                h, m.scope, rec, verdict.seq) else None
            _by_version(m, verdict, item, name, out, known)
            continue
        # A clamped write that landed on another program's write (adopted by the push with
        # a server stamp after the mutation's, server/push.py _adopt) leaves no trace of its
        # own stamp in the log.
        adopted = any(e.scope == m.scope and (e.collection, e.key) == rec
                      and e.seq < verdict.seq for e in h.external)
        stamp = None if m.clamped and adopted else \
            _effective_stamp(m, strategy, logs[(m.scope, rec)])
        if stamp is None:
            out.counts["unverifiable"] += 1
            continue
        if strategy == "lww":
            _by_record_stamp(m, stamp, item, name, out)
        else:
            tombstones = [e.hlc for e in logs[(m.scope, rec)] if e.deleted]
            after = [h.sent[o] for o, ov in applied.items() if ov.seq > verdict.seq
                     and h.sent[o].scope == m.scope and (h.sent[o].collection,
                                                         h.sent[o].key) == rec]
            later = {s.hlc for s in after if not s.clamped}
            # A later clamped write carries the stamp the server gave it, which the log
            # shows only when it raised the record's clock; the fields it set are its own
            # anyway (a field an older write adds after a put lands survives).
            later |= {st for s in after if s.clamped
                      and (st := _effective_stamp(s, strategy, logs[(m.scope, rec)]))}
            refilled = {f for s in after if s.clamped for f in (s.value or {})}
            # Fields another program wrote after it: overwritten by a later write (the feed
            # stamps such a write above the record's clock, and a put by another program
            # replaces the item, stamps of removed fields included).
            outside = [e for e in h.external if e.scope == m.scope
                       and (e.collection, e.key) == rec and e.seq > verdict.seq]
            if any(e.field is None for e in outside):
                continue
            _by_field_stamps(m, stamp, item, max(tombstones, default=""), later,
                             {e.field for e in outside if e.field}, refilled, name, out)


def _effective_stamp(m: Sent, strategy: str, entries: list[LogEntry]) -> str | None:
    """The stamp the server applied the mutation with: its own, unless it was clamped; then
    the log's `h` of its version if that version raised the record's clock (lww always)."""
    if not m.clamped:
        return m.hlc
    writer = f"{m.client_id}:{m.id}"
    for i, e in enumerate(entries):
        if e.writer == writer:
            before = max((p.hlc for p in entries[:i]), default="")
            if strategy == "lww" or e.hlc > before:
                return e.hlc
    return None


def _by_version(m: Sent, v: Verdict, item: FinalItem | None, name: str, out: Outcome,
                known: str | None) -> None:
    version = v.version or 0
    final_v = item.version if item is not None else 0
    if final_v < version:
        out.flag("lost", f"{name}: applied as version {version}, the record ends at {final_v}",
                 known)
    elif final_v == version and item is not None:
        if item.writer != f"{m.client_id}:{m.id}" and not (m.op == "delete" and item.deleted):
            out.flag("lost", f"{name}: version {version} is now written by {item.writer}",
                     known)
        elif not _effect_holds(m, item):
            kind = "resurrected" if m.op == "delete" else "lost"
            out.flag(kind, f"{name}: the final record {item.fields} (deleted="
                           f"{item.deleted}) is not its effect and nothing wrote after it")


def _by_record_stamp(m: Sent, stamp: str, item: FinalItem | None, name: str,
                     out: Outcome) -> None:
    final_hlc = item.hlc if item is not None else ""
    if m.op == "delete" and (item is None or item.deleted):
        return  # its effect holds (a delete that finds the record deleted writes nothing)
    if stamp > final_hlc:
        kind = "resurrected" if m.op == "delete" else "lost"
        out.flag(kind, f"{name}: its stamp {stamp} is newer than the final record's "
                       f"{final_hlc}")
    elif stamp == final_hlc and not _effect_holds(m, item):
        kind = "resurrected" if m.op == "delete" else "lost"
        out.flag(kind, f"{name}: the newest write, but the record ends as "
                       f"{None if item is None else item.fields}")


def _removed_fields_back(m: Sent, stamp: str, item: FinalItem, later: set[str],
                         refilled: set[str], name: str, out: Outcome) -> None:
    """A put removes the fields the record has when it lands (merge.py: the fields it
    touches); one an older write adds after it lands is a concurrent edit of another field,
    and survives. Back with an older stamp from a write applied before: lost. `refilled`:
    fields a later clamped write set (their stamps are the server's)."""
    for g in item.fields:
        if g not in (m.value or {}) and g not in refilled and item.fh.get(g, item.hlc) <= stamp \
                and item.fh.get(g, item.hlc) not in later:
            out.flag("lost", f"{name}: field {g!r} it removed is back, stamped "
                             f"{item.fh.get(g, item.hlc)}")


def _by_field_stamps(m: Sent, stamp: str, item: FinalItem | None, tombstone: str,
                     later: set[str], outside: set[str], refilled: set[str], name: str,
                     out: Outcome) -> None:
    """`later`: the stamps of the record's mutations applied after this one; `outside`:
    the fields another program set after it."""
    live = item is not None and not item.deleted
    final_hlc = item.hlc if item is not None else ""
    if m.op == "delete":
        # A live record after an applied delete needs a write stamped after the delete.
        # (Deleted at the end: its effect holds, whatever the tombstone's stamp: a delete
        # that finds the record deleted writes nothing.)
        if live and final_hlc <= stamp:
            out.flag("resurrected", f"{name}: live at the end with nothing newer "
                                    f"(record {final_hlc} <= delete {stamp})")
        return
    if not live:
        if final_hlc <= stamp:
            out.flag("lost", f"{name}: stamped {stamp}, the record ends deleted at "
                             f"{final_hlc}")
        return
    assert item is not None
    if m.op == "put":
        _removed_fields_back(m, stamp, item, later, refilled, name, out)
    for f, value in (m.value or {}).items():
        if f in outside:
            continue
        if f in item.fields:
            field_stamp = item.fh.get(f, item.hlc)
        else:
            field_stamp = max(item.fh.get(f, ""), tombstone)
        if stamp > field_stamp:
            out.flag("lost", f"{name}: field {f!r} stamped {stamp} ends at {field_stamp}")
        elif stamp == field_stamp and (f not in item.fields
                                       or norm(item.fields[f]) != value):
            out.flag("lost", f"{name}: field {f!r} is its write's but holds "
                             f"{json.dumps(norm(item.fields.get(f)))}, not {value!r}")
