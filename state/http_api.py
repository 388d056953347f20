"""The HTTP query API (FastAPI): views by key, by index, as of any time, with positions.

Endpoints (OpenAPI at ``/docs``)::

    GET /views                                   views, their key field and indexes, position
    GET /views/{view}/{key}?as_of=               one row, now or as of a time (inclusive)
    GET /views/{view}?index=&value=&as_of=&limit=  rows by secondary index
    GET /views/{view}/{key}/history?limit=       every version, oldest first
    GET /healthz                                 200 while the replica loop runs, else 503
    GET /metrics                                 Prometheus text format

Every query takes ``min_position`` and ``wait_ms`` (read-your-writes, see
:mod:`state.query_args`). Errors are one-line JSON ``{"error": name, "detail": reason}``:
unknown view or key 404; malformed timestamp, index, position or parameter 422; replica
behind the asked position 503 (with ``behind`` per topic and partition). Never a 500 for
anything the caller sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pipelines.errors import UnknownViewError
from schemas.errors import RewindError
from state.errors import KeyNotFoundError, QueryError, ReplicaBehindError, StoreError
from state.query import DEFAULT_WAIT_MS, MAX_LIMIT, MAX_WAIT_MS, QueryService, position_json
from state.records import dumps
from state.replica import ReplicaStatus

__all__ = ["create_app", "status_of"]

_AS_OF = Query(None, description="ISO-8601 with zone (2026-11-21T15:00:00Z) or epoch ms; inclusive bound. Omit for now.")
_MIN_POSITION = Query(
    None,
    description="Wait until the replica reached this position: topic:partition:next_offset[,...] or JSON {topic: {partition: next_offset}}.",
)
_WAIT_MS = Query(None, ge=0, le=MAX_WAIT_MS, description=f"How long to wait for min_position (default {DEFAULT_WAIT_MS}).")


def status_of(exc: Exception) -> int:
    """The HTTP status of a deliberate error."""
    if isinstance(exc, (UnknownViewError, KeyNotFoundError)):
        return 404
    if isinstance(exc, ReplicaBehindError):
        return 503
    if isinstance(exc, QueryError):
        return 422
    if isinstance(exc, StoreError):
        return 503
    return 400


def _json(body: Any, status: int = 200) -> Response:
    # orjson straight to bytes: the JSON response class of FastAPI validates and re-encodes.
    return Response(dumps(body), status_code=status, media_type="application/json")


def _error(exc: Exception, status: int, **extra: Any) -> Response:
    return _json({"error": type(exc).__name__, "detail": str(exc).splitlines()[0] if str(exc) else type(exc).__name__, **extra}, status)


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
            lag = GaugeMetricFamily("rewind_replica_lag", "Records behind the partition's high watermark", labels=["topic", "partition"])
            for topic, parts in status.lag.items():
                for partition, behind in parts.items():
                    lag.add_metric([topic, str(partition)], behind)
            yield lag
            yield CounterMetricFamily("rewind_replica_malformed_records", "Skipped malformed view records", value=status.malformed)


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
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

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
        return _json({"error": "InvalidRequest", "detail": f"{where}: {first.get('msg')}" if where else str(first.get("msg"))}, 422)

    async def call(waits: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # A point read takes microseconds: run it on the event loop (a thread hop would
        # cost more than the read). A min_position wait may block for up to wait_ms, and
        # a scan or history may walk many entries: those go to the thread pool.
        if waits:
            return await run_in_threadpool(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    @app.get("/views", summary="List views, their key field and indexes, and the replica position")
    async def list_views() -> Response:
        return _json(service.list_views())

    @app.get("/views/{view}/{key}/history", summary="Every version of one row, oldest first")
    async def history(
        view: str, key: str, limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many (oldest first)."),
        min_position: str | None = _MIN_POSITION, wait_ms: int | None = _WAIT_MS,
    ) -> Response:
        answer = await call(True, service.history, view, key, limit=limit, min_position=min_position, wait_ms=wait_ms)
        return _json(answer.to_json())

    @app.get("/views/{view}/{key}", summary="One row, now or as of a time (greatest valid_from <= as_of)")
    async def get_row(
        view: str, key: str, as_of: str | None = _AS_OF, min_position: str | None = _MIN_POSITION, wait_ms: int | None = _WAIT_MS
    ) -> Response:
        answer = await call(bool(min_position), service.get, view, key, as_of=as_of, min_position=min_position, wait_ms=wait_ms)
        return _json(answer.to_json())

    @app.get("/views/{view}", summary="Rows by secondary index (equality: value required; ranking: top rows)")
    async def scan(
        view: str,
        index: str = Query(..., description="Index name, e.g. status, lifetimeValue, revenue (GET /views lists them)."),
        value: str | None = Query(None, description="Value for an equality index, e.g. SHIPPED."),
        as_of: str | None = _AS_OF,
        limit: int = Query(100, ge=1, le=MAX_LIMIT, description="At most this many rows."),
        min_position: str | None = _MIN_POSITION,
        wait_ms: int | None = _WAIT_MS,
    ) -> Response:
        answer = await call(
            True, service.scan, view, index=index, value=value, as_of=as_of, limit=limit,
            min_position=min_position, wait_ms=wait_ms,
        )
        return _json(answer.to_json())

    @app.get("/healthz", summary="200 while the replica consumes (or the store is static), else 503")
    async def healthz() -> Response:
        body: dict[str, Any] = {"position": position_json(service.store.position())}
        healthy = True
        if replica_status is not None:
            status = replica_status()
            healthy = status.running and status.error is None
            body["replica"] = {
                "running": status.running, "error": status.error, "records": status.records,
                "malformed": status.malformed, "last_malformed": status.last_malformed, "lag": position_json(status.lag),
            }
        body["status"] = "ok" if healthy else "unavailable"
        return _json(body, 200 if healthy else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
