"""The replay's bulk writer: a :class:`~state.contracts.WritableProjectionStore` that writes without reading.

A replay builds a new store directory with one writer and nobody reads it before it is
closed. :class:`RocksLoader` is that writer: the same contract as
:class:`state.rocks_store.RocksStore` (the contract suite runs against both), and the
same bytes (tests compare the two stores key for key after the same applies). It is
faster because:

1. it remembers, per key it wrote, what an apply needs of the row's latest version, so a
   (view, key) group whose updates all come at or after that version is encoded straight
   into the batch, with no database read (see below);
2. its memtable is a vector (appends; sorted once when flushed), and it has no
   write-ahead log (a replay's build directory is discarded when the build fails).

What it remembers, per key (a few dozen bytes; rows only for counter views, whose keys
are few)::

    per-order view:  (valid_from_ms, seq, index values) of the latest version
    counter view:    (valid_from_ms, index values, row, ((orderId, seq) of each change at valid_from_ms))

A counter change before the row's latest version (the replay sink releases changes in
event-time order, so only when it had to release one early) needs the stored changes:
that group goes through :class:`~state.rocks_apply.KeyApplier`, reading the database
after a flush (a read sorts the vector memtable otherwise); so does a group whose
published row disagrees with the fold (a correction). The key is then read back from the
database when next met. A key it never wrote (a store seeded from a snapshot) is read
once from a read-only handle opened on the directory as it was before any write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rocksdict import Rdict, WriteBatch

from pipelines.projections import Change, Projection, get_projection, view_spec
from state import keys as K
from state.contracts import SourcePosition, ViewUpdate
from state.errors import InvalidUpdateError, StoreError
from state.records import StoredChange, StoredVersion, decode_latest, encode_change, encode_version
from state.rocks_apply import ApplyCounts, IndexValues, KeyApplier, append_row_versions, counter_diff, index_values
from state.rocks_open import open_rdict, raw_items, save_options
from state.rocks_store import RocksWriter, store_options

__all__ = ["RocksLoader"]

#: What a per-order view's latest version needs: (valid_from_ms, seq, index values).
_RowLatest = tuple[int, int | None, IndexValues]
#: What a counter view's latest version needs: (valid_from_ms, index values, row, (orderId, seq) of its changes at valid_from_ms).
_CounterLatest = tuple[int, IndexValues, dict[str, Any], tuple[tuple[str, int], ...]]
_Latest = _RowLatest | _CounterLatest
#: One fresh counter change: (change_valid_from_ms, orderId, seq, delta, source).
_Fresh = tuple[int, str, int, Mapping[str, int], SourcePosition | None]


def _fresh_order(change: _Fresh) -> tuple[int, str, int]:
    return change[0], change[1], change[2]


class RocksLoader(RocksWriter):
    """The bulk writer of a store directory that only this object writes, and nobody reads until it is closed."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        # The directory as it is before any write of ours: where keys we never wrote are read. Opened
        # first, with every table file held open (max_open_files -1), so that a compaction of ours
        # (which starts as soon as we open, if the directory has many level-0 files) cannot remove a
        # file under it.
        self._seed: Rdict | None = None
        if (path / "CURRENT").exists():
            seed_options = store_options()
            seed_options.set_max_open_files(-1)
            self._seed = open_rdict(path, seed_options, read_only=True, error=StoreError, what="store")
        try:
            super().__init__(path, options=store_options(vector_memtable=True), wal=False)
        except BaseException:
            if self._seed is not None:
                self._seed.close()
            raise
        self._latest: dict[str, dict[str, _Latest]] = {}
        #: Keys last written by KeyApplier: their latest version is read from the database.
        self._stale: set[tuple[str, str]] = set()
        self._next_latest: dict[tuple[str, str], _Latest] = {}
        self._next_stale: list[tuple[str, str]] = []
        self._projections: dict[str, Projection] = {}

    # -- what a key's latest version is -----------------------------------------------------

    def _read_latest(self, db: Rdict, view: str, key: str, rekeyed: bool) -> _Latest | None:
        data = db.get(K.latest_key(view, key))
        if data is None:
            return None
        version = decode_latest(data)
        values = index_values(view, version.row)
        if not rekeyed:
            return version.valid_from_ms, version.seq, values
        prefix = K.change_prefix(view, key) + K.enc_int(version.valid_from_ms)
        ids = []
        for found, _ in raw_items(db, from_key=prefix):
            if not found.startswith(prefix):
                break
            _, order_id, seq = K.parse_change_key(found, len(prefix) - K.INT_BYTES)
            ids.append((order_id, seq))
        return version.valid_from_ms, values, dict(version.row), tuple(ids)

    # -- RocksWriter step 3 -----------------------------------------------------------------

    def _write_groups(self, groups: Mapping[tuple[str, str], Sequence[ViewUpdate]], batch: WriteBatch, counts: ApplyCounts) -> int:
        """Step 3 of :meth:`RocksWriter.apply`: each group encoded from what is remembered, or through KeyApplier."""
        self._next_latest = {}
        self._next_stale = []
        flushed = False
        stale = [group_key for group_key in groups if group_key in self._stale]
        if stale:
            self._db.flush()
            flushed = True
        applied = 0
        fallback: list[tuple[str, str]] = []
        for (view, key), group in groups.items():
            rekeyed = view_spec(view).rekeyed
            latest: _Latest | None
            if (view, key) in self._stale:
                latest = self._read_latest(self._db, view, key, rekeyed)
            else:
                latest = self._latest.get(view, {}).get(key)
                if latest is None and self._seed is not None:
                    latest = self._read_latest(self._seed, view, key, rekeyed)
            if not rekeyed:
                applied += self._write_rows(batch, counts, view, key, group, latest)  # type: ignore[arg-type]  # a per-order view's
            else:
                written = self._write_changes(batch, counts, view, key, group, latest)  # type: ignore[arg-type]  # a counter view's
                if written is None:
                    fallback.append((view, key))
                else:
                    applied += written
        if fallback:
            if not flushed:
                self._db.flush()  # KeyApplier reads; a read of the vector memtable would sort it
            applier = KeyApplier(self._db, batch, counts)
            for view, key in fallback:
                applied += applier.apply_group(view, key, groups[(view, key)])
                self._next_stale.append((view, key))
        return applied

    def _written(self) -> None:
        """The batch is committed: remember the latest versions it wrote."""
        for (view, key), latest in self._next_latest.items():
            self._latest.setdefault(view, {})[key] = latest
            self._stale.discard((view, key))
        for view, key in self._next_stale:
            self._latest.get(view, {}).pop(key, None)
            self._stale.add((view, key))
        self._next_latest = {}
        self._next_stale = []

    def _write_rows(
        self, batch: WriteBatch, counts: ApplyCounts, view: str, key: str, updates: Sequence[ViewUpdate], latest: _RowLatest | None
    ) -> int:
        """A per-order view's group (each update's row is a version), as KeyApplier writes it."""
        valid_from_ms, seq = (None, None) if latest is None else (latest[0], latest[1])
        versions: list[tuple[int, ViewUpdate]] = []
        applied = 0
        for update in updates:
            if seq is not None and update.seq <= seq:
                counts.skipped_duplicate += 1
                continue
            update_ms = update.row_valid_from_ms
            if valid_from_ms is not None and update_ms < valid_from_ms:
                counts.clamped_valid_from += 1  # kept as KeyApplier keeps it: validFrom never decreases per key
                update_ms = valid_from_ms
            if versions and versions[-1][0] == update_ms:
                versions[-1] = (update_ms, update)  # a later seq at the same valid_from replaces the version
            else:
                versions.append((update_ms, update))
            valid_from_ms, seq = update_ms, update.seq
            applied += 1
        if not versions:
            return 0
        append_row_versions(
            batch, view, key, None if latest is None else (latest[0], latest[2]),
            [(ms, u.row, encode_version(StoredVersion(ms, u.row, u.source, u.seq))) for ms, u in versions],
        )
        last_ms, last = versions[-1]
        self._next_latest[(view, key)] = (last_ms, last.seq, index_values(view, last.row))
        return applied

    def _write_changes(
        self, batch: WriteBatch, counts: ApplyCounts, view: str, key: str, updates: Sequence[ViewUpdate], latest: _CounterLatest | None
    ) -> int | None:
        """A counter view's group, as KeyApplier writes it; None when KeyApplier must (a change
        before the latest version, or a published row that needs a correction). Nothing is
        written or counted then."""
        latest_ms = None if latest is None else latest[0]
        stored_ids = () if latest is None else latest[3]
        fresh: list[_Fresh] = []
        seen: set[tuple[int, str, int]] = set()
        duplicates = 0
        for update in updates:
            delta = update.delta
            if delta is None:
                raise InvalidUpdateError(f"{view} update for key {key!r} (order {update.order_id} seq {update.seq}) has no delta")
            change_ms = update.change_valid_from_ms
            if latest_ms is not None and change_ms < latest_ms:
                return None
            ident = (change_ms, update.order_id, update.seq)
            if ident in seen or (change_ms == latest_ms and (update.order_id, update.seq) in stored_ids):
                duplicates += 1
                continue
            seen.add(ident)
            fresh.append((change_ms, update.order_id, update.seq, delta, update.source))
        if not fresh:
            counts.skipped_duplicate += duplicates
            return 0
        if len(fresh) > 1:
            fresh.sort(key=_fresh_order)  # the order KeyApplier folds in: (valid_from, orderId, seq)
        projection = self._projections.get(view)
        if projection is None:
            projection = self._projections[view] = get_projection(view)
        fold = projection.apply
        row = None if latest is None else latest[2]
        # One version per distinct change time: (valid_from_ms, row after its changes, source of its last change).
        versions: list[tuple[int, dict[str, Any], SourcePosition | None]] = []
        for change_ms, order_id, seq, delta, source in fresh:
            row = fold(row, Change(key, dict(delta), order_id, seq, change_ms))
            if versions and versions[-1][0] == change_ms:
                versions[-1] = (change_ms, row, source)
            else:
                versions.append((change_ms, row, source))
        last = updates[-1]
        if last.row and (last.change_valid_from_ms, last.order_id, last.seq) in seen and counter_diff(last.row, versions[-1][1]):
            return None
        counts.skipped_duplicate += duplicates
        prefix = K.change_prefix(view, key)
        put = batch.put
        for change_ms, order_id, seq, delta, source in fresh:
            put(prefix + K.change_suffix(change_ms, order_id, seq), encode_change(StoredChange(change_ms, order_id, seq, delta, source)))
        if latest is not None and versions[0][0] == latest_ms:
            counts.rederived_versions += 1  # the latest version is re-derived with the changes at its time
        append_row_versions(
            batch, view, key, None if latest is None else (latest[0], latest[1]),
            [(ms, r, encode_version(StoredVersion(ms, r, source, None))) for ms, r, source in versions],
        )
        last_ms, last_row, _ = versions[-1]
        ids = tuple((order_id, seq) for change_ms, order_id, seq, _, _ in fresh if change_ms == last_ms)
        if last_ms == latest_ms:
            ids = stored_ids + ids
        self._next_latest[(view, key)] = (last_ms, index_values(view, last_row), last_row, ids)
        return len(fresh)

    def close(self) -> None:
        """Flush and release the database; later openers get the ordinary options (no vector memtable)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._db.flush()
            self._db.close()
            if self._seed is not None:
                self._seed.close()
            save_options(self.path, store_options(), error=StoreError, what="store")
