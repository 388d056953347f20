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

Cost notes (the replay parent applies every update through here, serially):

* every key of a (view, key) group shares ``lp(view) + lp(key)``; it is encoded once per
  group (:class:`_RowKeys`), and the index prefixes once per view (:func:`_index_keys`);
* changes are identified by ``(valid_from_ms, orderId, seq)`` tuples in memory; the change
  key is encoded once, when it is written or looked up;
* a counter row's latest version is at its greatest stored change time (versions are
  one per change time, corrections land at a change time), so a change later than the
  latest version cannot be stored yet: the duplicate lookup is skipped for it (and for
  every change of a row without a latest version). Changes replayed in event-time order
  therefore cost no reads beyond the latest record;
* the latest record itself is usually not read either: the store keeps the latest
  versions it committed in a bounded :class:`LatestCache`;
* counter changes arriving in event-time order after the latest version take their
  versions from the rows they carry, once the first row is shown to be the fold of the
  latest version (:func:`_published_versions`); only other groups fold change by change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby, islice
from typing import Any, NamedTuple

from pipelines.projections import Change, get_projection, view_spec
from state import keys as K
from state.contracts import ViewUpdate
from state.errors import InvalidUpdateError
from state.indexes import IndexSpec, check_view, indexes_of
from state.records import (
    StoredChange,
    StoredVersion,
    decode_change,
    decode_latest,
    decode_version,
    encode_change,
    encode_valid_to,
    encode_version,
)

__all__ = ["ApplyCounts", "KeyApplier", "LatestCache", "GroupedUpdates", "group_updates", "index_keys", "CORRECTION_ORDER_ID"]

#: orderId of a correction change (sorts before every real orderId at the same time).
CORRECTION_ORDER_ID = ""

#: ``t(valid_to)`` of a current version in a versioned equality index entry.
_OPEN_END = K.enc_int(K.OPEN_END_MS)


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


class _RowKeys:
    """The encoded key prefixes of one (view, key) row, built once per group (``changes`` on first use)."""

    __slots__ = ("key", "key_lp", "latest", "versions", "_view_key")

    def __init__(self, view: str, key: str) -> None:
        self.key = key
        self.key_lp = K.lp(key)
        self._view_key = view_key = K.lp_name(view) + self.key_lp
        self.latest = K.NS_LATEST + view_key  # == K.latest_key(view, key)
        self.versions = K.NS_VERSION + view_key  # == K.version_prefix(view, key)

    @property
    def changes(self) -> bytes:
        """== K.change_prefix(view, key) (counter views only)."""
        return K.NS_CHANGE + self._view_key

    def version_key(self, valid_from_ms: int) -> bytes:
        """== K.version_key(view, key, valid_from_ms)."""
        return self.versions + K.enc_int(valid_from_ms)

    def change_key(self, valid_from_ms: int, order_id: str, seq: int) -> bytes:
        """== K.change_key(view, key, valid_from_ms, order_id, seq)."""
        return self.changes + K.enc_int(valid_from_ms) + K.lp(order_id) + K.enc_int(seq)


@dataclass(frozen=True, slots=True)
class _IndexKeys:
    """One index of a view with its encoded prefixes (``K.index_prefix`` of both namespaces)."""

    spec: IndexSpec
    equality: bool
    current: bytes
    versioned: bytes

    def value_of(self, row: Mapping[str, Any]) -> bytes | None:
        """The encoded index value of ``row``: equality ``lp(str(value))``, ranking
        ``enc_desc(int(value))``; None: not indexed (:meth:`IndexSpec.value_of`)."""
        value = self.spec.value_of(row)
        if value is None:
            return None
        if self.equality:
            return K.lp_name(str(value))
        return K.enc_desc(int(value))


_INDEX_KEYS: dict[str, tuple[_IndexKeys, ...]] = {}


def index_keys(view: str) -> tuple[_IndexKeys, ...]:
    """``view``'s indexes with their encoded key prefixes, built once per view."""
    found = _INDEX_KEYS.get(view)
    if found is None:
        found = tuple(
            _IndexKeys(
                spec,
                spec.kind == "equality",
                K.index_prefix(K.NS_INDEX_CURRENT, spec.view, spec.name),
                K.index_prefix(K.NS_INDEX_VERSIONED, spec.view, spec.name),
            )
            for spec in indexes_of(view)
        )
        _INDEX_KEYS[view] = found
    return found


class LatestCache:
    """The latest version of the rows a store wrote most recently, by latest-record key.

    Saves the read and JSON decode of a row's latest record when the row changes again
    soon (a replay writes an order's versions a few batches apart; a busy customer changes
    every batch). Only the store's single writer fills it, with versions it has committed,
    so an entry always equals the database's latest record. Holds at most ``max_rows``
    entries, dropping the least recently written first. The rows are the callers' objects,
    not copies: an update's row must not be mutated once applied (ViewUpdate is immutable).
    """

    __slots__ = ("_rows", "_max_rows")

    def __init__(self, max_rows: int = 200_000) -> None:
        self._rows: dict[bytes, StoredVersion] = {}
        self._max_rows = max_rows

    def get(self, latest_key: bytes) -> StoredVersion | None:
        """The cached latest version (None: not cached, which says nothing about the database)."""
        return self._rows.get(latest_key)

    def put_all(self, written: dict[bytes, StoredVersion]) -> None:
        """Record committed latest versions (each becomes the most recently written)."""
        rows = self._rows
        for key, version in written.items():
            rows.pop(key, None)
            rows[key] = version
        excess = len(rows) - self._max_rows
        if excess > 0:
            for key in list(islice(rows, excess)):
                del rows[key]

    def clear(self) -> None:
        """Forget everything."""
        self._rows.clear()


#: (valid_from_ms, orderId, seq): a change's identity within its row (its key, unencoded).
_ChangeId = tuple[int, str, int]


class GroupedUpdates(NamedTuple):
    """Steps 1-2 of an apply (:func:`group_updates`)."""

    #: (view, key) -> its updates, in arrival order; groups in order of first appearance.
    groups: dict[tuple[str, str], list[ViewUpdate]]
    #: (view, source topic, source partition) -> the highest source offset among the updates kept.
    source_ends: dict[tuple[str, str, int], int]
    #: Updates skipped because their record_position is below the stored position.
    skipped_position: int


def group_updates(updates: Sequence[ViewUpdate], stored_position: Mapping[str, Mapping[int, int]]) -> GroupedUpdates:
    """Validate every update's view (UnknownViewError), skip those whose record_position is
    below ``stored_position`` (next_offsets), and group the rest per (view, key)."""
    for view in dict.fromkeys([update.view for update in updates]):
        check_view(view)
    groups: dict[tuple[str, str], list[ViewUpdate]] = {}
    source_ends: dict[tuple[str, str, int], int] = {}
    skipped = 0
    no_parts: Mapping[int, int] = {}
    # Fields unpacked by position: this loop runs once per update on the single writer.
    for update in updates:
        view, key, _row, _rvf, _cvf, _delta, _order, _seq, source, where = update
        if where is not None and where[2] < stored_position.get(where[0], no_parts).get(where[1], 0):
            skipped += 1
            continue
        group = groups.get((view, key))
        if group is None:
            groups[(view, key)] = [update]
        else:
            group.append(update)
        if source is not None:
            at = (view, source[0], source[1])
            if source[2] > source_ends.get(at, -1):
                source_ends[at] = source[2]
    return GroupedUpdates(groups, source_ends, skipped)


class KeyApplier:
    """Turns one (view, key) group of updates into WriteBatch operations, reading the db as needed.

    Reads see only what is committed, never this batch: the caller must hand each
    (view, key) to :meth:`apply_group` at most once per batch.
    """

    def __init__(
        self,
        db: Any,
        batch: Any,
        counts: ApplyCounts,
        *,
        latest: LatestCache | None = None,
        latest_of: Callable[[str], StoredVersion | None] | None = None,
    ) -> None:
        """``db``: the database read for what a group needs (None only with ``latest_of``);
        ``batch``: receives puts and deletes; ``latest``: a cache consulted before ``db``;
        ``latest_of``: key -> the row's latest version, authoritative (``db`` is never read
        for it): given by a caller that knows the rows, e.g. where they were folded. Only a
        row-per-order view can be encoded without ``db``: counter groups may re-derive."""
        self._db = db
        self._batch = batch
        self._counts = counts
        self._cache = latest
        self._latest_of = latest_of
        #: The latest version each group of this batch leaves, by latest-record key: for the
        #: caller to put into its :class:`LatestCache` once the batch is written (not before:
        #: a failed write must leave the cache as committed).
        self.written_latest: dict[bytes, StoredVersion] = {}

    # -- reads -------------------------------------------------------------------------

    def _latest(self, rk: _RowKeys) -> StoredVersion | None:
        if self._latest_of is not None:
            return self._latest_of(rk.key)
        cache = self._cache
        if cache is not None:
            found = cache.get(rk.latest)
            if found is not None:
                return found
        data = self._db.get(rk.latest)
        return None if data is None else decode_latest(data)

    def _version_before(self, rk: _RowKeys, valid_from_ms: int) -> StoredVersion | None:
        """The version with the greatest valid_from < valid_from_ms (None: there is none)."""
        prefix = rk.versions
        it = self._db.iter()
        it.seek_for_prev(prefix + K.enc_int(valid_from_ms - 1))
        if not it.valid():
            return None
        found = it.key()
        if not found.startswith(prefix) or len(found) != len(prefix) + K.INT_BYTES:
            return None
        return decode_version(K.dec_int(found[len(prefix) :]), it.value())

    def _versions_from(self, rk: _RowKeys, valid_from_ms: int) -> list[StoredVersion]:
        prefix = rk.versions
        out = []
        for found, value in self._db.items(from_key=prefix + K.enc_int(valid_from_ms)):
            if not found.startswith(prefix):
                break
            out.append(decode_version(K.dec_int(found[len(prefix) :]), value))
        return out

    def _changes_from(self, rk: _RowKeys, valid_from_ms: int) -> list[StoredChange]:
        prefix = rk.changes
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
        rk = _RowKeys(view, key)
        if not view_spec(view).rekeyed:  # a row per order: each update is the whole row
            return self._apply_rows(view, key, rk, updates)
        if self._db is None:
            raise InvalidUpdateError(f"{view} updates need the database (a counter view may re-derive versions)")
        return self._apply_changes(view, key, rk, updates)

    def _apply_rows(self, view: str, key: str, rk: _RowKeys, updates: Sequence[ViewUpdate]) -> int:
        latest = self._latest(rk)
        if len(updates) == 1:
            # The common case (a replay worker's batch, a replica that keeps up): one version
            # later than the row's latest by seq and by time: appended without the lists below.
            _view, _key, row, valid_from_ms, _cvf, _delta, _order, seq, source, _where = updates[0]
            if latest is None or (
                (latest.seq is None or seq > latest.seq) and valid_from_ms > latest.valid_from_ms
            ):
                self._append_versions(view, rk, latest, [StoredVersion(valid_from_ms, row, source, seq)])
                return 1
        old: list[StoredVersion] = []
        new: list[StoredVersion] = []
        applied = 0
        for _view, _key, row, valid_from_ms, _cvf, _delta, _order, seq, source, _where in updates:
            current = new[-1] if new else latest
            if current is not None:
                current_seq = current.seq
                if current_seq is not None and seq <= current_seq:
                    self._counts.skipped_duplicate += 1
                    continue
                if valid_from_ms < current.valid_from_ms:
                    # Cannot happen for rows built by the order fold (validFrom never decreases
                    # per order); keep the invariant rather than stop the replica.
                    self._counts.clamped_valid_from += 1
                    valid_from_ms = current.valid_from_ms
            version = StoredVersion(valid_from_ms, row, source, seq)
            applied += 1
            if new and new[-1].valid_from_ms == valid_from_ms:
                new[-1] = version
            elif not new and latest is not None and latest.valid_from_ms == valid_from_ms:
                old, new = [latest], [version]
            else:
                new.append(version)
        if new:
            # The base's valid_to only changes when the first new version is not a replacement.
            self._rewrite_suffix(view, rk, base=None if old else latest, old=old, new=new)
        return applied

    def _apply_changes(self, view: str, key: str, rk: _RowKeys, updates: Sequence[ViewUpdate]) -> int:
        # The latest version is read first: no change of this row is stored later than it
        # (module docstring), so only changes at or before it need a duplicate lookup.
        latest = self._latest(rk)
        stored_until = latest.valid_from_ms if latest is not None else None
        fresh: list[StoredChange] = []
        seen: set[_ChangeId] = set()
        get = self._db.get
        for _view, _key, _row, _rvf, valid_from_ms, delta, order_id, seq, source, _where in updates:
            if delta is None:
                raise InvalidUpdateError(f"{view} update for key {key!r} (order {order_id} seq {seq}) has no delta")
            ident = (valid_from_ms, order_id, seq)
            if ident in seen or (
                stored_until is not None and valid_from_ms <= stored_until and get(rk.change_key(*ident)) is not None
            ):
                self._counts.skipped_duplicate += 1
                continue
            seen.add(ident)
            fresh.append(StoredChange(valid_from_ms, order_id, seq, delta, source))
        if not fresh:
            return 0
        first_ms = min(change.valid_from_ms for change in fresh)
        if latest is None or first_ms > latest.valid_from_ms:
            # Fast path: every change is newer than the row; fold them onto the latest version.
            base, old, stored = latest, [], []
        else:
            # A change at or before the latest version: re-derive from the version before it.
            base = self._version_before(rk, first_ms)
            old = self._versions_from(rk, first_ms)
            stored = self._changes_from(rk, first_ms)
            self._counts.rederived_versions += len(old)
        new = None
        if not old and len(fresh) == len(updates):
            new = _published_versions(view, key, base, updates)
        if new is None:
            new = _fold_versions(view, key, base, stored + fresh, fresh_ids=seen)
        last = updates[-1]
        applied = len(fresh)
        corrected = False
        if last.row and (last.change_valid_from_ms, last.order_id, last.seq) in seen:
            # The published row is the live fold after this change; ours must equal it. It
            # differs when records were compacted away before we read them (a replica built
            # from an old compacted topic): record the difference as a correction change at
            # the group's first change time, so the latest row and everything after agree.
            diff = _counter_diff(last.row, new[-1].row)
            if diff:
                seq = last.record_position.offset if last.record_position is not None else last.seq
                correction = StoredChange(first_ms, CORRECTION_ORDER_ID, seq, diff, None)
                fresh = [*fresh, correction]
                seen.add((first_ms, CORRECTION_ORDER_ID, seq))
                self._counts.corrections += 1
                corrected = True
                new = _fold_versions(view, key, base, stored + fresh, fresh_ids=seen)
        put = self._batch.put
        changes_prefix, enc_int, lp = rk.changes, K.enc_int, K.lp
        # Fresh changes are distinct (``seen``); only a correction or stored changes can share a key.
        for change in _merge_same_key(fresh, stored) if stored or corrected else fresh:
            # == rk.change_key(...), inline: once per change on the store's writer
            put(changes_prefix + enc_int(change.valid_from_ms) + lp(change.order_id) + enc_int(change.seq), encode_change(change))
        self._rewrite_suffix(view, rk, base=base, old=old, new=new)
        return applied

    # -- suffix rewrite ----------------------------------------------------------------

    def _rewrite_suffix(
        self, view: str, rk: _RowKeys, *, base: StoredVersion | None, old: list[StoredVersion], new: list[StoredVersion]
    ) -> None:
        """Replace versions ``old`` (all valid_from >= new[0]) with ``new``; fix indexes and latest.

        1. Versions: delete old ones not re-written, put the new ones.
        2. Versioned indexes: drop the entries of ``old`` and of ``base`` as they were, put
           ``base`` closed at new[0] and one entry per new version with its valid_to.
        3. Current indexes and the latest record: move from the previous latest to new[-1].
        """
        batch = self._batch
        put, delete = batch.put, batch.delete
        if not old:
            self._append_versions(view, rk, base, new)
            return
        version_key = rk.version_key
        # Step 1
        if old:
            kept = {v.valid_from_ms for v in new}
            for version in old:
                if version.valid_from_ms not in kept:
                    delete(version_key(version.valid_from_ms))
        encoded = b""
        for version in new:
            encoded = encode_version(version)
            put(version_key(version.valid_from_ms), encoded)
        indexes = index_keys(view)
        if indexes:
            key_lp = rk.key_lp
            # Step 2
            old_ends = [old[i + 1].valid_from_ms if i + 1 < len(old) else None for i in range(len(old))]
            new_ends = [new[i + 1].valid_from_ms if i + 1 < len(new) else None for i in range(len(new))]
            # Index values are computed once per (index, version): steps 2 and 3 both use them.
            values = []
            for ix in indexes:
                old_values = [_index_value(ix, v) for v in old]
                new_values = [_index_value(ix, v) for v in new]
                base_value = None if base is None else _index_value(ix, base)
                values.append((old_values, new_values, base_value))
                for version, value, valid_to_ms in zip(old, old_values, old_ends, strict=False):
                    if value is not None:
                        delete(_versioned_entry(ix, key_lp, value, version.valid_from_ms, valid_to_ms)[0])
                if base is not None and base_value is not None:
                    # base was current (valid_to None) when old is empty, else it ended at old[0].
                    entry = _versioned_entry(ix, key_lp, base_value, base.valid_from_ms, old[0].valid_from_ms if old else None)
                    delete(entry[0])
                    put(*_versioned_entry(ix, key_lp, base_value, base.valid_from_ms, new[0].valid_from_ms))
                for version, value, valid_to_ms in zip(new, new_values, new_ends, strict=False):
                    if value is not None:
                        put(*_versioned_entry(ix, key_lp, value, version.valid_from_ms, valid_to_ms))
            # Step 3
            previous = old[-1] if old else base
            for ix, (old_values, new_values, base_value) in zip(indexes, values, strict=False):
                if previous is not None:
                    previous_value = old_values[-1] if old else base_value
                    if previous_value is not None:
                        delete(_current_entry(ix, key_lp, previous_value, previous.valid_from_ms))
                if new_values[-1] is not None:
                    put(_current_entry(ix, key_lp, new_values[-1], new[-1].valid_from_ms), b"")
        # The latest record (t(valid_from) + version record), reusing new[-1]'s record encoded in step 1.
        put(rk.latest, K.enc_int(new[-1].valid_from_ms) + encoded)
        self.written_latest[rk.latest] = new[-1]

    def _append_equality(self, view: str, rk: _RowKeys, base: StoredVersion | None, new: list[StoredVersion]) -> None:
        """:meth:`_append_versions` for a view whose indexes are all equality indexes (order-status):
        the same database afterwards, its keys built inline (it runs once per event of a replay)."""
        put, delete = self._batch.put, self._batch.delete
        enc_int = K.enc_int
        versions, key_lp = rk.versions, rk.key_lp
        froms = [enc_int(version.valid_from_ms) for version in new]
        encoded = b""
        for version, from_key in zip(new, froms, strict=True):
            encoded = encode_version(version)
            put(versions + from_key, encoded)
        # Equality entries, as _versioned_entry / _current_entry build them.
        for ix in index_keys(view):
            value_of, versioned = ix.value_of, ix.versioned
            base_value = None if base is None else value_of(base.row)
            if base_value is not None:
                assert base is not None
                base_from = enc_int(base.valid_from_ms)
                # base's open versioned entry closes at new[0]; its current entry goes
                delete(versioned + base_value + _OPEN_END + key_lp)
                put(versioned + base_value + froms[0] + key_lp, base_from)
                delete(ix.current + base_value + base_from + key_lp)
            value = None
            last = len(new) - 1
            for i, version in enumerate(new):
                value = value_of(version.row)
                if value is not None:
                    put(versioned + value + (froms[i + 1] if i < last else _OPEN_END) + key_lp, froms[i])
            if value is not None:
                put(ix.current + value + froms[-1] + key_lp, b"")
        put(rk.latest, froms[-1] + encoded)
        self.written_latest[rk.latest] = new[-1]

    def _append_versions(self, view: str, rk: _RowKeys, base: StoredVersion | None, new: list[StoredVersion]) -> None:
        """:meth:`_rewrite_suffix` with ``old`` empty (every new version is later than ``base``):
        the common case of a replay and of a replica that keeps up, written without the general
        case's lists (it runs once per row group on the store's single writer)."""
        if all(ix.equality for ix in index_keys(view)):
            self._append_equality(view, rk, base, new)
        else:
            self._append_general(view, rk, base, new)

    def _append_general(self, view: str, rk: _RowKeys, base: StoredVersion | None, new: list[StoredVersion]) -> None:
        """:meth:`_append_versions` for any indexes, their entries built inline."""
        put, delete = self._batch.put, self._batch.delete
        versions = rk.versions
        enc_int = K.enc_int
        encoded = b""
        # Step 1
        for version in new:
            encoded = encode_version(version)
            put(versions + enc_int(version.valid_from_ms), encoded)
        last = new[-1]
        indexes = index_keys(view)
        if indexes:
            key_lp = rk.key_lp
            count = len(new)
            ends = [version.valid_from_ms for version in new[1:]]
            ends.append(None)  # type: ignore[arg-type]  # the last new version stays open
            for ix in indexes:
                value_of = ix.value_of
                versioned = ix.versioned
                # Step 2: base's open entry is closed at new[0]; each new version ends at the next.
                base_value = None if base is None else value_of(base.row)
                if base_value is not None:
                    assert base is not None
                    delete(_versioned_entry(ix, key_lp, base_value, base.valid_from_ms, None)[0])
                    put(*_versioned_entry(ix, key_lp, base_value, base.valid_from_ms, new[0].valid_from_ms))
                value = None
                if ix.equality:
                    for i in range(count):
                        version = new[i]
                        value = value_of(version.row)
                        if value is not None:
                            end = ends[i]
                            put(versioned + value + enc_int(K.OPEN_END_MS if end is None else end) + key_lp, enc_int(version.valid_from_ms))
                else:
                    for i in range(count):
                        version = new[i]
                        value = value_of(version.row)
                        if value is not None:
                            put(versioned + value + key_lp + enc_int(version.valid_from_ms), encode_valid_to(ends[i]))
                # Step 3: the current entry moves from base to the last new version.
                if base_value is not None:
                    assert base is not None
                    delete(_current_entry(ix, key_lp, base_value, base.valid_from_ms))
                if value is not None:
                    put(_current_entry(ix, key_lp, value, last.valid_from_ms), b"")
        put(rk.latest, enc_int(last.valid_from_ms) + encoded)
        self.written_latest[rk.latest] = last


def _published_versions(view: str, key: str, base: StoredVersion | None, updates: Sequence[ViewUpdate]) -> list[StoredVersion] | None:
    """The versions :func:`_fold_versions` would derive, taken from the rows the updates carry;
    None when that cannot be shown cheaply (the caller then folds).

    For a group of fresh changes, all later than ``base`` and arriving in event-time order,
    the publisher's row after the last change at time t is the fold of ``base`` and every
    change up to t, provided the publisher folded onto the same base: checked on the first
    update (one fold). Counters are sums, so the order of changes at the same time does not
    matter for the row; a version's source is still that of its last change in
    (orderId, seq) order, as in the fold. This is the common case of a replay (its sink
    releases changes in event-time order) and of a replica that keeps up, and saves a
    fold per change.
    """
    first = updates[0]
    if not first.row:
        return None
    apply = get_projection(view).apply
    before = dict(base.row) if base is not None else None
    change = Change(key, dict(first.delta or {}), first.order_id, first.seq, first.change_valid_from_ms)
    if apply(before, change) != first.row:
        return None
    out: list[StoredVersion] = []
    run_ms = first.change_valid_from_ms
    run_last = first
    run_source_id = (first.order_id, first.seq)
    run_source = first.source
    for update in updates[1:]:
        valid_from_ms = update.change_valid_from_ms
        if valid_from_ms < run_ms or not update.row:
            return None
        if valid_from_ms != run_ms:
            out.append(StoredVersion(run_ms, run_last.row, run_source, None))
            run_ms, run_source_id, run_source = valid_from_ms, (update.order_id, update.seq), update.source
        elif (update.order_id, update.seq) > run_source_id:
            run_source_id, run_source = (update.order_id, update.seq), update.source
        run_last = update
    out.append(StoredVersion(run_ms, run_last.row, run_source, None))
    return out


def _fold_versions(
    view: str, key: str, base: StoredVersion | None, changes: list[StoredChange], *, fresh_ids: set[_ChangeId]
) -> list[StoredVersion]:
    """One version per distinct change time: the fold of ``base`` and every change up to it.

    A version's source is the last *fresh* change at its time (the record that produced
    it); a version only re-derived because an earlier change arrived has source None.
    """
    apply = get_projection(view).apply
    row = dict(base.row) if base is not None else None
    out: list[StoredVersion] = []
    if len(changes) > 1:
        changes = sorted(changes, key=lambda c: (c.valid_from_ms, c.order_id, c.seq))
    for valid_from_ms, group in groupby(changes, key=lambda c: c.valid_from_ms):
        source = None
        for change in group:
            row = apply(row, Change(key, dict(change.delta), change.order_id, change.seq, change.valid_from_ms))
            if (change.valid_from_ms, change.order_id, change.seq) in fresh_ids:
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


def _merge_same_key(fresh: list[StoredChange], stored: list[StoredChange]) -> list[StoredChange]:
    """Fresh changes to write; a correction landing on an existing change key adds to it instead of replacing it."""
    if len(fresh) == 1 and not stored:
        return fresh
    by_id: dict[_ChangeId, StoredChange] = {}
    existing = {(c.valid_from_ms, c.order_id, c.seq): c for c in stored}
    for change in fresh:
        ident = (change.valid_from_ms, change.order_id, change.seq)
        prior = by_id.get(ident) or existing.get(ident)
        if prior is not None:
            delta = dict(prior.delta)
            for name, amount in change.delta.items():
                delta[name] = delta.get(name, 0) + amount
            change = StoredChange(change.valid_from_ms, change.order_id, change.seq, delta, prior.source or change.source)
        by_id[ident] = change
    return list(by_id.values())


def _index_value(ix: _IndexKeys, version: StoredVersion) -> bytes | None:
    """The encoded index value of ``version`` (:meth:`_IndexKeys.value_of` of its row)."""
    return ix.value_of(version.row)


def _versioned_entry(
    ix: _IndexKeys, key_lp: bytes, value: bytes, valid_from_ms: int, valid_to_ms: int | None
) -> tuple[bytes, bytes]:
    """(entry key, entry value) of one version, of encoded index value ``value`` (:func:`_index_value`), in a versioned index.

    Equality: ``K.versioned_equality_key`` -> ``t(valid_from)``; ranking: ``K.versioned_ranking_key`` -> valid_to.
    """
    if ix.equality:
        end = K.OPEN_END_MS if valid_to_ms is None else valid_to_ms
        return ix.versioned + value + K.enc_int(end) + key_lp, K.enc_int(valid_from_ms)
    return ix.versioned + value + key_lp + K.enc_int(valid_from_ms), encode_valid_to(valid_to_ms)


def _current_entry(ix: _IndexKeys, key_lp: bytes, value: bytes, valid_from_ms: int) -> bytes:
    """``K.current_equality_key`` / ``K.current_ranking_key`` of a version of encoded index value ``value``."""
    if ix.equality:
        return ix.current + value + K.enc_int(valid_from_ms) + key_lp
    return ix.current + value + key_lp
