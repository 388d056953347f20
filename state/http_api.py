"""The HTTP query API (FastAPI): views by key, by index, as of any time, with positions.

Endpoints (OpenAPI at ``/docs``)::

    GET /views                                   views, their key field and indexes, position
    GET /views/{view}/{key}?as_of=               one row, now or as of a time (inclusive)
    GET /views/{view}?index=&value=&as_of=&limit=  rows by secondary index
    GET /views/{view}/{key}/history?limit=       every version, oldest first
    GET /healthz                                 ok / degraded (200), unavailable (503), with the reason
    GET /metrics                                 Prometheus text format

Every query takes ``min_position`` and ``wait_ms`` (read-your-writes, see
:mod:`state.query_args`). Errors are one-line JSON ``{"error": name, "detail": reason}``:
unknown view, key or endpoint 404; a timestamp outside years 1-9999, a key or index value
over 65,535 bytes, a malformed index, position or parameter 422; replica behind the asked
position 503 (with ``behind`` per topic and partition), or its store unreadable 503. Never
a 500 for anything the caller sent, never a 503 for the caller's own mistake. The OpenAPI
document declares every status and body, and a fuzzer holds the app to it
(tests/unit/state/test_http_fuzz.py).

Keys are path segments and may hold any character: percent-encode them, a slash as ``%2F``.
The ``/views/...`` routes match the path *as sent* (:class:`_RawPathMiddleware`), so
``/views/order-status/a%2Fhistory`` is the row ``a/history``, never the history of ``a``:
no key can reach another endpoint. (The alternative, refusing keys with a '/', would leave
rows whose key holds one unreadable over HTTP; an orderId is any string its producer chose.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from pipelines.errors import UnknownViewError
from pipelines.projections import VIEW_NAMES
from schemas.errors import RewindError
from state.errors import InvalidUpdateError, KeyNotFoundError, QueryError, ReplicaBehindError, StoreError
from state.http_bodies import Health, HistoryAnswer, RowAnswer, RowsAnswer, ViewList, responses
from state.http_dlq import dlq_router
from state.query import DEFAULT_WAIT_MS, MAX_LIMIT, MAX_WAIT_MS, QueryService, position_json
from state.query_args import MAX_KEY_BYTES, MAX_TIME_MS, MIN_TIME_MS
from state.records import dumps
from state.replica import ReplicaStatus
from state.web_routes import web_router

__all__ = ["create_app", "status_of"]


def _optional_string(string_format: str) -> dict[str, Any]:
    # Replaces the anyOf FastAPI derives from `str | None`: a format belongs on the string branch.
    return {"anyOf": [{"type": "string", "format": string_format}, {"type": "null"}]}


# The custom formats name these syntaxes for clients and fuzzers (tests/unit/state/test_http_fuzz.py generates them).
_AS_OF = Query(
    None,
    description="ISO-8601 with zone (2026-11-21T15:00:00Z) or epoch ms; inclusive bound; years 1-9999 "
    f"(epoch ms {MIN_TIME_MS} to {MAX_TIME_MS}). Omit for now.",
    json_schema_extra=_optional_string("rewind-timestamp"),
)
_MIN_POSITION = Query(
    None,
    description="Wait until the replica reached this position: topic:partition:next_offset[,...] or JSON {topic: {partition: next_offset}}; "
    "a Kafka topic name, partition 0 to 2^31-1, offset 0 to 2^63-1.",
    json_schema_extra=_optional_string("rewind-position"),
)
_WAIT_MS = Query(None, ge=0, le=MAX_WAIT_MS, description=f"How long to wait for min_position (default {DEFAULT_WAIT_MS}).")
# The enum documents the views; an unknown one is still answered by the handler (404 UnknownViewError, not a 422).
_VIEW = Path(description="View name (GET /views lists them).", json_schema_extra={"enum": list(VIEW_NAMES)})
_KEY = Path(
    description=f"Row key, at most {MAX_KEY_BYTES} bytes of UTF-8. Percent-encode it: a slash is %2F, and stays part of the key.",
    json_schema_extra={"format": "rewind-key"},
)
#: An error's detail is one line of at most this many characters (it may echo what the caller sent).
_DETAIL_CHARS = 500


def status_of(exc: Exception) -> int:
    """The HTTP status of a deliberate error."""
    if isinstance(exc, (UnknownViewError, KeyNotFoundError)):
        return 404
    if isinstance(exc, ReplicaBehindError):
        return 503
    if isinstance(exc, QueryError):
        return 422
    if isinstance(exc, InvalidUpdateError):
        # On the query side only the caller's own arguments are ever encoded into store keys.
        return 422
    if isinstance(exc, StoreError):
        return 503
    return 400


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    # orjson straight to bytes: the JSON response class of FastAPI validates and re-encodes.
    return Response(dumps(body), status_code=status, media_type="application/json", headers=headers)


def _one_line(text: str) -> str:
    lines = text.splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= _DETAIL_CHARS else line[: _DETAIL_CHARS - 3] + "..."


def _error(exc: Exception, status: int, **extra: Any) -> Response:
    return _json({"error": type(exc).__name__, "detail": _one_line(str(exc)) or type(exc).__name__, **extra}, status)


def _segment(text: str) -> str:
    """A path parameter as the caller meant it (see :class:`_RawPathMiddleware`, which left it encoded)."""
    return unquote(text, errors="strict")


class _RawPathMiddleware:
    """Routes ``/views/...`` by the path as sent, so a percent-encoded slash stays inside its segment.

    ASGI servers give the router a decoded ``path``: ``/views/v/a%2Fhistory`` arrives as
    ``/views/v/a/history`` and would match the history route with key ``a``. This rebuilds
    ``path`` from ``raw_path`` with every segment percent-encoded (no segment can then hold a
    '/'), and the handlers decode their view and key parameters (:func:`_segment`). A segment
    that is not UTF-8 once decoded is refused here with a 422: decoding it with replacement
    characters would look up some other key.
    """

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if scope["type"] != "http" or not path[len(root) :].startswith("/views/"):
            await self._app(scope, receive, send)
            return
        raw = scope.get("raw_path")
        try:
            if isinstance(raw, bytes) and raw.startswith(root.encode()):
                decoded = [unquote_to_bytes(part) for part in raw[len(root.encode()) :].split(b"/")]
            else:
                # No raw path from this server: the decoded one is all there is (its slashes stay ambiguous).
                decoded = [part.encode() for part in path[len(root) :].split("/")]
            for part in decoded:
                part.decode()
        except UnicodeDecodeError:
            response = _json({"error": "InvalidRequest", "detail": "the path is not UTF-8 once percent-decoded"}, 422)
            await response(scope, receive, send)
            return
        # In place, not a copy: the metrics middleware reads the matched route back from this dict.
        scope["path"] = root + "/".join(quote(part, safe="") for part in decoded)
        await self._app(scope, receive, send)


class _Metrics:
    """Prometheus metrics, in a registry of their own (one per app, so tests can build many)."""

    def __init__(self, service: QueryService, replica_status: Callable[[], ReplicaStatus] | None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rewind_query_requests", "Query API requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "rewind_query_latency_seconds", "Query API latency", ["route"], registry=self.registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5, 10.0),
        )
        self._service = service
        self._replica_status = replica_status
        self.registry.register(self)

    def collect(self) -> Any:
        """Store position, apply counters and replica lag, read at scrape time."""
        position = GaugeMetricFamily("rewind_replica_next_offset", "Next offset to apply", labels=["topic", "partition"])
        for topic, parts in self._service.store.position().items():
            for partition, offset in parts.items():
                position.add_metric([topic, str(partition)], offset)
        yield position
        counts = getattr(self._service.store, "counts", None)  # a backend may not count
        if counts is not None:
            applied = CounterMetricFamily("rewind_replica_updates", "View updates by outcome", labels=["outcome"])
            for outcome in ("applied", "skipped_position", "skipped_duplicate", "clamped_valid_from", "rederived_versions", "corrections"):
                applied.add_metric([outcome], getattr(counts, outcome))
            yield applied
        if self._replica_status is not None:
            status = self._replica_status()
            lag = GaugeMetricFamily(
                "rewind_replica_lag", "Offsets the replica has still to read (0 when caught up)", labels=["topic", "partition"]
            )
            for topic, parts in status.lag.items():
                for partition, behind in parts.items():
                    lag.add_metric([topic, str(partition)], behind)
            yield lag
            yield CounterMetricFamily("rewind_replica_malformed_records", "Skipped malformed view records", value=status.malformed)
            yield GaugeMetricFamily(
                "rewind_replica_broker_unreachable_seconds", "How long the broker has not answered the replica (0 while it answers)",
                value=status.broker_unreachable_s or 0.0,
            )


class _MetricsMiddleware:
    """Counts and times every request by route template. Pure ASGI: BaseHTTPMiddleware costs ~100 µs a request."""

    def __init__(self, app: Any, *, metrics: _Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status_box = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            # The router stores the matched route in this same scope dict.
            route = getattr(scope.get("route"), "path", "unmatched")
            self._metrics.requests.labels(route, str(status_box[0])).inc()
            self._metrics.latency.labels(route).observe(time.perf_counter() - started)


def create_app(service: QueryService, *, replica_status: Callable[[], ReplicaStatus] | None = None) -> FastAPI:
    """The FastAPI app over ``service``. ``replica_status`` feeds /healthz (None: a static store)."""
    app = FastAPI(
        title="Rewind query API",
        description="Order-event views now and as of any past time, from the versioned read replica.",
        version="1",
    )
    metrics = _Metrics(service, replica_status)
    app.add_middleware(_RawPathMiddleware)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)  # outermost: it times everything

    @app.exception_handler(RewindError)
    async def _rewind_error(request: Request, exc: RewindError) -> Response:
        # The position tells a caller what the answer was based on (e.g. "no row yet at this position").
        extra: dict[str, Any] = {"position": position_json(service.store.position())}
        if isinstance(exc, ReplicaBehindError):
            extra["behind"] = position_json(exc.behind)
        return _error(exc, status_of(exc), **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        detail = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return _json({"error": "InvalidRequest", "detail": _one_line(detail)}, 422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # No such endpoint (404) or method (405): the same one-line shape as every other error.
        try:
            name = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        except ValueError:
            name = "HTTPError"
        detail = _one_line(f"{request.method} {request.url.path}: {exc.detail} (the endpoints are listed at /docs)")
        return _json({"error": name, "detail": detail}, exc.status_code, headers=exc.headers)

    async def call(waits: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # A point read takes microseconds: run it on the event loop (a thread hop would
        # cost more than the read). A min_position wait may block for up to wait_ms, and
        # a scan or history may walk many entries: those go to the thread pool.
        if waits:
            return await run_in_threadpool(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    @app.get("/views", summary="List views, their key field and indexes, and the replica position", responses=responses(ViewList))
    async def list_views() -> Response:
        return _json(service.list_views())

    @app.get("/views/{view}/{key}/history", summary="Every version of one row, oldest first", responses=responses(HistoryAnswer, 404, 422, 503))
    async def history(
        view: str = _VIEW, key: str = _KEY,
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many (oldest first)."),
        min_position: str | None = _MIN_POSITION, wait_ms: int | None = _WAIT_MS,
    ) -> Response:
        answer = await call(True, service.history, _segment(view), _segment(key), limit=limit, min_position=min_position, wait_ms=wait_ms)
        return _json(answer.to_json())

    @app.get(
        "/views/{view}/{key}", summary="One row, now or as of a time (greatest valid_from <= as_of)", responses=responses(RowAnswer, 404, 422, 503)
    )
    async def get_row(
        view: str = _VIEW, key: str = _KEY, as_of: str | None = _AS_OF, min_position: str | None = _MIN_POSITION, wait_ms: int | None = _WAIT_MS
    ) -> Response:
        answer = await call(
            bool(min_position), service.get, _segment(view), _segment(key), as_of=as_of, min_position=min_position, wait_ms=wait_ms
        )
        return _json(answer.to_json())

    @app.get(
        "/views/{view}", summary="Rows by secondary index (equality: value required; ranking: top rows)",
        responses=responses(RowsAnswer, 404, 422, 503),
    )
    async def scan(
        view: str = _VIEW,
        index: str = Query(
            ..., description="Index name or the field it reads, e.g. status, lifetimeValue, revenue (GET /views lists them); "
            "or name=value for an equality index.", json_schema_extra={"format": "rewind-index"},
        ),
        value: str | None = Query(
            None, description=f"Value for an equality index, e.g. SHIPPED (at most {MAX_KEY_BYTES} bytes of UTF-8).",
            json_schema_extra=_optional_string("rewind-key"),
        ),
        as_of: str | None = _AS_OF,
        limit: int = Query(100, ge=1, le=MAX_LIMIT, description="At most this many rows."),
        min_position: str | None = _MIN_POSITION,
        wait_ms: int | None = _WAIT_MS,
    ) -> Response:
        answer = await call(
            True, service.scan, _segment(view), index=index, value=value, as_of=as_of, limit=limit,
            min_position=min_position, wait_ms=wait_ms,
        )
        return _json(answer.to_json())

    @app.get(
        "/healthz", summary="ok or degraded (200: answers from the store), unavailable (503: the replica loop stopped); reason says why",
        responses={
            200: {"model": Health, "description": "ok, or degraded: the broker is unreachable, answers are from the store as of its position"},
            503: {"model": Health, "description": "The replica loop stopped (reason and replica.error say why)"},
        },
    )
    async def healthz() -> Response:
        """The replica's health: ``ok``, ``degraded`` or ``unavailable``, with a one-line ``reason`` (null when ok).

        - ok (200): the replica loop runs and its broker answers (or the store is static).
        - degraded (200): the loop runs but the broker has not answered for a while, e.g.
          "broker 127.0.0.1:9092 unreachable for 42 s". Still 200 on purpose: every answer is
          right as of the position it carries, and the loop resumes by itself when the broker
          returns. Every replica loses the same broker at the same time, so a 503 would have a
          load balancer take all of them out of rotation and turn a write-side outage into a
          read outage. Monitoring alerts on ``status``/``reason`` (or the
          ``rewind_replica_broker_unreachable_seconds`` gauge); a caller that needs fresh data
          says so with ``min_position`` and gets a 503 when the replica is behind it.
        - unavailable (503): the loop stopped (``replica.error``); the store no longer follows
          the views, and only a restart helps, so a load balancer should take this one out.
        """
        body: dict[str, Any] = {"position": position_json(service.store.position())}
        state, reason = "ok", None
        if replica_status is not None:
            status = replica_status()
            if not status.running or status.error is not None:
                state, reason = "unavailable", f"replica loop stopped: {status.error}" if status.error else "replica loop not running"
            elif status.broker_unreachable_s is not None:
                state = "degraded"
                reason = f"broker {status.bootstrap} unreachable for {status.broker_unreachable_s:.0f} s; answering from the store as of its position"
            body["replica"] = {
                "running": status.running, "error": status.error, "records": status.records,
                "malformed": status.malformed, "last_malformed": status.last_malformed, "lag": position_json(status.lag),
                "broker_unreachable_s": None if status.broker_unreachable_s is None else round(status.broker_unreachable_s, 1),
            }
        body["status"], body["reason"] = state, reason
        return _json(body, 503 if state == "unavailable" else 200)

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(web_router())  # the time-slider page: / and /static/{name} (state/web_routes.py)
    app.include_router(dlq_router(replica_status))  # GET /dlq and /dlq/{id}: dead letters (state/http_dlq.py)
    return app
