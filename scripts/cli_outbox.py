"""`rewind outbox relay|status`: the outbox relay (pipelines.orders.relay) and its lag."""

from __future__ import annotations

import logging
import re
import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from scripts.cli_common import build_settings, check_topic, setting_option

__all__ = ["app", "register"]

app = typer.Typer(help="Publish the order service's outbox to the orders topic, and show its lag.", no_args_is_help=True)

_RELAY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def register(parent: typer.Typer) -> None:
    """Add `rewind outbox ...` to ``parent``."""
    parent.add_typer(app, name="outbox")


@app.command()
def relay(
    database_url: str | None = setting_option("database_url", "Event store and outbox (SQLAlchemy URL); default: sqlite:///.run/orders.sqlite."),
    kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
    orders_topic: str | None = setting_option("orders_topic", "Topic to publish to (created with the configured partitions if missing)."),
    orders_partitions: int | None = setting_option("orders_partitions", "Partitions of the orders topic."),
    relay_id: str | None = typer.Option(None, envvar="REWIND_RELAY_ID", show_envvar=True, help=(
        "This relay's lease owner id: unique among relays running at the same time. The same id after a restart takes "
        "its leases back at once; default: <host>-<pid>-<random> (a restart waits --lease-ttl-s for its old leases)."
    )),
    batch_size: int = typer.Option(500, min=1, max=100_000, help="Rows per batch: produced, acknowledged, then marked published in one UPDATE."),
    lease_ttl_s: float = typer.Option(10.0, min=1.0, max=3600.0, help=(
        "Shard lease lifetime (renewed every quarter of it): how long a crashed relay's shards wait before another takes them."
    )),
    progress_interval_s: float = typer.Option(10.0, min=0.1, max=86_400.0, help="Seconds between progress lines (events/s, lag rows, oldest age)."),
    outage_report_s: float = typer.Option(30.0, min=1.0, max=86_400.0, help=(
        "While the broker or the database does not answer, seconds between the lines that say so."
    )),
    idle_timeout_s: float = typer.Option(0.0, min=0.0, max=86_400.0, help=(
        "Stop after this many seconds with nothing to publish (0: run until SIGTERM/SIGINT)."
    )),
    metrics_port: int | None = setting_option("metrics_port", (
        "Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (published rows, unpublished rows, age of the oldest); unset: none."
    )),
) -> None:
    """Publish outbox rows to the orders topic (idempotent producer, commit order per order), then mark them published.

    Several relays may run at once (PostgreSQL): each takes about 64/relays of the outbox shards. Rides out broker
    and database outages (retries with backoff, loses nothing, reports its lag). SIGTERM/SIGINT: releases its shards
    and exits 0 within a few seconds; rows sent but not yet marked are published again later (harmless: the folds skip
    a seq already applied).
    """
    from pipelines.metrics import RelayCollector, metrics_registry, serve_metrics
    from pipelines.orders.database import open_database
    from pipelines.orders.relay import OutboxRelay, RelayConfig, default_relay_id, outbox_lag
    from schemas.errors import ConfigError

    settings = build_settings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers,
                              orders_topic=orders_topic, orders_partitions=orders_partitions, metrics_port=metrics_port)
    check_topic("--orders-topic", settings.orders_topic)
    if relay_id is not None and not _RELAY_ID.fullmatch(relay_id):
        raise ConfigError(f"--relay-id {relay_id[:60]!r}: 1-128 of A-Z a-z 0-9 . _ -")
    # The port before the database: one taken by another process is one line, and no file is created.
    collector = RelayCollector()
    server = None if settings.metrics_port is None else serve_metrics(settings.metrics_port, metrics_registry(collector))
    engine = open_database(settings.event_store_url(), pool_size=2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = RelayConfig(
        bootstrap=settings.bootstrap(), topic=settings.orders_topic, partitions=settings.orders_partitions,
        relay_id=relay_id or default_relay_id(), batch_size=batch_size, lease_ttl_s=lease_ttl_s,
        progress_interval_s=progress_interval_s, report_interval_s=outage_report_s, idle_timeout_s=idle_timeout_s,
    )
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        relay = OutboxRelay(engine, config)
        collector.attach(relay.stats, lag=lambda: outbox_lag(engine))
        stats = relay.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.close()
        engine.dispose()
    typer.echo(stats.summary_line())


@app.command()
def status(
    database_url: str | None = setting_option("database_url", "Event store and outbox (SQLAlchemy URL); default: sqlite:///.run/orders.sqlite."),
) -> None:
    """Print the outbox lag (unpublished rows, age of the oldest) and which relays hold its shards, as one JSON line."""
    import json

    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from pipelines.orders.database import DatabaseError, open_database
    from pipelines.orders.relay import is_database_outage, outbox_lag
    from pipelines.orders.relay_leases import lease_holders

    settings = build_settings(database_url=database_url)
    url = make_url(settings.event_store_url())
    shown = url.render_as_string(hide_password=True)
    # Connecting to a SQLite path that does not exist would create an empty database there.
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" and not Path(url.database).exists():
        raise DatabaseError(f"{shown}: no such database file (the order service or a relay creates it)")
    engine = open_database(url.render_as_string(hide_password=False))
    try:
        if not inspect(engine).has_table("outbox"):
            raise DatabaseError(f"{shown} has no outbox table: start the order service or a relay once to create it")
        lag = outbox_lag(engine)
        holders = lease_holders(engine)
    except DatabaseError:
        raise
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        raise DatabaseError(f"cannot read the outbox at {shown}: {' '.join(str(exc).split())[:200]}") from None
    finally:
        engine.dispose()
    typer.echo(json.dumps({
        "database": shown, "unpublished_rows": lag.rows, "oldest_unpublished_age_ms": lag.oldest_age_ms,
        "relays": holders.shards_by_relay, "unheld_shards": holders.unheld,
    }))
