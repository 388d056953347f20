"""`rewind orders ...`: the order service (serve) and its commands, run directly against the event store.

Each command builds its command model from the arguments and checks it (ids, currency, integer
money; a PlaceOrder is also run through the order fold against an empty order) before anything
is opened: a bad argument is one line and a non-zero exit, and nothing is written. It then
opens the event store (REWIND_DATABASE_URL, default sqlite:///.run/orders.sqlite), migrates
it, and runs the same decide-and-append as the HTTP service: the answer is printed as JSON on
stdout, a refusal is one line on stderr (exit 1). Imports happen inside the bodies, so
``rewind --help`` does not pay for SQLAlchemy or FastAPI.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import typer

from schemas.errors import ConfigError
from scripts.cli_common import build_settings, setting_option

if TYPE_CHECKING:
    from pipelines.orders.commands import Command

__all__ = ["app", "register"]

app = typer.Typer(
    help="The order service (the command side): serve its HTTP API, or run one command against its event store.", no_args_is_help=True
)

_DATABASE_HELP = "The event store, a SQLAlchemy URL (sqlite:///PATH or postgresql://USER@HOST:PORT/DB); unset: sqlite:///.run/orders.sqlite."
_COMMAND_ID_HELP = "The command's id (a retry with the same id and arguments gets the first answer); default: a new UUID."


#: The option of each command field whose name differs from the field's.
_FLAGS = {"customer_id": "--customer", "items": "--item", "amount_minor": "--amount", "warehouse_id": "--warehouse"}


def register(root: typer.Typer) -> None:
    """Add the `orders` command group to ``root``."""
    root.add_typer(app, name="orders")


def _order_id(order_id: str) -> str:
    from pipelines.orders.commands import ID_PATTERN

    if re.fullmatch(ID_PATTERN, order_id) is None:
        raise ConfigError(f"ORDER_ID {order_id[:60]!r}: 1-128 letters, digits and . _ : - (starting with a letter or digit)")
    return order_id


def _build(command_type: type[Command], **fields: Any) -> Command:
    """The command from the CLI's values; ConfigError (one line, naming the option) when a value does not fit."""
    from pydantic import ValidationError

    if fields.get("command_id") is None:
        fields["command_id"] = str(uuid.uuid4())
    try:
        return command_type.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = re.sub(r"(?<!^)(?=[A-Z])", "_", str(first["loc"][0])).lower() if first["loc"] else ""
        where = _FLAGS.get(field, "--" + field.replace("_", "-")) if field else "arguments"
        raise ConfigError(f"{where}: {first['msg']}") from None


def _lines(flag: str, given: list[str], *, parts: int) -> list[dict[str, Any]]:
    """Parse repeated ``SKU:QTY`` (parts 2) or ``SKU:QTY:PRICE`` (parts 3) values; integers only."""
    names = ("sku", "quantity", "unit_price_minor")[:parts]
    lines = []
    for text in given:
        pieces = text.rsplit(":", parts - 1)
        try:
            if len(pieces) != parts:
                raise ValueError
            lines.append(dict(zip(names, [pieces[0], *(int(p) for p in pieces[1:])], strict=True)))
        except ValueError:
            shape = "SKU:QTY:PRICE_MINOR (integers)" if parts == 3 else "SKU:QTY (an integer)"
            raise ConfigError(f"{flag} {text[:60]!r}: expected {shape}") from None
    return lines


def _execute(database_url: str | None, command: Command, order_id: str | None = None) -> None:
    """Decide and append ``command`` against the event store; print the answer (JSON) or raise the refusal."""
    from pipelines.orders.event_store import open_event_store

    store = open_event_store(build_settings(database_url=database_url).event_store_url(), pool_size=1)
    try:
        answer = store.execute(command, order_id=order_id)
    finally:
        store.engine.dispose()
    body = answer.json()
    again = " (a retry: the first answer, nothing written)" if answer.replayed else ""
    typer.echo(f"order {body['orderId']}: seq {body['seq']} {body['eventType']} -> {body['status']}{again}", err=True)
    typer.echo(answer.body)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int | None = setting_option("orders_service_port", "Port to listen on.", "--port"),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
    log_level: str = typer.Option("info", help="uvicorn log level (critical, error, warning, info, debug)."),
) -> None:
    """Serve the order service's HTTP API (OpenAPI at /docs) until SIGTERM/SIGINT; migrates the event store on start."""
    from pipelines.orders.service import serve as run_serve
    from scripts.cli_query import _check_listen

    settings = build_settings(orders_service_port=port, database_url=database_url)
    _check_listen(host, settings.orders_service_port)
    run_serve(settings.event_store_url(), host=host, port=settings.orders_service_port, log_level=log_level)


@app.command()
def place(
    customer: str = typer.Option(..., help="The customer's id."),
    item: list[str] = typer.Option(..., help="An order line SKU:QTY:PRICE_MINOR (unit price in minor units); repeat for more lines."),
    currency: str = typer.Option(..., help="ISO 4217 currency code, e.g. EUR."),
    order_id: str | None = typer.Option(None, help="The new order's id; default: a new UUID."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    correlation_id: str | None = typer.Option(None, help="Carried by every event of the order; default: a new UUID."),
    sales_channel: str | None = typer.Option(None, help="Where the order was placed (web, app, store); default: unknown."),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Place an order (PlaceOrder); the total is the exact sum of the lines."""
    from pipelines.orders.commands import PlaceOrder
    from pipelines.orders.decide import Aggregate, decide
    from pipelines.orders.errors import CommandError
    from pipelines.orders.event_store import now_ms

    command = _build(
        PlaceOrder, command_id=command_id, order_id=order_id, customer_id=customer, items=_lines("--item", item, parts=3), currency=currency,
        correlation_id=correlation_id, sales_channel=sales_channel,
    )
    try:  # the order fold's payload rules, against a new order: before anything is opened
        decide(command, Aggregate(order_id or "new", None, None, 0, ()), now_ms=now_ms(), new_id=lambda: str(uuid.uuid4()))
    except CommandError as exc:
        raise ConfigError(str(exc)) from None
    _execute(database_url, command)


@app.command()
def pay(
    order_id: str = typer.Argument(..., help="The order's id."),
    amount: int | None = typer.Option(None, min=0, help="Authorized amount in minor units; default: the order's total."),
    currency: str | None = typer.Option(None, help="Must be the order's currency; default: the order's."),
    payment_id: str | None = typer.Option(None, help="The payment provider's id; default: a new one."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Authorize the order's payment (AuthorizePayment)."""
    from pipelines.orders.commands import AuthorizePayment

    command = _build(AuthorizePayment, command_id=command_id, amount_minor=amount, currency=currency, payment_id=payment_id)
    _execute(database_url, command, _order_id(order_id))


@app.command("fail-payment")
def fail_payment(
    order_id: str = typer.Argument(..., help="The order's id."),
    reason: str = typer.Option(..., help="Why the payment failed."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Record that the order's payment failed (RecordPaymentFailure)."""
    from pipelines.orders.commands import RecordPaymentFailure

    _execute(database_url, _build(RecordPaymentFailure, command_id=command_id, reason=reason), _order_id(order_id))


@app.command()
def reserve(
    order_id: str = typer.Argument(..., help="The order's id."),
    warehouse: str = typer.Option(..., help="The warehouse holding the inventory."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Reserve the order's inventory (ReserveInventory)."""
    from pipelines.orders.commands import ReserveInventory

    _execute(database_url, _build(ReserveInventory, command_id=command_id, warehouse_id=warehouse), _order_id(order_id))


@app.command()
def release(
    order_id: str = typer.Argument(..., help="The order's id."),
    reason: str = typer.Option(..., help="Why the inventory is released."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Release the order's reserved inventory (ReleaseInventory)."""
    from pipelines.orders.commands import ReleaseInventory

    _execute(database_url, _build(ReleaseInventory, command_id=command_id, reason=reason), _order_id(order_id))


@app.command()
def ship(
    order_id: str = typer.Argument(..., help="The order's id."),
    carrier: str = typer.Option(..., help="The carrier, e.g. DHL."),
    tracking_number: str = typer.Option(..., help="The carrier's tracking number."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Ship the order (ShipOrder)."""
    from pipelines.orders.commands import ShipOrder

    command = _build(ShipOrder, command_id=command_id, carrier=carrier, tracking_number=tracking_number)
    _execute(database_url, command, _order_id(order_id))


@app.command()
def deliver(
    order_id: str = typer.Argument(..., help="The order's id."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Record the order's delivery (DeliverOrder)."""
    from pipelines.orders.commands import DeliverOrder

    _execute(database_url, _build(DeliverOrder, command_id=command_id), _order_id(order_id))


@app.command()
def cancel(
    order_id: str = typer.Argument(..., help="The order's id."),
    reason: str = typer.Option(..., help="Why the order is cancelled."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Cancel the order (CancelOrder)."""
    from pipelines.orders.commands import CancelOrder

    _execute(database_url, _build(CancelOrder, command_id=command_id, reason=reason), _order_id(order_id))


@app.command()
def refund(
    order_id: str = typer.Argument(..., help="The order's id."),
    item: list[str] = typer.Option(..., help="Units given back, SKU:QTY; repeat for more lines."),
    amount: int = typer.Option(..., min=0, help="Money returned, in minor units; at most what was paid and not yet refunded."),
    reason: str = typer.Option(..., help="Why the refund is issued."),
    command_id: str | None = typer.Option(None, help=_COMMAND_ID_HELP),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Refund some of a delivered order (IssueRefund), in the order's currency."""
    from pipelines.orders.commands import IssueRefund

    command = _build(IssueRefund, command_id=command_id, items=_lines("--item", item, parts=2), amount_minor=amount, reason=reason)
    _execute(database_url, command, _order_id(order_id))


@app.command()
def show(
    order_id: str = typer.Argument(..., help="The order's id."),
    database_url: str | None = setting_option("database_url", _DATABASE_HELP),
) -> None:
    """Print the order as the event store's events make it (its row, and its events' seq, type and command), as JSON."""
    import json

    from pipelines.orders.event_store import open_event_store

    _order_id(order_id)
    store = open_event_store(build_settings(database_url=database_url).event_store_url(), pool_size=1)
    try:
        answer = store.order(order_id)
    finally:
        store.engine.dispose()
    typer.echo(json.dumps(answer, indent=2))
