"""``GET /dlq`` and ``GET /dlq/{id}`` on `rewind serve`: the dead letters, read from the DLQ topic on each request.

Endpoints (OpenAPI at ``/docs``)::

    GET /dlq?reason=&order=&pipeline=&limit=   letters that match (first ``limit`` by id), count by reason
    GET /dlq/{id}                              one letter in full; id = partition:offset, as listed

The same reader as `rewind dlq list|show` (:mod:`pipelines.dlq_reader`: committed letters,
to the topic's end as of the request, every header decoded). The broker is the one the
replica reads (its :class:`~state.replica.ReplicaStatus` ``bootstrap``); the topic and the
registry for Confluent-framed values come from the settings the pipelines use
(REWIND_DLQ_TOPIC, REWIND_SCHEMA_REGISTRY_URL), read when the app is built.

Errors are the API's one-line JSON ``{"error", "detail"}``: a malformed id or parameter
422; no such letter, or no such DLQ topic on the broker, 404; an app that reads no broker
at all (a static store, as in tests) 404 ``DlqNotServed``; the broker not answering within
a few seconds, or the read not ending in time, 503 with the reason. Never a hang: every
read is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import KafkaException
from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from pipelines.dlq_reader import (
    DlqTopicNotFoundError,
    InvalidLetterIdError,
    LetterFilter,
    LetterId,
    LetterNotFoundError,
    list_letters,
    read_letter,
)
from pipelines.settings import RewindSettings
from schemas.errors import RewindError
from state.http_bodies import ErrorBody
from state.records import dumps

if TYPE_CHECKING:
    from pipelines.dlq_reader import Decode
    from state.replica import ReplicaStatus

__all__ = ["dlq_router", "DlqList", "LetterSummary", "LetterDetail", "LetterSource", "MAX_DLQ_LIMIT"]

#: The most letters one GET /dlq lists (the count by reason still covers every match).
MAX_DLQ_LIMIT: Final = 10_000
#: How long a request waits for the broker to answer at all, and for the whole read.
_CONNECT_TIMEOUT_S: Final = 3.0
_READ_TIMEOUT_S: Final = 15.0
_DETAIL_CHARS: Final = 500


class LetterSource(BaseModel):
    """Where the refused record came from (its orders topic, partition and offset)."""

    topic: str
    partition: int | None
    offset: int | None


class LetterSummary(BaseModel):
    """One dead letter without its value: id (partition:offset in the DLQ topic), why, where from, every header."""

    id: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    order_id: str | None
    seq: int | None
    event_type: str | None
    reason_class: str | None
    reason: str | None
    pipeline: str | None
    source: LetterSource | None
    dead_lettered_at_ms: int | None
    dead_lettered_at: str | None
    headers: dict[str, str | None]


class LetterDetail(LetterSummary):
    """GET /dlq/{id}: the letter with its key and value bytes; ``event`` when the value decodes, else ``value_hex`` (first bytes) and ``decode_error``."""

    key_hex: str | None
    value_bytes: int | None
    event: dict[str, Any] | None
    decode_error: str | None
    value_hex: str | None


class DlqList(BaseModel):
    """GET /dlq: the first ``shown`` of ``count`` matching letters (by id), and all ``count`` of them by reason class."""

    topic: str
    count: int
    shown: int
    by_reason: dict[str, int]
    letters: list[LetterSummary]


def _responses(ok: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": ok},
        404: {"model": ErrorBody, "description": "No such letter; the DLQ topic does not exist; or this server reads no broker (DlqNotServed)"},
        422: {"model": ErrorBody, "description": "Malformed letter id (partition:offset) or parameter"},
        503: {"model": ErrorBody, "description": "The broker did not answer, or the DLQ was not read to its end in time (detail says which)"},
    }


def _json(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def _error(name: str, detail: str, status: int) -> Response:
    line = (detail.splitlines() or [name])[0]
    line = line if len(line) <= _DETAIL_CHARS else line[: _DETAIL_CHARS - 3] + "..."
    return _json({"error": name, "detail": line}, status)


def _status(exc: Exception) -> int:
    if isinstance(exc, InvalidLetterIdError):
        return 422
    if isinstance(exc, (LetterNotFoundError, DlqTopicNotFoundError)):
        return 404
    return 503  # BrokerUnreachableError, DlqReadError, a KafkaException: the broker, not the caller's request


def dlq_router(replica_status: Callable[[], ReplicaStatus] | None, *, settings: RewindSettings | None = None) -> APIRouter:
    """The /dlq routes, reading the DLQ from the broker ``replica_status().bootstrap`` names.

    ``replica_status`` None, or one with no bootstrap: the app reads no broker, and the routes
    answer 404 DlqNotServed (after checking their arguments). ``settings``: where the DLQ
    topic, the registry URL and the connect timeout come from; None reads them from the
    environment now, as the pipelines do.
    """
    router = APIRouter()
    problem: str | None = None
    if settings is None:
        try:
            settings = RewindSettings()
        except ValidationError as exc:  # the CLI has refused these already; an app built elsewhere says so per request
            problem = f"the settings are invalid: {exc.errors()[0].get('msg')}"
    topic = settings.dlq_topic if settings is not None else ""
    registry_url = settings.schema_registry_url if settings is not None else None
    connect_timeout_s = min(settings.connect_timeout_s, _CONNECT_TIMEOUT_S) if settings is not None else _CONNECT_TIMEOUT_S

    @lru_cache(maxsize=1)
    def decoder() -> Decode:
        from schemas.fast_decode import event_decoder  # built on first use: it compiles every schema

        return event_decoder(registry_url)

    def bootstrap() -> str | Response:
        """The broker to read, or the answer to give instead."""
        if problem is not None:
            return _error("DlqUnavailable", problem, 503)
        status = replica_status() if replica_status is not None else None
        if status is None or not status.bootstrap:
            return _error("DlqNotServed", "this server reads no Kafka broker (a static store): it has no dead letters to list", 404)
        return status.bootstrap

    @router.get("/dlq", summary="Dead letters (first `limit` by id), and all matching ones counted by reason class",
                responses=_responses(DlqList))
    async def dlq_list(
        reason: str | None = Query(None, min_length=1, description="Only this reason class, exactly (e.g. ImpossibleTransition)."),
        order: str | None = Query(None, min_length=1, description="Only letters of this order (the event's orderId, or the record key)."),
        pipeline: str | None = Query(None, min_length=1, description="Only letters this pipeline wrote (e.g. order-status)."),
        limit: int = Query(100, ge=0, le=MAX_DLQ_LIMIT, description="At most this many letters (the counts cover all)."),
    ) -> Response:
        broker = bootstrap()
        if isinstance(broker, Response):
            return broker
        where = LetterFilter(reason=reason, order=order, pipeline=pipeline)
        try:
            listing = await run_in_threadpool(list_letters, broker, topic, decode=decoder(), where=where, limit=limit,
                                              timeout_s=_READ_TIMEOUT_S, connect_timeout_s=connect_timeout_s)
        except (RewindError, KafkaException) as exc:
            return _error(type(exc).__name__, str(exc), _status(exc))
        return _json({
            "topic": listing.topic, "count": listing.matched, "shown": len(listing.letters), "by_reason": dict(listing.by_reason),
            "letters": [letter.summary_json() for letter in listing.letters],
        })

    @router.get("/dlq/{letter_id}", summary="One dead letter in full (id = partition:offset, as GET /dlq lists it)",
                responses=_responses(LetterDetail))
    async def dlq_letter(
        letter_id: str = Path(description="partition:offset in the DLQ topic, e.g. 3:17.", pattern=r"^[0-9]{1,12}:[0-9]{1,20}$"),
    ) -> Response:
        try:
            wanted = LetterId.parse(letter_id)
        except InvalidLetterIdError as exc:
            return _error(type(exc).__name__, str(exc), 422)
        broker = bootstrap()
        if isinstance(broker, Response):
            return broker
        try:
            letter = await run_in_threadpool(read_letter, broker, topic, wanted, decode=decoder(),
                                             timeout_s=_READ_TIMEOUT_S, connect_timeout_s=connect_timeout_s)
        except (RewindError, KafkaException) as exc:
            return _error(type(exc).__name__, str(exc), _status(exc))
        return _json(letter.full_json())

    return router

