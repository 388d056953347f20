"""The query service: what the CLI and the HTTP API ask, over a read-only store.

Every answer carries the store's position (``{topic: {partition: next_offset}}``) read
*before* the rows: the rows reflect at least that position (the replica may have applied
more by the time they were read, never less). A query may pass a minimum position
(:mod:`state.query_args`); it then waits up to ``wait_ms`` for the replica to reach it and
otherwise fails with :class:`ReplicaBehindError` saying how far behind it is per partition.

As-of contract (from :mod:`state.contracts`): ``as_of`` is inclusive; an answer row shows
valid_from (inclusive) and valid_to (exclusive, None while current). No row as of T is a
:class:`KeyNotFoundError`, the same as a key that never existed.

Every argument is checked before the store is touched (:mod:`state.query_args`: time range,
key and value size, position syntax), so a bad argument is a :class:`QueryError` (or a
subclass), never a store error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pipelines.projections import get_projection
from state.contracts import ApplyWatch, ReadOnlyView, VersionedRow
from state.errors import KeyNotFoundError, QueryError, ReplicaBehindError
from state.indexes import check_view, find_index, indexes_of
from state.query_args import check_key, format_iso, format_position, missing, parse_min_position, parse_timestamp, shorten, time_fields

__all__ = ["Answer", "QueryService", "row_json", "position_json", "DEFAULT_WAIT_MS", "MAX_WAIT_MS", "MAX_LIMIT"]

DEFAULT_WAIT_MS = 2000
MAX_WAIT_MS = 60_000
MAX_LIMIT = 10_000
#: A waiter re-checks at least this often, so a wake-up lost between check and wait costs little.
_RECHECK_S = 0.05


def row_json(row: VersionedRow) -> dict[str, Any]:
    """A VersionedRow as JSON: key, row, valid_from/valid_to (ms and ISO), source."""
    source = None if row.source is None else {"topic": row.source.topic, "partition": row.source.partition, "offset": row.source.offset}
    return {
        "key": row.key,
        "row": row.row,
        **time_fields("valid_from", row.valid_from_ms),
        **time_fields("valid_to", row.valid_to_ms),
        "source": source,
    }


def position_json(position: dict[str, dict[int, int]]) -> dict[str, dict[str, int]]:
    """A position with string partition keys (JSON objects have string keys), sorted."""
    return {topic: {str(p): o for p, o in sorted(parts.items())} for topic, parts in sorted(position.items())}


@dataclass(frozen=True, slots=True)
class Answer:
    """One query's answer: the rows, what was asked, and the position they reflect (at least)."""

    kind: Literal["row", "rows", "history"]
    view: str
    rows: tuple[VersionedRow, ...]
    position: dict[str, dict[int, int]]
    source_position: dict[str, dict[int, int]]
    key: str | None = None
    as_of_ms: int | None = None
    index: str | None = None
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON body (HTTP) / output (CLI)."""
        out: dict[str, Any] = {"view": self.view}
        if self.key is not None:
            out["key"] = self.key
        if self.index is not None:
            out["index"] = self.index
            out["value"] = self.value
        out.update(time_fields("as_of", self.as_of_ms))
        if self.kind == "row":
            out["row"] = row_json(self.rows[0])
        elif self.kind == "rows":
            out["count"] = len(self.rows)
            out["rows"] = [row_json(r) for r in self.rows]
        else:
            out["count"] = len(self.rows)
            out["versions"] = [row_json(r) for r in self.rows]
        out["position"] = position_json(self.position)
        out["source_position"] = position_json(self.source_position)
        return out


class QueryService:
    """Answers queries from a :class:`~state.contracts.ReadOnlyView` (never anything writable)."""

    def __init__(self, store: ReadOnlyView, *, default_wait_ms: int = DEFAULT_WAIT_MS) -> None:
        self._store = store
        self.default_wait_ms = default_wait_ms

    @property
    def store(self) -> ReadOnlyView:
        """The read-only store (for health and metrics)."""
        return self._store

    # -- positions ---------------------------------------------------------------------

    def _reached(self, view: str | None, required: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
        position = self._store.position()
        sources = self._store.source_position(view) if view is not None else {}
        return {topic: position[topic] if topic in position else sources.get(topic, {}) for topic in required}

    def await_position(self, view: str | None, min_position: str | dict[str, dict[int, int]] | None, *, wait_ms: int | None) -> None:
        """Return once the store reached ``min_position`` (see :mod:`state.query_args`); else ReplicaBehindError.

        Waits at most ``wait_ms`` (default :attr:`default_wait_ms`, capped at MAX_WAIT_MS).
        """
        required = parse_min_position(min_position) if not isinstance(min_position, dict) else min_position
        if not required:
            return
        budget_ms = self.default_wait_ms if wait_ms is None else max(0, min(wait_ms, MAX_WAIT_MS))
        deadline = time.monotonic() + budget_ms / 1000
        while True:
            short = missing(required, self._reached(view, required))
            if not short:
                return
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise ReplicaBehindError(
                    f"replica did not reach the min_position within {budget_ms} ms; "
                    f"behind by (topic:partition:offsets) {format_position(short)}",
                    behind=short,
                )
            if isinstance(self._store, ApplyWatch):
                self._store.wait_for_apply(timeout_s=min(remaining_s, _RECHECK_S))
            else:
                time.sleep(min(remaining_s, 0.01))

    def _answer(self, kind: Literal["row", "rows", "history"], view: str, rows: list[VersionedRow], position: dict[str, dict[int, int]], **kw: Any) -> Answer:
        return Answer(kind, view, tuple(rows), position, self._store.source_position(view), **kw)

    # -- queries -----------------------------------------------------------------------

    def list_views(self) -> dict[str, Any]:
        """Every view with its key field and indexes, and the store's position."""
        views = []
        for view in self._store.views():
            specs = [{"name": s.name, "field": s.field, "kind": s.kind} for s in indexes_of(view)]
            views.append({"view": view, "key_field": get_projection(view).key_field, "indexes": specs})
        return {"views": views, "position": position_json(self._store.position())}

    def get(
        self, view: str, key: str, *, as_of: str | int | None = None, min_position: str | None = None, wait_ms: int | None = None
    ) -> Answer:
        """Row ``key`` now, or as of ``as_of`` (inclusive); KeyNotFoundError when there is none."""
        check_view(view)
        check_key(key)
        as_of_ms = None if as_of is None else parse_timestamp(as_of)
        self.await_position(view, min_position, wait_ms=wait_ms)
        position = self._store.position()
        row = self._store.get(view, key) if as_of_ms is None else self._store.get_as_of(view, key, as_of_ms)
        if row is None:
            when = "" if as_of_ms is None else f" as of {format_iso(as_of_ms)} ({as_of_ms} ms)"
            raise KeyNotFoundError(f"{view} has no row {shorten(key)}{when}")
        return self._answer("row", view, [row], position, key=key, as_of_ms=as_of_ms)

    def scan(
        self,
        view: str,
        *,
        index: str,
        value: str | None = None,
        as_of: str | int | None = None,
        limit: int = 100,
        min_position: str | None = None,
        wait_ms: int | None = None,
    ) -> Answer:
        """Rows by secondary index (``index``, or ``index=value`` in one string), now or as of ``as_of``."""
        if value is None and "=" in index:
            index, value = index.split("=", 1)
        spec = find_index(view, index)
        if value is not None:
            check_key(value, what="index value")
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        as_of_ms = None if as_of is None else parse_timestamp(as_of)
        self.await_position(view, min_position, wait_ms=wait_ms)
        position = self._store.position()
        rows = self._store.scan_index(view, spec.name, value, as_of_ms=as_of_ms, limit=limit)
        return self._answer("rows", view, rows, position, as_of_ms=as_of_ms, index=spec.name, value=value if spec.kind == "equality" else None)

    def history(
        self, view: str, key: str, *, limit: int | None = None, min_position: str | None = None, wait_ms: int | None = None
    ) -> Answer:
        """Every version of ``key``, oldest first; KeyNotFoundError when it has none."""
        check_view(view)
        check_key(key)
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        self.await_position(view, min_position, wait_ms=wait_ms)
        position = self._store.position()
        rows = self._store.history(view, key, limit=limit)
        if not rows:
            raise KeyNotFoundError(f"{view} has no row {shorten(key)}")
        return self._answer("history", view, rows, position, key=key)
