"""How view updates become RocksDB writes: versions, counter re-derivation, index maintenance.

Updates are grouped per (view, key); each group is turned into a *suffix rewrite* of
that row's version list: the versions from some valid_from on are replaced by new ones.
Everything goes into the caller's WriteBatch; nothing here writes to the database.

Order-status: the rows are the versions. Each update's row becomes the version at its
``row_valid_from_ms`` (a later seq at the same valid_from replaces it: the state as of T
is the longest seq prefix with all event times <= T). A seq at or below the row's is a
duplicate.

Counter views: each change is stored at its own ``change_valid_from_ms`` (key includes
orderId and seq, so a redelivered change is recognised). The version at time t is the
fold of every change with change_valid_from <= t, in (valid_from, orderId, seq) order,
one version per distinct change time. A change that arrives before the row's latest
valid_from re-derives every later version from the version just before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from pipelines.projections import Change, get_projection
from schemas.errors import InvalidUpdateError
from state import keys as K
from state.contracts import ViewUpdate
from state.indexes import IndexSpec, indexes_of
from state.records import (
    StoredChange,
    StoredVersion,
    decode_change,
    decode_latest,
    decode_version,
    encode_change,
    encode_latest,
    encode_valid_to,
    encode_version,
)

__all__ = ["ApplyCounts", "KeyApplier", "ORDER_STATUS", "CORRECTION_ORDER_ID"]

ORDER_STATUS = "order-status"
#: orderId of a correction change (sorts before every real orderId at the same time).
CORRECTION_ORDER_ID = ""


@dataclass
class ApplyCounts:
    """Counters of what applies did (cumulative per store object; reported on /metrics)."""

    applied: int = 0
    skipped_position: int = 0
    skipped_duplicate: int = 0
    clamped_valid_from: int = 0
    rederived_versions: int = 0
    corrections: int = 0
    batches: int = 0


class KeyApplier:
    """Turns one (view, key) group of updates into WriteBatch operations, reading the db as needed.

    Reads see only what is committed, never this batch: the caller must hand each
    (view, key) to :meth:`apply_group` at most once per batch.
    """

    def __init__(self, db: Any, batch: Any, counts: ApplyCounts) -> None:
        self._db = db
        self._batch = batch
        self._counts = counts

    # -- reads -------------------------------------------------------------------------

    def _latest(self, view: str, key: str) -> StoredVersion | None:
        data = self._db.get(K.latest_key(view, key))
        return None if data is None else decode_latest(data)

    def _version_before(self, view: str, key: str, valid_from_ms: int) -> StoredVersion | None:
        """The version with the greatest valid_from < valid_from_ms (None: there is none)."""
        prefix = K.version_prefix(view, key)
        it = self._db.iter()
        it.seek_for_prev(prefix + K.enc_int(valid_from_ms - 1))
        if not it.valid():
            return None
        found = it.key()
        if not found.startswith(prefix) or len(found) != len(prefix) + K.INT_BYTES:
            return None
        return decode_version(K.dec_int(found[len(prefix) :]), it.value())

    def _versions_from(self, view: str, key: str, valid_from_ms: int) -> list[StoredVersion]:
        prefix = K.version_prefix(view, key)
        out = []
        for found, value in self._db.items(from_key=prefix + K.enc_int(valid_from_ms)):
            if not found.startswith(prefix):
                break
            out.append(decode_version(K.dec_int(found[len(prefix) :]), value))
        return out

    def _changes_from(self, view: str, key: str, valid_from_ms: int) -> list[StoredChange]:
        prefix = K.change_prefix(view, key)
        out = []
        for found, value in self._db.items(from_key=prefix + K.enc_int(valid_from_ms)):
            if not found.startswith(prefix):
                break
            change_from_ms, order_id, seq = K.parse_change_key(found, len(prefix))
            out.append(decode_change(change_from_ms, order_id, seq, value))
        return out

    # -- groups ------------------------------------------------------------------------

    def apply_group(self, view: str, key: str, updates: Sequence[ViewUpdate]) -> int:
        """Write the effect of ``updates`` (all for ``view``/``key``, in arrival order); return how many applied."""
        if view == ORDER_STATUS:
            return self._apply_rows(view, key, updates)
        return self._apply_changes(view, key, updates)

    def _apply_rows(self, view: str, key: str, updates: Sequence[ViewUpdate]) -> int:
        latest = self._latest(view, key)
        old: list[StoredVersion] = []
        new: list[StoredVersion] = []
        applied = 0
        for update in updates:
            current = new[-1] if new else latest
            if current is not None and current.seq is not None and update.seq <= current.seq:
                self._counts.skipped_duplicate += 1
                continue
            valid_from_ms = update.row_valid_from_ms
            if current is not None and valid_from_ms < current.valid_from_ms:
                # Cannot happen for rows built by the order fold (validFrom never decreases
                # per order); keep the invariant rather than stop the replica.
                self._counts.clamped_valid_from += 1
                valid_from_ms = current.valid_from_ms
            version = StoredVersion(valid_from_ms, update.row, update.source, update.seq)
            applied += 1
            if new and new[-1].valid_from_ms == valid_from_ms:
                new[-1] = version
            elif not new and latest is not None and latest.valid_from_ms == valid_from_ms:
                old, new = [latest], [version]
            else:
                new.append(version)
        if new:
            # The base's valid_to only changes when the first new version is not a replacement.
            self._rewrite_suffix(view, key, base=None if old else latest, old=old, new=new)
        return applied

    def _apply_changes(self, view: str, key: str, updates: Sequence[ViewUpdate]) -> int:
        fresh: list[StoredChange] = []
        seen: set[bytes] = set()
        for update in updates:
            if update.delta is None:
                raise InvalidUpdateError(f"{view} update for key {key!r} (order {update.order_id} seq {update.seq}) has no delta")
            change_key = K.change_key(view, key, update.change_valid_from_ms, update.order_id, update.seq)
            if change_key in seen or self._db.get(change_key) is not None:
                self._counts.skipped_duplicate += 1
                continue
            seen.add(change_key)
            fresh.append(StoredChange(update.change_valid_from_ms, update.order_id, update.seq, update.delta, update.source))
        if not fresh:
            return 0
        latest = self._latest(view, key)
        first_ms = min(change.valid_from_ms for change in fresh)
        if latest is None or first_ms > latest.valid_from_ms:
            # Fast path: every change is newer than the row; fold them onto the latest version.
            base, old, stored = latest, [], []
        else:
            # A change at or before the latest version: re-derive from the version before it.
            base = self._version_before(view, key, first_ms)
            old = self._versions_from(view, key, first_ms)
            stored = self._changes_from(view, key, first_ms)
            self._counts.rederived_versions += len(old)
        new = _fold_versions(view, key, base, stored + fresh, fresh_keys=seen)
        last = updates[-1]
        applied = len(fresh)
        if last.row and K.change_key(view, key, last.change_valid_from_ms, last.order_id, last.seq) in seen:
            # The published row is the live fold after this change; ours must equal it. It
            # differs when records were compacted away before we read them (a replica built
            # from an old compacted topic): record the difference as a correction change at
            # the group's first change time, so the latest row and everything after agree.
            diff = _counter_diff(last.row, new[-1].row)
            if diff:
                seq = last.record_position.offset if last.record_position is not None else last.seq
                correction = StoredChange(first_ms, CORRECTION_ORDER_ID, seq, diff, None)
                fresh = [*fresh, correction]
                seen.add(K.change_key(view, key, first_ms, CORRECTION_ORDER_ID, seq))
                self._counts.corrections += 1
                new = _fold_versions(view, key, base, stored + fresh, fresh_keys=seen)
        for change in _merge_same_key(view, key, fresh, stored):
            self._batch.put(K.change_key(view, key, change.valid_from_ms, change.order_id, change.seq), encode_change(change))
        self._rewrite_suffix(view, key, base=base, old=old, new=new)
        return applied

    # -- suffix rewrite ----------------------------------------------------------------

    def _rewrite_suffix(
        self, view: str, key: str, *, base: StoredVersion | None, old: list[StoredVersion], new: list[StoredVersion]
    ) -> None:
        """Replace versions ``old`` (all valid_from >= new[0]) with ``new``; fix indexes and latest.

        1. Versions: delete old ones not re-written, put the new ones.
        2. Versioned indexes: drop the entries of ``old`` and of ``base`` as they were, put
           ``base`` closed at new[0] and one entry per new version with its valid_to.
        3. Current indexes and the latest record: move from the previous latest to new[-1].
        """
        batch = self._batch
        # Step 1
        kept = {v.valid_from_ms for v in new}
        for version in old:
            if version.valid_from_ms not in kept:
                batch.delete(K.version_key(view, key, version.valid_from_ms))
        for version in new:
            batch.put(K.version_key(view, key, version.valid_from_ms), encode_version(version))
        # Step 2
        old_ends = [old[i + 1].valid_from_ms if i + 1 < len(old) else None for i in range(len(old))]
        new_ends = [new[i + 1].valid_from_ms if i + 1 < len(new) else None for i in range(len(new))]
        for spec in indexes_of(view):
            for version, valid_to_ms in zip(old, old_ends):
                _delete_versioned_entry(batch, spec, key, version, valid_to_ms)
            if base is not None:
                # base was current (valid_to None) when old is empty, else it ended at old[0].
                _delete_versioned_entry(batch, spec, key, base, old[0].valid_from_ms if old else None)
                _put_versioned_entry(batch, spec, key, base, new[0].valid_from_ms)
            for version, valid_to_ms in zip(new, new_ends):
                _put_versioned_entry(batch, spec, key, version, valid_to_ms)
        # Step 3
        previous = old[-1] if old else base
        for spec in indexes_of(view):
            if previous is not None:
                entry = _current_entry(spec, key, previous)
                if entry is not None:
                    batch.delete(entry)
            entry = _current_entry(spec, key, new[-1])
            if entry is not None:
                batch.put(entry, b"")
        batch.put(K.latest_key(view, key), encode_latest(new[-1]))


def _fold_versions(
    view: str, key: str, base: StoredVersion | None, changes: list[StoredChange], *, fresh_keys: set[bytes]
) -> list[StoredVersion]:
    """One version per distinct change time: the fold of ``base`` and every change up to it.

    A version's source is the last *fresh* change at its time (the record that produced
    it); a version only re-derived because an earlier change arrived has source None.
    """
    projection = get_projection(view)
    row = dict(base.row) if base is not None else None
    out: list[StoredVersion] = []
    changes = sorted(changes, key=lambda c: (c.valid_from_ms, c.order_id, c.seq))
    for valid_from_ms, group in groupby(changes, key=lambda c: c.valid_from_ms):
        source = None
        for change in group:
            row = projection.apply(row, Change(key, dict(change.delta), change.order_id, change.seq, change.valid_from_ms))
            if K.change_key(view, key, change.valid_from_ms, change.order_id, change.seq) in fresh_keys:
                source = change.source
        assert row is not None
        out.append(StoredVersion(valid_from_ms, row, source, None))
    return out


def _counter_diff(published: Any, derived: Any) -> dict[str, int]:
    """Per integer field (validFrom excepted), published minus derived, where they differ."""
    diff = {}
    for name, value in published.items():
        if name == "validFrom" or not isinstance(value, int) or isinstance(value, bool):
            continue
        have = derived.get(name, 0)
        if isinstance(have, int) and have != value:
            diff[name] = value - have
    return diff


def _merge_same_key(view: str, key: str, fresh: list[StoredChange], stored: list[StoredChange]) -> list[StoredChange]:
    """Fresh changes to write; a correction landing on an existing change key adds to it instead of replacing it."""
    by_key: dict[bytes, StoredChange] = {}
    existing = {K.change_key(view, key, c.valid_from_ms, c.order_id, c.seq): c for c in stored}
    for change in fresh:
        ck = K.change_key(view, key, change.valid_from_ms, change.order_id, change.seq)
        prior = by_key.get(ck) or existing.get(ck)
        if prior is not None:
            delta = dict(prior.delta)
            for name, amount in change.delta.items():
                delta[name] = delta.get(name, 0) + amount
            change = StoredChange(change.valid_from_ms, change.order_id, change.seq, delta, prior.source or change.source)
        by_key[ck] = change
    return list(by_key.values())


def _versioned_entry(spec: IndexSpec, key: str, version: StoredVersion, valid_to_ms: int | None) -> tuple[bytes, bytes] | None:
    """(entry key, entry value) of one version in a versioned index; None when the row has no index value."""
    value = spec.value_of(version.row)
    if value is None:
        return None
    if spec.kind == "equality":
        entry = K.versioned_equality_key(spec.view, spec.name, str(value), key, valid_to_ms)
        return entry, K.enc_int(version.valid_from_ms)
    return K.versioned_ranking_key(spec.view, spec.name, int(value), key, version.valid_from_ms), encode_valid_to(valid_to_ms)


def _put_versioned_entry(batch: Any, spec: IndexSpec, key: str, version: StoredVersion, valid_to_ms: int | None) -> None:
    entry = _versioned_entry(spec, key, version, valid_to_ms)
    if entry is not None:
        batch.put(*entry)


def _delete_versioned_entry(batch: Any, spec: IndexSpec, key: str, version: StoredVersion, valid_to_ms: int | None) -> None:
    """Delete the entry as written when the version ended at ``valid_to_ms`` (a re-put after it wins: batch order)."""
    entry = _versioned_entry(spec, key, version, valid_to_ms)
    if entry is not None:
        batch.delete(entry[0])


def _current_entry(spec: IndexSpec, key: str, version: StoredVersion) -> bytes | None:
    value = spec.value_of(version.row)
    if value is None:
        return None
    if spec.kind == "equality":
        return K.current_equality_key(spec.view, spec.name, str(value), key, version.valid_from_ms)
    return K.current_ranking_key(spec.view, spec.name, int(value), key)
