"""The RocksDB (rocksdict) backend of the store contracts in :mod:`state.contracts`.

One database per directory, raw byte keys (layout in :mod:`state.keys`), JSON values
(:mod:`state.records`). Three classes, one per role:

* :class:`RocksReadOnlyStore` – a :class:`~state.contracts.ReadOnlyView` opened read-only
  (no lock: works while another process writes the directory; sees it as of the open);
* :class:`RocksStore` – the :class:`~state.contracts.WritableProjectionStore` (and
  :class:`~state.contracts.ApplyWatch`) of the process that owns the directory;
* :class:`ReadOnlyStoreView` – the read-only face of a RocksStore, for the query side.

RocksStore is the only RocksDB writer: the replica's, and a replay's (without WAL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, overload

from rocksdict import BlockBasedOptions, Cache, Checkpoint, Options, Rdict, ReadOptions, WriteBatch

from pipelines.projections import VIEW_NAMES
from state import keys as K
from state.contracts import Position, VersionedRow, ViewUpdate
from state.encoded_writes import EncodedWrites
from state.errors import StoreError, StoreFormatError, StoreNotFoundError, UnknownIndexError
from state.indexes import check_view, find_index
from state.records import StoredVersion, decode_latest, decode_valid_to, decode_version
from state.rocks_apply import ApplyCounts, KeyApplier, LatestCache, group_updates
from state.rocks_open import open_rdict, raw_items, write_options

__all__ = ["RocksReadOnlyStore", "RocksStore", "ReadOnlyStoreView", "open_store"]

_BLOCK_CACHE_BYTES = 256 * 1024 * 1024


def _options() -> Options:
    """The options every store directory is opened with."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_max_background_jobs(4)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(_BLOCK_CACHE_BYTES))
    # Point lookups (latest rows, change dedup, versions of an as-of index hit) dominate reads.
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    # Index entries are deleted as rows change; compact files dense with tombstones early so
    # that scans do not wade through them (seen: 50 ms for an empty index range before compaction).
    options.add_compact_on_deletion_collector_factory(128 * 1024, 32 * 1024, 0.5)
    return options


def _row(view: str, key: str, version: StoredVersion, valid_to_ms: int | None) -> VersionedRow:
    return VersionedRow(view, key, version.row, version.valid_from_ms, valid_to_ms, version.source)


class _RocksReads:
    """The :class:`~state.contracts.ReadOnlyView` of one open database (shared by every class here)."""

    def __init__(self, path: Path, db: Rdict) -> None:
        self.path = path
        self._db = db
        self._position = self._load_position()
        self._source_position = self._load_source_position()

    def _prefixed(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        out = []
        for key, value in raw_items(self._db, from_key=prefix):
            if not key.startswith(prefix):
                break
            out.append((key, value))
        return out

    def _load_position(self) -> dict[str, dict[int, int]]:
        position: dict[str, dict[int, int]] = {}
        for key, value in self._prefixed(K.NS_POSITION):
            topic, partition = K.parse_position_key(key)
            position.setdefault(topic, {})[partition] = K.dec_int(value)
        return position

    def _load_source_position(self) -> dict[str, dict[str, dict[int, int]]]:
        out: dict[str, dict[str, dict[int, int]]] = {}
        for key, value in self._prefixed(K.NS_SOURCE_POSITION):
            view, topic, partition = K.parse_source_position_key(key)
            out.setdefault(view, {}).setdefault(topic, {})[partition] = K.dec_int(value)
        return out

    def views(self) -> list[str]:
        """Every view this store can hold (the replica consumes all of them)."""
        return list(VIEW_NAMES)

    def get(self, view: str, key: str) -> VersionedRow | None:
        """The current version of ``key`` (valid_to None), or None when the view has no such row."""
        check_view(view)
        data = self._db.get(K.latest_key(view, key))
        return None if data is None else _row(view, key, decode_latest(data), None)

    def get_as_of(self, view: str, key: str, as_of_ms: int) -> VersionedRow | None:
        """The version with the greatest valid_from_ms <= as_of_ms (inclusive bound).

        None before the key's first version (and for a key that never existed). The
        result's valid_to_ms is the next version's valid_from_ms (exclusive), None if current.
        One seek_for_prev plus one next().
        """
        check_view(view)
        prefix = K.version_prefix(view, key)
        it = self._db.iter()
        it.seek_for_prev(prefix + K.enc_int(as_of_ms))
        if not it.valid():
            return None
        found: bytes = it.key()
        if len(found) != len(prefix) + K.INT_BYTES or not found.startswith(prefix):
            return None
        version = decode_version(K.dec_int(found[len(prefix) :]), it.value())
        it.next()
        valid_to_ms = None
        if it.valid():
            after: bytes = it.key()
            if len(after) == len(found) and after.startswith(prefix):
                valid_to_ms = K.dec_int(after[len(prefix) :])
        return _row(view, key, version, valid_to_ms)

    def history(self, view: str, key: str, *, limit: int | None = None) -> list[VersionedRow]:
        """Every version of ``key``, oldest first (the first ``limit`` when given); valid_to chained."""
        check_view(view)
        prefix = K.version_prefix(view, key)
        versions: list[StoredVersion] = []
        for found, value in raw_items(self._db, from_key=prefix):
            if not found.startswith(prefix) or len(found) != len(prefix) + K.INT_BYTES:
                break
            versions.append(decode_version(K.dec_int(found[len(prefix) :]), value))
            if limit is not None and len(versions) > limit:
                break  # one extra version: the last kept one's valid_to
        out = [_row(view, key, v, versions[i + 1].valid_from_ms if i + 1 < len(versions) else None) for i, v in enumerate(versions)]
        return out if limit is None else out[:limit]

    def scan_index(
        self, view: str, index: str, value: str | None = None, *, as_of_ms: int | None = None, limit: int = 100
    ) -> list[VersionedRow]:
        """Rows by secondary index as of ``as_of_ms`` (None: now); see :mod:`state.indexes` for order and cost.

        Equality: rows whose field equals ``value`` (required); now in the order their
        current version became valid, as of T in the order their version valid at T ended
        (still-current ones last). Ranking: the top ``limit`` rows by the field, largest
        first, ties by key (``value`` ignored). As of T, a row is included when its version
        valid at T (valid_from <= T < valid_to) matches.
        """
        spec = find_index(view, index)
        if spec.kind == "equality" and value is None:
            raise UnknownIndexError(f"index {spec.name} of {view} is an equality index: give a value, e.g. {spec.name}=SHIPPED")
        if limit <= 0:
            return []
        namespace = K.NS_INDEX_CURRENT if as_of_ms is None else K.NS_INDEX_VERSIONED
        if spec.kind == "equality":
            prefix = K.equality_value_prefix(namespace, view, spec.name, str(value))
        else:
            prefix = K.index_prefix(namespace, view, spec.name)
        start = prefix
        if spec.kind == "equality" and as_of_ms is not None:
            start = prefix + K.enc_int(as_of_ms + 1)  # versioned equality entries are in valid_to order
        out: list[VersionedRow] = []
        for entry, data in self._scan(start, K.prefix_end(prefix)):
            if len(out) >= limit:
                break
            at = len(prefix)
            if as_of_ms is None:  # current entries: the row is the latest version
                row = self.get(view, key=K.read_lp(entry, at + K.INT_BYTES)[0])
            else:
                if spec.kind == "equality":
                    valid_to_raw = K.dec_int(entry[at : at + K.INT_BYTES])
                    valid_to_ms = None if valid_to_raw == K.OPEN_END_MS else valid_to_raw
                    key = K.read_lp(entry, at + K.INT_BYTES)[0]
                    valid_from_ms = K.dec_int(data)
                else:
                    key, after_key = K.read_lp(entry, at + K.INT_BYTES)
                    valid_from_ms = K.dec_int(entry[after_key : after_key + K.INT_BYTES])
                    valid_to_ms = decode_valid_to(data)
                if valid_from_ms > as_of_ms or (valid_to_ms is not None and valid_to_ms <= as_of_ms):
                    continue  # this version was not the one valid at T
                stored = self._db.get(K.version_key(view, key, valid_from_ms))
                row = None if stored is None else _row(view, key, decode_version(valid_from_ms, stored), valid_to_ms)
            if row is not None:
                out.append(row)
        return out

    def _scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Entries in [start, end). The upper bound lets RocksDB stop at ``end`` instead of
        walking on through deleted entries (index scans run over many tombstones)."""
        options = ReadOptions()
        options.set_iterate_upper_bound(end)
        yield from self._db.items(from_key=start, read_opt=options)

    def position(self) -> dict[str, dict[int, int]]:
        """``{topic: {partition: next_offset}}`` of every input this store applied (a copy)."""
        # A writer publishes a new dict and never mutates a published one: no lock needed,
        # so a query never waits for a batch being written.
        return {topic: dict(parts) for topic, parts in self._position.items()}

    def source_position(self, view: str) -> dict[str, dict[int, int]]:
        """Per orders partition, one past the highest source offset of a change ``view`` applied (a copy)."""
        check_view(view)
        return {topic: dict(parts) for topic, parts in self._source_position.get(view, {}).items()}


def _check_format(db: Rdict, path: Path, *, writable: bool) -> None:
    """Refuse a store of another format version; a writer stamps a new store with this one."""
    meta_key = K.NS_META + K.lp(K.META_FORMAT)
    found = db.get(meta_key)
    if found is None and writable:
        db.put(meta_key, K.FORMAT_VERSION)
    elif found is not None and found != K.FORMAT_VERSION:
        db.close()
        raise StoreFormatError(
            f"store {path} has format {found.decode(errors='replace')}, this build reads "
            f"{K.FORMAT_VERSION.decode()}: delete the directory and rebuild it"
        )


class RocksReadOnlyStore(_RocksReads):
    """A store directory opened read-only: a :class:`~state.contracts.ReadOnlyView`, nothing more.

    Raises :class:`StoreNotFoundError` when ``path`` holds no store (nothing is created).
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not (path / "CURRENT").exists():
            raise StoreNotFoundError(f"no replica store in {path} (run `rewind serve` to build one)")
        db = open_rdict(path, _options(), read_only=True, error=StoreError, what="store")
        _check_format(db, path, writable=False)
        super().__init__(path, db)
        self._closed = False

    def close(self) -> None:
        """Release the database (idempotent)."""
        if not self._closed:
            self._closed = True
            self._db.close()


class RocksStore(_RocksReads):
    """A :class:`~state.contracts.WritableProjectionStore` (and ApplyWatch) in one RocksDB directory.

    Each (view, key) group of an apply is written by :class:`~state.rocks_apply.KeyApplier`,
    which reads what it needs (latest version, stored changes) from the database.
    ``wal=False`` skips RocksDB's write-ahead log: for a store built from scratch and thrown
    away if the build fails (a replay's build directory), since :meth:`close` flushes the
    memtables to table files anyway. A crash before close then loses recent writes.
    """

    def __init__(self, path: Path, *, wal: bool = True) -> None:
        path = Path(path)
        db = open_rdict(path, _options(), read_only=False, error=StoreError, what="store")
        _check_format(db, path, writable=True)
        super().__init__(path, db)
        self._write_options = write_options(wal=wal)
        self.counts = ApplyCounts()
        #: Latest versions this writer committed, so a row written again soon is not read back.
        self._latest_cache = LatestCache()
        self._write_lock = threading.Lock()
        self._applied = threading.Condition()
        self._closed = False

    def apply(self, updates: Sequence[ViewUpdate], *, position: Position) -> int:
        """Apply ``updates`` and advance the position in ONE WriteBatch; returns how many applied.

        1. Validate every update's view (UnknownViewError) before anything is written.
        2. Skip updates whose record_position is below the stored next_offset (counted).
        3. Group the rest per (view, key), in arrival order, and let KeyApplier turn each
           group into versions, changes and index entries in the batch (duplicates counted).
        4. Put the position (max of stored and given, per partition) and each view's
           source position into the same batch.
        5. Write the batch (atomic), then publish the new position to readers and wake waiters.
        """
        with self._write_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            # Steps 1-2 (also: the highest source offset per view and source partition, for step 4)
            groups, source_ends, skipped = group_updates(updates, self._position)
            # Step 3
            batch = WriteBatch(raw_mode=True)
            counts = ApplyCounts()
            applier = KeyApplier(self._db, batch, counts, latest=self._latest_cache)
            applied = sum(applier.apply_group(view, key, group) for (view, key), group in groups.items())
            # Steps 4-5
            self._commit(batch, position, source_ends)
            self._latest_cache.put_all(applier.written_latest)
            self._count(counts, applied=applied, skipped_position=skipped)
        with self._applied:
            self._applied.notify_all()
        return applied

    def apply_encoded(self, writes: Sequence[EncodedWrites], *, position: Position) -> int:
        """Commit operations encoded apart (:mod:`state.encoded_writes`) and advance the position,
        in ONE WriteBatch, exactly as :meth:`apply` commits its own (steps 4-5); returns how
        many updates they applied. ``writes`` must come in the order they were encoded, each
        encoded against this store as every earlier one left it.
        """
        with self._write_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            batch = WriteBatch(raw_mode=True)
            put, delete = batch.put, batch.delete
            source_ends: dict[tuple[str, str, int], int] = {}
            counts = ApplyCounts()
            applied = skipped = 0
            for encoded in writes:
                pairs = iter(encoded.ops)
                for key, value in zip(pairs, pairs, strict=True):
                    if value is None:
                        delete(key)  # type: ignore[arg-type]  # even slots of ops are keys, never None
                    else:
                        put(key, value)  # type: ignore[arg-type]  # even slots of ops are keys, never None
                for at, offset in encoded.source_ends.items():
                    if offset > source_ends.get(at, -1):
                        source_ends[at] = offset
                applied += encoded.applied
                skipped += encoded.skipped_position
                counts.skipped_duplicate += encoded.skipped_duplicate
                counts.clamped_valid_from += encoded.clamped_valid_from
            self._commit(batch, position, source_ends)
            # Rows changed without this process knowing their versions: nothing cached is sure.
            self._latest_cache.clear()
            self._count(counts, applied=applied, skipped_position=skipped)
        with self._applied:
            self._applied.notify_all()
        return applied

    def _commit(self, batch: WriteBatch, position: Position, source_ends: Mapping[tuple[str, str, int], int]) -> None:
        """Steps 4-5 of :meth:`apply` (under the write lock)."""
        # Step 4
        new_position = {topic: dict(parts) for topic, parts in self._position.items()}
        for topic, parts in position.items():
            for partition, next_offset in parts.items():
                if next_offset > new_position.setdefault(topic, {}).get(partition, -1):
                    new_position[topic][partition] = next_offset
                    batch.put(K.position_key(topic, partition), K.enc_int(next_offset))
        new_sources = {v: {t: dict(p) for t, p in tps.items()} for v, tps in self._source_position.items()}
        for (view, topic, partition), offset in source_ends.items():
            parts = new_sources.setdefault(view, {}).setdefault(topic, {})
            if offset + 1 > parts.get(partition, -1):
                parts[partition] = offset + 1
                batch.put(K.source_position_key(view, topic, partition), K.enc_int(offset + 1))
        # Step 5
        try:
            self._db.write(batch, self._write_options)
        except Exception as exc:
            raise StoreError(f"cannot write to store {self.path}: {exc}") from exc
        self._position = new_position
        self._source_position = new_sources

    def _count(self, counts: ApplyCounts, *, applied: int, skipped_position: int) -> None:
        total = self.counts
        total.batches += 1
        total.applied += applied
        total.skipped_position += skipped_position
        total.skipped_duplicate += counts.skipped_duplicate
        total.clamped_valid_from += counts.clamped_valid_from
        total.rederived_versions += counts.rederived_versions
        total.corrections += counts.corrections

    def wait_for_apply(self, *, timeout_s: float) -> None:
        """Return after the next completed apply, or after ``timeout_s``."""
        with self._applied:
            self._applied.wait(timeout_s)

    def checkpoint(self, dest: Path) -> None:
        """A consistent copy of the whole store (data and position together) in new directory ``dest``."""
        try:
            Checkpoint(self._db).create_checkpoint(str(dest))
        except Exception as exc:
            raise StoreError(f"cannot checkpoint {self.path} to {dest}: {exc}") from exc

    def close(self) -> None:
        """Flush and release the database (idempotent)."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._db.flush()
            self._db.close()


class ReadOnlyStoreView:
    """The read-only face of a store: what the query side receives. Never mutates anything."""

    def __init__(self, store: RocksStore) -> None:
        self._store = store

    @property
    def counts(self) -> ApplyCounts:
        """The underlying store's apply counters (for /metrics)."""
        return self._store.counts

    def views(self) -> list[str]:
        """See :meth:`RocksStore.views`."""
        return self._store.views()

    def get(self, view: str, key: str) -> VersionedRow | None:
        """See :meth:`RocksStore.get`."""
        return self._store.get(view, key)

    def get_as_of(self, view: str, key: str, as_of_ms: int) -> VersionedRow | None:
        """See :meth:`RocksStore.get_as_of` (inclusive bound; None before the first version)."""
        return self._store.get_as_of(view, key, as_of_ms)

    def history(self, view: str, key: str, *, limit: int | None = None) -> list[VersionedRow]:
        """See :meth:`RocksStore.history`."""
        return self._store.history(view, key, limit=limit)

    def scan_index(
        self, view: str, index: str, value: str | None = None, *, as_of_ms: int | None = None, limit: int = 100
    ) -> list[VersionedRow]:
        """See :meth:`RocksStore.scan_index`."""
        return self._store.scan_index(view, index, value, as_of_ms=as_of_ms, limit=limit)

    def position(self) -> dict[str, dict[int, int]]:
        """See :meth:`RocksStore.position`."""
        return self._store.position()

    def source_position(self, view: str) -> dict[str, dict[int, int]]:
        """See :meth:`RocksStore.source_position`."""
        return self._store.source_position(view)

    def wait_for_apply(self, *, timeout_s: float) -> None:
        """See :meth:`RocksStore.wait_for_apply`."""
        self._store.wait_for_apply(timeout_s=timeout_s)

    def close(self) -> None:
        """Release the underlying store."""
        self._store.close()


@overload
def open_store(path: Path, *, read_only: Literal[False] = False) -> RocksStore: ...
@overload
def open_store(path: Path, *, read_only: Literal[True]) -> RocksReadOnlyStore: ...
def open_store(path: Path, *, read_only: bool = False) -> RocksStore | RocksReadOnlyStore:
    """Open the store in ``path``: a :class:`RocksStore` (creating it), or with ``read_only=True``
    a :class:`RocksReadOnlyStore` (raises :class:`StoreNotFoundError` if there is none)."""
    if read_only:
        return RocksReadOnlyStore(path)
    return RocksStore(path)
