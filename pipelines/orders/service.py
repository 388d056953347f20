"""The order service's HTTP API (FastAPI): commands in, decided against the event store.

Endpoints (OpenAPI at ``/docs``)::

    POST /orders                              PlaceOrder             201
    POST /orders/{orderId}/payment            AuthorizePayment       200
    POST /orders/{orderId}/payment-failure    RecordPaymentFailure   200
    POST /orders/{orderId}/reservation        ReserveInventory       200
    POST /orders/{orderId}/release            ReleaseInventory       200
    POST /orders/{orderId}/shipment           ShipOrder              200
    POST /orders/{orderId}/delivery           DeliverOrder           200
    POST /orders/{orderId}/cancellation       CancelOrder            200
    POST /orders/{orderId}/refund             IssueRefund            200
    POST /commands                            a batch of commands, one transaction        200 (one result each)
    GET  /orders/{orderId}                    the order row and its events (seq, type, id, time, command)
    GET  /healthz                             200 when the database answers, 503 when it does not

A command's answer is the event it appended and the order row after it; a retry with the same
``commandId`` and body gets that answer again (same status, same bytes, and the header
``Idempotent-Replayed: true``) and writes nothing. ``POST /commands`` takes up to
:data:`~pipelines.orders.event_store.MAX_BATCH` commands at once and decides them in the order
given in one transaction (:meth:`~pipelines.orders.event_store.EventStore.execute_many`): each
result is what the command would get on its own endpoint, sent one after the other (status,
answer or one-line error, ``replayed``); a refused command writes nothing, the others commit.
One round trip and one commit for many commands: the way to send thousands a second.
Errors are one-line JSON ``{"error": name, "detail": reason}``: a malformed body, a value
outside its domain, an unknown currency, a refund larger than what was paid, a commandId
reused for another command 422; an unknown order or endpoint 404; a command the order's status
does not allow, PlaceOrder of an existing order, or a lost race for the order's next seq 409;
the database not answering 503 (within the engine's connect/pool/lock bounds). The handlers
are plain functions: FastAPI runs them in its thread pool, each command one transaction.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from pipelines.orders.commands import (
    COMMAND_TYPES,
    ID_PATTERN,
    AuthorizePayment,
    CancelOrder,
    Command,
    DeliverOrder,
    IssueRefund,
    PlaceOrder,
    RecordPaymentFailure,
    ReleaseInventory,
    ReserveInventory,
    ShipOrder,
)
from pipelines.orders.database import DatabaseError
from pipelines.orders.errors import CommandError, CorruptEventStoreError
from pipelines.orders.event_store import MAX_BATCH, CommandAnswer, EventStore, open_event_store
from state.signals_noted import signals_noted

__all__ = [
    "create_app", "serve", "REPLAYED_HEADER", "EXAMPLE_ORDER_ID", "CommandAnswerBody", "OrderBody", "ErrorBody", "HealthBody", "BatchBody",
    "BatchAnswerBody",
]

log = logging.getLogger(__name__)

#: Set (to "true") on the answer to a retried command: the first answer, stored; nothing was written.
REPLAYED_HEADER = "Idempotent-Replayed"
#: An error's detail is one line of at most this many characters (it may echo what the caller sent).
_DETAIL_CHARS = 500


class CommandAnswerBody(BaseModel):
    """A command's answer: the event it appended and the order row after it (the order fold's row)."""

    commandId: str
    orderId: str
    eventType: str
    eventId: str
    seq: int
    occurredAt: int
    status: str
    order: dict[str, Any]


class EventInfo(BaseModel):
    """One stored event of an order."""

    seq: int
    eventType: str
    eventId: str
    occurredAt: int
    commandId: str


class OrderBody(BaseModel):
    """GET /orders/{orderId}: the order row as the event store's events make it, and those events."""

    orderId: str
    order: dict[str, Any]
    events: list[EventInfo]


class BatchItem(BaseModel):
    """One command of a batch: its name, the order it addresses (PlaceOrder: optional, as on POST /orders), and
    the body its own endpoint takes."""

    type: str = Field(description="The command: " + ", ".join(cls.__name__ for cls in COMMAND_TYPES.values()) + ".",
                      examples=["ShipOrder"])
    orderId: str | None = Field(None, pattern=ID_PATTERN, max_length=128, examples=["ord-0000001"])
    command: dict[str, Any] = Field(description="The body the command's own endpoint takes (commandId included).")


class BatchBody(BaseModel):
    """POST /commands: the commands, decided in this order in one transaction."""

    commands: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    """One command's result: ``status`` as its own endpoint would answer, with the answer (2xx) or the error."""

    status: int
    replayed: bool = False
    answer: CommandAnswerBody | None = None
    error: str | None = None
    detail: str | None = None


class BatchAnswerBody(BaseModel):
    """POST /commands: one result per command, in the order sent."""

    results: list[BatchResult]


class ErrorBody(BaseModel):
    """Every error: its name and a one-line reason."""

    error: str
    detail: str


class HealthBody(BaseModel):
    """GET /healthz when the database answers."""

    status: str
    database: str


def _json(body: str | bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= _DETAIL_CHARS else line[: _DETAIL_CHARS - 3] + "..."


def _error(name: str, detail: str, status: int) -> Response:
    return _json(ErrorBody(error=name, detail=_one_line(detail) or name).model_dump_json(), status)


def _item_error(name: str, detail: str, status: int) -> dict[str, Any]:
    """A refused command's result in a batch: its status and the one-line error its own endpoint would give."""
    return {"status": status, "replayed": False, "error": name, "detail": _one_line(detail) or name}


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such order"},
    409: {"model": ErrorBody, "description": "Not allowed in the order's status, or another command on the order won its next seq (retry)"},
    422: {"model": ErrorBody, "description": "Malformed body, a value outside its domain, or a commandId reused for another command"},
    503: {"model": ErrorBody, "description": "The event store's database does not answer"},
}


def _responses(ok_status: int, ok: type[BaseModel], *errors: int) -> dict[int | str, dict[str, Any]]:
    return {ok_status: {"model": ok}, **{status: _ERRORS[status] for status in errors}}


#: The order id the document shows as an example (the workload generator's shape).
EXAMPLE_ORDER_ID = "ord-0000001"
_ORDER_ID = Path(
    alias="orderId", pattern=ID_PATTERN, description="The order's id (letters, digits, . _ : -; at most 128).", examples=[EXAMPLE_ORDER_ID]
)


def create_app(store: EventStore) -> FastAPI:
    """The FastAPI app over ``store`` (its database already migrated)."""
    app = FastAPI(
        title="Rewind order service",
        description="Commands on orders, decided against the service's own event store and published through a transactional outbox.",
        version="1",
    )

    @app.exception_handler(CommandError)
    async def _refused(request: Request, exc: CommandError) -> Response:
        return _error(type(exc).__name__, str(exc), exc.status)

    @app.exception_handler(DatabaseError)
    async def _unavailable(request: Request, exc: DatabaseError) -> Response:
        return _error(type(exc).__name__, str(exc), 503)

    @app.exception_handler(CorruptEventStoreError)
    async def _corrupt(request: Request, exc: CorruptEventStoreError) -> Response:
        return _error(type(exc).__name__, str(exc), 500)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        detail = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return _error("InvalidRequest", detail, 422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # No such endpoint (404) or method (405): the same one-line shape as every other error.
        if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8): malformed, as any other bad body
            return _error("InvalidRequest", f"body: cannot be parsed as JSON ({exc.detail})", 422)
        try:
            name = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        except ValueError:
            name = "HTTPError"
        response = _error(name, f"{request.method} {request.url.path}: {exc.detail} (the endpoints are listed at /docs)", exc.status_code)
        response.headers.update(exc.headers or {})
        return response

    def answer(command: Command, order_id: str | None = None) -> Response:
        result: CommandAnswer = store.execute(command, order_id=order_id)
        response = _json(result.body, result.status)
        if result.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response

    @app.post("/orders", status_code=201, summary="Place an order", responses=_responses(201, CommandAnswerBody, 409, 422, 503))
    def place(command: PlaceOrder) -> Response:
        return answer(command)

    applied = _responses(200, CommandAnswerBody, 404, 409, 422, 503)

    @app.post("/orders/{orderId}/payment", summary="Authorize the order's payment (amount defaults to the order's total)", responses=applied)
    def authorize_payment(command: AuthorizePayment, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/payment-failure", summary="Record that the order's payment failed", responses=applied)
    def record_payment_failure(command: RecordPaymentFailure, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/reservation", summary="Reserve the order's inventory in a warehouse", responses=applied)
    def reserve_inventory(command: ReserveInventory, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/release", summary="Release the order's reserved inventory", responses=applied)
    def release_inventory(command: ReleaseInventory, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/shipment", summary="Ship the order", responses=applied)
    def ship_order(command: ShipOrder, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/delivery", summary="Record the order's delivery", responses=applied)
    def deliver_order(command: DeliverOrder, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/cancellation", summary="Cancel the order", responses=applied)
    def cancel_order(command: CancelOrder, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    @app.post("/orders/{orderId}/refund", summary="Refund some of a delivered order, at most what was paid", responses=applied)
    def issue_refund(command: IssueRefund, order_id: str = _ORDER_ID) -> Response:
        return answer(command, order_id)

    commands_by_name = {cls.__name__: cls for cls in COMMAND_TYPES.values()}

    @app.post("/commands", summary="Decide a batch of commands in one transaction, in the order given",
              responses=_responses(200, BatchAnswerBody, 422, 503))
    def run_batch(batch: BatchBody) -> Response:
        parsed: list[tuple[Command, str | None]] = []
        refused: dict[int, dict[str, Any]] = {}  # index in the batch -> its result (the body did not parse)
        for n, item in enumerate(batch.commands):
            model = commands_by_name.get(item.type)
            if model is None:
                refused[n] = _item_error("InvalidRequest", f"type {item.type!r} is not a command (one of {', '.join(commands_by_name)})", 422)
                continue
            try:
                command = model.model_validate(item.command)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                refused[n] = _item_error("InvalidRequest", f"{item.type}: {where}: {first.get('msg')}" if where else f"{item.type}: {first.get('msg')}", 422)
                continue
            parsed.append((command, item.orderId))
        decided = iter(store.execute_many(parsed) if parsed else [])
        results: list[dict[str, Any]] = []
        for n in range(len(batch.commands)):
            if n in refused:
                results.append(refused[n])
                continue
            result = next(decided)
            if isinstance(result, CommandAnswer):
                # The stored answer's exact bytes (a retry gets them again), not a re-serialisation.
                results.append({"status": result.status, "replayed": result.replayed, "answer": orjson.Fragment(result.body)})
            else:
                results.append(_item_error(type(result).__name__, str(result), result.status))
        return _json(orjson.dumps({"results": results}))

    @app.get("/orders/{orderId}", summary="The order row and its events, from the event store", responses=_responses(200, OrderBody, 404, 422, 503))
    def get_order(order_id: str = _ORDER_ID) -> Response:
        return _json(OrderBody.model_validate(store.order(order_id)).model_dump_json())

    @app.get("/healthz", summary="200 when the event store's database answers, 503 when it does not", responses=_responses(200, HealthBody, 503))
    def healthz() -> Response:
        store.ping()
        return _json(HealthBody(status="ok", database=store.engine.dialect.name).model_dump_json())

    return app


def serve(database_url: str, *, host: str = "127.0.0.1", port: int = 8086, log_level: str = "info", pool_size: int = 10) -> None:
    """Run the order service until SIGTERM/SIGINT.

    1. Open the database and migrate it to the newest schema (DatabaseError: it does not answer).
    2. Serve the API with uvicorn in this thread; on SIGTERM/SIGINT it stops accepting
       connections and finishes the commands in flight (each is one transaction: a command
       cut short by a kill -9 is rolled back by the database, never half written).
    3. Close the connection pool and return (exit code 0).
    """
    # Step 1
    store = open_event_store(database_url, pool_size=pool_size)
    try:
        app = create_app(store)
        log.info("order service on http://%s:%d (event store %s)", host, port, store.engine.url.render_as_string(hide_password=True))
        # Step 2
        with signals_noted() as noted:
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)).run()
        log.info("stopping (signal %s)", noted or "none")
    finally:
        # Step 3
        store.engine.dispose()
