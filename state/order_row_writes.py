"""A lean :func:`state.encoded_writes.encode_row_writes` for a replay worker's per-order rows.

A replay worker of a per-order view (order-status) encodes one store write per event it
folds, so the generic path's objects cost more than the writes: a ViewUpdate and a
SourcePosition per change (:func:`state.replay.sink.per_order_updates`), a group list
per row, a :class:`~state.rocks_apply._RowKeys` and StoredVersions per group, method
dispatch per version. This module writes the same operations straight from the fold's
change tuples for the case that is almost every group of a replay: every new version is
later than the row's latest, by seq and by valid_from (an append), and every index of
the view is an equality index. Any other group (a duplicate, a clamped or replaced
version) goes through :class:`~state.rocks_apply.KeyApplier` itself, in its place in the
batch, and a view this module does not cover through ``encode_row_writes`` entirely.

The operations are exactly ``encode_row_writes(per_order_updates(view, topic, changes), ...)``'s,
in the same order (tests/unit/state/test_order_row_writes.py compares them, and the store
contract suite runs against a writer that commits through here), so the store ends up
byte-identical. It stays only while ``scripts/bench_replay.py`` shows it pays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.projections import Row, view_spec
from state import keys as K
from state.encoded_writes import EncodedWrites, RecordingBatch, encode_row_writes, latest_from_order_row
from state.records import encode_version_fields
from state.replay.sink import per_order_updates
from state.rocks_apply import ApplyCounts, KeyApplier, index_keys

__all__ = ["encode_order_row_writes", "covers"]

_OPEN_END = K.enc_int(K.OPEN_END_MS)


def covers(view: str) -> bool:
    """Whether :func:`encode_order_row_writes` writes ``view`` itself: a per-order view whose
    indexes are all equality indexes (others go through ``encode_row_writes``)."""
    return not view_spec(view).rekeyed and all(ix.equality for ix in index_keys(view))


def encode_order_row_writes(
    view: str,
    topic: str,
    changes: Iterable[tuple[Any, ...]],
    *,
    stored_position: Mapping[str, Mapping[int, int]],
    rows_before: Mapping[str, Row | None],
) -> EncodedWrites:
    """``encode_row_writes(per_order_updates(view, topic, changes), stored_position=...,
    latest_of=orderId -> latest_from_order_row(rows_before.get(orderId)))``, leaner.

    ``changes``: the fold's change tuples (key, row, orderId, seq, valid_from_ms, partition,
    offset) of a per-order view, whose key is the orderId; ``rows_before``: each order's row
    before the batch (missing or None: the store has none).
    """
    if not covers(view):
        return encode_row_writes(per_order_updates(view, topic, changes), stored_position=stored_position,
                                 latest_of=lambda order_id: latest_from_order_row(rows_before.get(order_id)))
    # Steps 1-2 of an apply (group_updates): skip changes below the stored position, group per key.
    parts: Mapping[int, int] = stored_position.get(topic, {})
    groups: dict[str, list[tuple[Any, ...]]] = {}
    source_ends: dict[tuple[str, str, int], int] = {}
    skipped = 0
    for change in changes:
        key, _row, _order_id, _seq, _valid_from_ms, partition, offset = change
        if offset < parts.get(partition, 0):
            skipped += 1
            continue
        group = groups.get(key)
        if group is None:
            groups[key] = [change]
        else:
            group.append(change)
        at = (view, topic, partition)
        if offset > source_ends.get(at, -1):
            source_ends[at] = offset
    # Step 3: each group's operations, appended here or by the KeyApplier.
    batch = RecordingBatch()
    ops = batch.ops
    counts = ApplyCounts()
    applier: KeyApplier | None = None
    indexes = index_keys(view)
    enc_int = K.enc_int
    view_lp = K.lp_name(view)
    applied = 0
    for key, group in groups.items():
        before = rows_before.get(key)
        new = _appended(group, before)
        if new is None:  # not a plain append: the generic applier decides, in this place of the batch
            if applier is None:
                applier = KeyApplier(None, batch, counts, latest_of=lambda order_id: latest_from_order_row(rows_before.get(order_id)))
            applied += applier.apply_group(view, key, per_order_updates(view, topic, group))
            continue
        applied += len(group)
        key_lp = K.lp(key)
        versions = K.NS_VERSION + view_lp + key_lp
        froms = [enc_int(valid_from_ms) for valid_from_ms, _row, _p, _o, _s in new]
        encoded = b""
        for (_vf, row, partition, offset, seq), from_key in zip(new, froms, strict=True):
            encoded = encode_version_fields(row, topic, partition, offset, seq)
            ops += (versions + from_key, encoded)
        for ix in indexes:
            field, versioned, current = ix.spec.field, ix.versioned, ix.current
            base_value = None if before is None else _equality_value(field, before.get(field))
            if base_value is not None:
                assert before is not None
                base_from = enc_int(before["validFrom"])
                # The base's open versioned entry closes at new[0]; its current entry goes.
                ops += (versioned + base_value + _OPEN_END + key_lp, None,
                        versioned + base_value + froms[0] + key_lp, base_from,
                        current + base_value + base_from + key_lp, None)
            value = None
            last = len(new) - 1
            for i, (_vf, row, _p, _o, _s) in enumerate(new):
                value = _equality_value(field, row.get(field))
                if value is not None:
                    ops += (versioned + value + (froms[i + 1] if i < last else _OPEN_END) + key_lp, froms[i])
            if value is not None:
                ops += (current + value + froms[-1] + key_lp, b"")
        ops += (K.NS_LATEST + view_lp + key_lp, froms[-1] + encoded)
    return EncodedWrites(ops, source_ends, applied, skipped, counts.skipped_duplicate, counts.clamped_valid_from)


#: (type of the raw value, raw value) -> its encoded equality index value; bounded, as rows carry any value.
_EQUALITY_VALUES: dict[tuple[type, Any], bytes] = {}
_EQUALITY_VALUES_MAX = 4096


def _equality_value(field: str, raw: Any) -> bytes | None:
    """``_IndexKeys.value_of`` of an equality index on ``field`` for a row whose ``field`` is ``raw``:
    ``lp_name(str(raw))``, None when unset. Memoised: an index like status has a handful of values."""
    if raw is None:
        return None
    try:
        key = (type(raw), raw)  # by type too: True == 1, but str(True) != str(1)
        found = _EQUALITY_VALUES.get(key)
    except TypeError:  # an unhashable value (a list): encoded every time
        return K.lp_name(str(raw))
    if found is None:
        found = K.lp_name(str(raw))
        if len(_EQUALITY_VALUES) < _EQUALITY_VALUES_MAX:
            _EQUALITY_VALUES[key] = found
    return found


def _appended(group: list[tuple[Any, ...]], before: Row | None) -> list[tuple[int, Row, int, int, int]] | None:
    """The group's versions (valid_from, row, partition, offset, seq) when every change appends:
    a seq above the one before and a valid_from at or above it (equal replaces the version just
    made, never the stored one). None: anything else (KeyApplier's case)."""
    last_seq = None if before is None else before["lastSeq"]
    last_from = None if before is None else before["validFrom"]
    new: list[tuple[int, Row, int, int, int]] = []
    for _key, row, _order_id, seq, _valid_from_ms, partition, offset in group:
        valid_from = row.get("validFrom", _valid_from_ms)
        if last_seq is not None and seq <= last_seq:
            return None  # a duplicate
        if new:
            if valid_from < last_from:
                return None  # clamped
            if valid_from == last_from:
                new[-1] = (valid_from, row, partition, offset, seq)
            else:
                new.append((valid_from, row, partition, offset, seq))
        else:
            if last_from is not None and valid_from <= last_from:
                return None  # replaces or precedes the stored latest
            new.append((valid_from, row, partition, offset, seq))
        last_seq, last_from = seq, valid_from
    return new
