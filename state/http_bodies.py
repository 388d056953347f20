"""The bodies the HTTP API answers with, as pydantic models: for the OpenAPI document only.

The handlers encode answers with orjson (:func:`state.records.dumps`) straight from
:meth:`state.query.Answer.to_json`; these models say what that JSON is, so /docs is exact
and tests/unit/state/test_http_fuzz.py can hold every answer to it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "Source", "Row", "AnswerBase", "RowAnswer", "RowsAnswer", "HistoryAnswer", "ErrorBody",
    "IndexInfo", "ViewInfo", "ViewList", "ReplicaHealth", "Health", "responses",
]

#: ``{topic: {partition: next_offset}}``, partitions as strings (JSON object keys).
_Position = dict[str, dict[str, int]]


class Source(BaseModel):
    """The record a version came from."""

    topic: str
    partition: int
    offset: int


class Row(BaseModel):
    """One version of a row: valid from valid_from (inclusive) to valid_to (exclusive; null while current)."""

    key: str
    row: dict[str, Any]
    valid_from_ms: int
    valid_from: str | None  # None only for a stored time outside years 1-9999
    valid_to_ms: int | None
    valid_to: str | None
    source: Source | None


class AnswerBase(BaseModel):
    """What every answer carries: the view, the as-of time asked (null: now) and the positions the rows reflect (at least)."""

    view: str
    as_of_ms: int | None
    as_of: str | None
    position: _Position
    source_position: _Position


class RowAnswer(AnswerBase):
    """GET /views/{view}/{key}: the version valid at as_of (greatest valid_from <= as_of)."""

    key: str
    row: Row


class RowsAnswer(AnswerBase):
    """GET /views/{view}?index=: rows in the index's order (value null for a ranking index)."""

    index: str
    value: str | None
    count: int
    rows: list[Row]


class HistoryAnswer(AnswerBase):
    """GET /views/{view}/{key}/history: every version, oldest first."""

    key: str
    count: int
    versions: list[Row]


class ErrorBody(BaseModel):
    """Every error: the error's name and a one-line reason; position (and behind, for ReplicaBehindError) when known."""

    error: str
    detail: str
    position: _Position | None = None
    behind: _Position | None = None


class IndexInfo(BaseModel):
    """A secondary index: its name, the field it reads, its kind."""

    name: str
    field: str
    kind: Literal["equality", "ranking"]


class ViewInfo(BaseModel):
    """A view, its key field and its indexes."""

    view: str
    key_field: str
    indexes: list[IndexInfo]


class ViewList(BaseModel):
    """GET /views."""

    views: list[ViewInfo]
    position: _Position


class ReplicaHealth(BaseModel):
    """The replica loop (lag: offsets still to read per topic and partition, 0 when caught up)."""

    running: bool
    error: str | None
    records: int
    malformed: int
    last_malformed: str | None
    lag: _Position
    broker_unreachable_s: float | None = None


class Health(BaseModel):
    """GET /healthz: ``status`` with its ``reason`` (null when ok); replica absent for a static store."""

    status: Literal["ok", "degraded", "unavailable"]
    reason: str | None = None
    position: _Position
    replica: ReplicaHealth | None = None


def responses(ok: type[BaseModel], *errors: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: ``ok`` for 200, :class:`ErrorBody` for each status in ``errors``."""
    reasons = {
        404: "Unknown view or key (or no row as of the time)",
        422: "Bad argument: time outside years 1-9999, key or value too long, malformed position or parameter",
        503: "The replica did not reach min_position within wait_ms (see behind), or its store is unreadable",
    }
    return {200: {"model": ok}, **{status: {"model": ErrorBody, "description": reasons[status]} for status in errors}}
