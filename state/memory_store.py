"""A small in-memory reference implementation of the store contracts in :mod:`state.contracts`.

Written for clarity, not speed: plain lists and dicts, every answer computed from them
on demand, nothing shared with the RocksDB backend but the views' own declarations (their
kind, indexes and fold). The contract suite (tests/unit/state/store_contract.py) runs
against it as against every RocksDB writer, so a rule that only one backend follows shows
up as a failing test.

Per key it keeps the versions (valid_from_ms, row, source, seq), oldest first, and for
counter views the changes ((valid_from_ms, orderId, seq) -> delta and source). A counter
key's versions are re-derived from all its changes on every apply: one version per
distinct change time, the fold of every change up to it in (valid_from_ms, orderId, seq)
order, its source that of the last change at that time applied by the same call.

:class:`MemoryData` is the "disk": a closed store's data, which a new :class:`MemoryStore`
opened on it continues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.projections import VIEW_NAMES, Change, get_projection, view_spec
from state.contracts import Position, SourcePosition, VersionedRow, ViewUpdate
from state.errors import InvalidUpdateError, StoreError, UnknownIndexError
from state.indexes import check_view, find_index

__all__ = ["MemoryData", "MemoryStore"]

#: orderId of a correction change (the empty string sorts before every real orderId at the same time).
_CORRECTION = ""


@dataclass
class _Version:
    valid_from_ms: int
    row: Mapping[str, Any]
    source: SourcePosition | None
    seq: int | None


@dataclass
class _Change:
    delta: dict[str, int]
    source: SourcePosition | None


#: A counter change's identity within its key: (change_valid_from_ms, orderId, seq).
_ChangeId = tuple[int, str, int]


@dataclass
class MemoryData:
    """Everything a :class:`MemoryStore` holds; outlives the store object (a reopen continues it)."""

    versions: dict[tuple[str, str], list[_Version]] = field(default_factory=dict)
    changes: dict[tuple[str, str], dict[_ChangeId, _Change]] = field(default_factory=dict)
    position: dict[str, dict[int, int]] = field(default_factory=dict)
    source_position: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)


def _key_order(key: str) -> tuple[int, bytes]:
    """How keys are ordered among equals in an index: shorter UTF-8 first, then bytewise (the RocksDB key order)."""
    raw = key.encode()
    return len(raw), raw


class MemoryStore:
    """A :class:`~state.contracts.WritableProjectionStore` in memory (``data``: continue a closed store's)."""

    def __init__(self, data: MemoryData | None = None) -> None:
        self.data = data if data is not None else MemoryData()
        self._closed = False

    # -- ReadOnlyView ----------------------------------------------------------------------

    def views(self) -> list[str]:
        """Every known view."""
        return list(VIEW_NAMES)

    def _rows(self, view: str, key: str) -> list[VersionedRow]:
        versions = self.data.versions.get((view, key), [])
        return [
            VersionedRow(view, key, v.row, v.valid_from_ms, versions[i + 1].valid_from_ms if i + 1 < len(versions) else None, v.source)
            for i, v in enumerate(versions)
        ]

    def get(self, view: str, key: str) -> VersionedRow | None:
        """The current version (valid_to None), or None."""
        check_view(view)
        rows = self._rows(view, key)
        return rows[-1] if rows else None

    def get_as_of(self, view: str, key: str, as_of_ms: int) -> VersionedRow | None:
        """The version with the greatest valid_from_ms <= as_of_ms (inclusive); None before the first."""
        check_view(view)
        found = None
        for row in self._rows(view, key):
            if row.valid_from_ms <= as_of_ms:
                found = row
        return found

    def history(self, view: str, key: str, *, limit: int | None = None) -> list[VersionedRow]:
        """Every version, oldest first (the first ``limit``)."""
        check_view(view)
        rows = self._rows(view, key)
        return rows if limit is None else rows[:limit]

    def scan_index(
        self, view: str, index: str, value: str | None = None, *, as_of_ms: int | None = None, limit: int = 100
    ) -> list[VersionedRow]:
        """Rows by secondary index, as :meth:`state.contracts.ReadOnlyView.scan_index` and :mod:`state.indexes` say.

        Equality now: by the current version's valid_from, then key; as of T: by the valid_to
        of the version valid at T (current ones last), then key. Ranking: by value, largest
        first, then key (then valid_from, as of T).
        """
        spec = find_index(view, index)
        if spec.kind == "equality" and value is None:
            raise UnknownIndexError(f"index {spec.name} of {view} is an equality index: give a value, e.g. {spec.name}=SHIPPED")
        if limit <= 0:
            return []
        hits: list[tuple[Any, VersionedRow]] = []
        for (row_view, key), _ in self.data.versions.items():
            if row_view != view:
                continue
            rows = self._rows(view, key)
            if as_of_ms is None:
                valid = rows[-1]
            else:
                at = [r for r in rows if r.valid_from_ms <= as_of_ms and (r.valid_to_ms is None or as_of_ms < r.valid_to_ms)]
                if not at:
                    continue
                valid = at[0]
            found = spec.value_of(valid.row)
            if found is None:
                continue
            if spec.kind == "equality":
                if found != str(value):
                    continue
                if as_of_ms is None:
                    order: Any = (valid.valid_from_ms, _key_order(key))
                else:
                    order = (valid.valid_to_ms is None, valid.valid_to_ms or 0, _key_order(key))
            else:
                order = (-int(found), _key_order(key), valid.valid_from_ms)
            hits.append((order, valid))
        hits.sort(key=lambda hit: hit[0])
        return [row for _, row in hits[:limit]]

    def position(self) -> dict[str, dict[int, int]]:
        """``{topic: {partition: next_offset}}`` (a copy)."""
        return {topic: dict(parts) for topic, parts in self.data.position.items()}

    def source_position(self, view: str) -> dict[str, dict[int, int]]:
        """Per orders partition, one past the highest source offset of a change ``view`` received (a copy)."""
        check_view(view)
        return {topic: dict(parts) for topic, parts in self.data.source_position.get(view, {}).items()}

    # -- WritableProjectionStore -----------------------------------------------------------

    def apply(self, updates: Sequence[ViewUpdate], *, position: Position) -> int:
        """See :meth:`state.contracts.WritableProjectionStore.apply`: all or nothing, the position with the data."""
        if self._closed:
            raise StoreError("memory store is closed")
        for update in updates:
            check_view(update.view)
            if view_spec(update.view).rekeyed and update.delta is None:
                raise InvalidUpdateError(f"{update.view} update for key {update.key!r} has no delta")
        stored = self.data.position
        fresh = [
            u for u in updates
            if u.record_position is None
            or u.record_position.offset >= stored.get(u.record_position.topic, {}).get(u.record_position.partition, 0)
        ]
        groups: dict[tuple[str, str], list[ViewUpdate]] = {}
        for update in fresh:
            groups.setdefault((update.view, update.key), []).append(update)
        applied = 0
        for (view, key), group in groups.items():
            if view_spec(view).rekeyed:
                applied += self._apply_changes(view, key, group)
            else:
                applied += self._apply_rows(view, key, group)
        for update in fresh:
            if update.source is not None:
                parts = self.data.source_position.setdefault(update.view, {}).setdefault(update.source.topic, {})
                parts[update.source.partition] = max(parts.get(update.source.partition, 0), update.source.offset + 1)
        for topic, partitions in position.items():
            for partition, next_offset in partitions.items():
                parts = self.data.position.setdefault(topic, {})
                parts[partition] = max(parts.get(partition, next_offset), next_offset)
        return applied

    def _apply_rows(self, view: str, key: str, group: list[ViewUpdate]) -> int:
        """A per-order view: each update's row is a version; a seq at or below the latest's is a duplicate;
        valid_from never decreases (an earlier one is raised to the latest's); a later seq at the
        same valid_from replaces that version."""
        versions = self.data.versions.setdefault((view, key), [])
        applied = 0
        for update in group:
            latest = versions[-1] if versions else None
            if latest is not None and latest.seq is not None and update.seq <= latest.seq:
                continue
            valid_from_ms = update.row_valid_from_ms if latest is None else max(update.row_valid_from_ms, latest.valid_from_ms)
            version = _Version(valid_from_ms, update.row, update.source, update.seq)
            if latest is not None and latest.valid_from_ms == valid_from_ms:
                versions[-1] = version
            else:
                versions.append(version)
            applied += 1
        if not versions:
            del self.data.versions[(view, key)]
        return applied

    def _apply_changes(self, view: str, key: str, group: list[ViewUpdate]) -> int:
        """A counter view: store each change not stored yet; if the published row of the call's last
        update disagrees with the fold, add the difference as a correction change at the call's
        first change time; then re-derive every version from the changes."""
        changes = self.data.changes.setdefault((view, key), {})
        new_ids: list[_ChangeId] = []
        for update in group:
            ident = (update.change_valid_from_ms, update.order_id, update.seq)
            if ident in changes:
                continue
            assert update.delta is not None  # checked before anything changed
            changes[ident] = _Change(dict(update.delta), update.source)
            new_ids.append(ident)
        if not new_ids:
            return 0
        applied = len(new_ids)
        last = group[-1]
        last_ident = (last.change_valid_from_ms, last.order_id, last.seq)
        if last.row and last_ident in new_ids:
            derived = self._fold(view, key, changes)[-1][1]
            diff = {
                name: value - derived.get(name, 0)
                for name, value in last.row.items()
                if name != "validFrom" and isinstance(value, int) and not isinstance(value, bool) and value != derived.get(name, 0)
            }
            if diff:
                first_ms = min(ident[0] for ident in new_ids)
                seq = last.record_position.offset if last.record_position is not None else last.seq
                correction = (first_ms, _CORRECTION, seq)
                prior = changes.get(correction)
                if prior is not None:
                    for name, amount in diff.items():
                        prior.delta[name] = prior.delta.get(name, 0) + amount
                else:
                    changes[correction] = _Change(diff, None)
                    new_ids.append(correction)
        old = {v.valid_from_ms: v for v in self.data.versions.get((view, key), [])}
        first_new_ms = min(ident[0] for ident in new_ids)
        versions = []
        for valid_from_ms, row, ids in self._fold(view, key, changes):
            mine = [i for i in ids if i in new_ids]
            if mine:
                source = changes[mine[-1]].source
            elif valid_from_ms < first_new_ms:
                source = old[valid_from_ms].source
            else:
                source = None  # re-derived only because an earlier change arrived
            versions.append(_Version(valid_from_ms, row, source, None))
        self.data.versions[(view, key)] = versions
        return applied

    @staticmethod
    def _fold(view: str, key: str, changes: Mapping[_ChangeId, _Change]) -> list[tuple[int, dict[str, Any], list[_ChangeId]]]:
        """(valid_from_ms, row, ids of the changes at that time) per distinct change time, oldest first."""
        apply = get_projection(view).apply
        out: list[tuple[int, dict[str, Any], list[_ChangeId]]] = []
        row: dict[str, Any] | None = None
        for ident in sorted(changes):
            valid_from_ms, order_id, seq = ident
            row = apply(row, Change(key, dict(changes[ident].delta), order_id, seq, valid_from_ms))
            if out and out[-1][0] == valid_from_ms:
                out[-1] = (valid_from_ms, row, [*out[-1][2], ident])
            else:
                out.append((valid_from_ms, row, [ident]))
        return out

    def close(self) -> None:
        """Nothing to flush; further applies are refused (open a new store on :attr:`data` to continue)."""
        self._closed = True
