"""`rewind dlq redrive --order X | --reason R`: append the dead-lettered records of parked orders to the orders topic again
(:mod:`pipelines.dlq_redrive`), once their cause is fixed; registered on `rewind dlq` by :mod:`scripts.cli_dlq`.

Every argument is checked before the broker is contacted; one line and a non-zero exit otherwise.
"""

from __future__ import annotations

import math

import typer

from schemas.errors import ConfigError
from scripts.cli_common import build_settings, check_topic, setting_option

__all__ = ["redrive"]


def _check(order: str | None, reason: str | None, timeout_s: float) -> None:
    if order is not None and reason is not None:
        raise ConfigError("give --order or --reason, not both")
    if order is None and reason is None:
        raise ConfigError("give --order ORDER_ID or --reason REASON_CLASS (what to redrive)")
    for flag, value in (("--order", order), ("--reason", reason)):
        if value is not None and not value.strip():
            raise ConfigError(f"{flag}: empty")
    if not math.isfinite(timeout_s):
        raise ConfigError(f"--timeout-s: {timeout_s} is not a finite number of seconds")


def redrive(
    order: str | None = typer.Option(None, help="Redrive this order's dead-lettered records (its orderId, the record key)."),
    reason: str | None = typer.Option(None, help="Redrive every order that has a letter of this reason class, e.g. UnknownSchemaError."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be appended, append nothing."),
    orders_topic: str | None = setting_option("orders_topic", "The orders topic the records go back to.", "--orders-topic"),
    dlq_topic: str | None = setting_option("dlq_topic", "The DLQ topic the pipelines write.", "--dlq-topic"),
    kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
    schema_registry_url: str | None = setting_option("schema_registry_url", "Registry to decode Confluent-framed values with (for their seq)."),
    timeout_s: float = typer.Option(60.0, min=1.0, max=3600.0, help="Give up reading the DLQ, or waiting for acknowledgements, after this many seconds."),
) -> None:
    """Feed the parked events of orders back through the pipelines, in seq order, once the cause is fixed.

    Run it after the fix is deployed (a new schema or upcaster, a fixed fold): each dead-lettered record of the selected orders is appended again.

    One record per original (whichever pipelines wrote letters of it), to its original partition, with its key, bytes and event time.

    Each carries the header rewind.redrive.of naming the original; every pipeline judges it like any record.

    A seq already applied is a duplicate, so running this twice applies nothing twice.

    A record that still fails is dead-lettered again with its new reason, and its order stays parked behind it.
    """
    from pipelines.dlq_redrive import redrive as run_redrive
    from schemas.fast_decode import event_decoder

    _check(order, reason, timeout_s)
    settings = build_settings(orders_topic=orders_topic, dlq_topic=dlq_topic, kafka_bootstrap_servers=kafka_bootstrap_servers,
                              schema_registry_url=schema_registry_url)
    check_topic("--orders-topic", settings.orders_topic)
    check_topic("--dlq-topic", settings.dlq_topic)
    plan = run_redrive(settings.bootstrap(), orders_topic=settings.orders_topic, dlq_topic=settings.dlq_topic,
                       decode=event_decoder(settings.schema_registry_url), order=order, reason=reason, dry_run=dry_run,
                       timeout_s=timeout_s, connect_timeout_s=settings.connect_timeout_s)
    what = f"order {order}" if order is not None else f"orders with a {reason} letter"
    if not plan.records:
        typer.echo(f"nothing to redrive for {what} ({plan.letters_read} letters read in {settings.dlq_topic})")
        return
    for r in plan.records:
        seq = "?" if r.seq is None else str(r.seq)
        typer.echo(f"{'would append' if dry_run else 'appended'} {r.order_id} seq {seq} (copy of {r.origin}; {', '.join(r.reasons)})")
    verb = "would redrive" if dry_run else "redrove"
    typer.echo(f"{verb} {len(plan.records)} records of {len(plan.orders)} orders to {settings.orders_topic}")
    unread = sum(1 for r in plan.records if r.seq is None)
    if unread:
        # Not an error: the pipelines' build, not this process's, decides. But worth a look if it is the same build.
        typer.echo(f"{unread} of them do not decode with this process's schemas: unless the pipelines read them now, "
                   "they are dead-lettered again and their orders stay parked", err=True)
