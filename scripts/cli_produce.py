"""`rewind produce`: send a deterministic order workload to Kafka and write its oracle.

Each command imports what it runs inside its own body, so that ``rewind --help`` and the other
commands do not pay for it (Quix, rocksdict, the replay engine).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from scripts.cli_common import MAX_TIME_MS, build_settings, check_file_target, check_topic, parse_time_arg, setting_option

console = Console(stderr=True)


def _check_history(start: str | None, days: float) -> int:
    """The history's start in epoch ms (``--start``, or the workload's default); ConfigError unless it all fits Kafka and the calendar.

    Every record's timestamp (CreateTime = its occurredAt) lies in [start, start + days]: Kafka refuses a
    negative one, and the oracle and the summary line show them as dates (years 1-9999).
    """
    from schemas.errors import ConfigError
    from scripts.workload import DEFAULT_START_MS
    from scripts.workload.generator import DAY_MS

    start_ms = DEFAULT_START_MS if start is None else parse_time_arg("--start", start)
    if start_ms < 0:
        raise ConfigError(f"--start {start!r}: before 1970-01-01T00:00:00Z; Kafka record timestamps (the events' occurredAt) are >= 0")
    if not math.isfinite(days) or start_ms + days * DAY_MS > MAX_TIME_MS:
        raise ConfigError(f"--days {days:g}: the history would end after year 9999")
    return start_ms


def register(app: typer.Typer) -> None:
    """Add the produce command to ``app``."""

    @app.command()
    def produce(
        orders: int = typer.Option(10_000, min=0, help="How many orders to simulate (about 5 events each)."),
        seed: int = typer.Option(0, help="Random seed; the same seed and options give byte-identical events."),
        rate: float | None = typer.Option(None, min=0.001, help="Cap on events per second (default: as fast as possible)."),
        poison_rate: float = typer.Option(0.0, min=0.0, max=1.0, help=(
            "Share of extra poison records (bad bytes, unknown schema, impossible transition, duplicate)."
        )),
        late_rate: float = typer.Option(0.02, min=0.0, max=1.0, help="Share of events that arrive late (out of event-time order)."),
        old_versions: float = typer.Option(0.0, "--old-versions", min=0.0, max=1.0, help=(
            "Share of the events of evolved types (OrderPlaced, PaymentAuthorized) written with an older schema version."
        )),
        confluent_share: float = typer.Option(0.0, "--confluent-share", min=0.0, max=1.0, help=(
            "Share of records framed in the Confluent wire format (00 + registry schema id) instead of single-object; "
            "needs a schema registry (--registry or REWIND_SCHEMA_REGISTRY_URL)."
        )),
        schema_registry_url: str | None = setting_option(
            "schema_registry_url", "Schema registry (Confluent-compatible API) that Confluent-framed records are registered in.", "--registry",
        ),
        days: float = typer.Option(3.0, min=0.01, help="Length of the simulated history in days."),
        start: str | None = typer.Option(None, help="Start of the simulated history (ISO-8601 with zone, or epoch ms). Default: a fixed date."),
        orders_topic: str | None = setting_option(
            "orders_topic", "Topic to produce to (created with 12 partitions, retention.ms=-1).", "--topic", "--orders-topic"
        ),
        oracle: Path | None = typer.Option(None, help="Where to write the SQLite oracle. Default: .run/oracles/<topic>-seed<S>.sqlite."),
        max_lateness_ms: int | None = setting_option("max_lateness_ms", "Upper bound on how late an event arrives."),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
        progress: bool = typer.Option(True, help="Show a progress bar with events/s."),
    ) -> None:
        """Produce a realistic order workload (interleaved lifecycles, late events, poison) and its oracle."""
        from pipelines.topics import check_reachable
        from schemas.errors import ConfigError
        from scripts.workload import WorkloadConfig, generate, produce_workload, write_oracle

        settings = build_settings(orders_topic=orders_topic, max_lateness_ms=max_lateness_ms, kafka_bootstrap_servers=kafka_bootstrap_servers,
                                  schema_registry_url=schema_registry_url)
        if confluent_share > 0 and not settings.schema_registry_url:
            raise ConfigError("--confluent-share needs a schema registry: pass --registry URL or set REWIND_SCHEMA_REGISTRY_URL "
                              "(`rewind registry up` prints it)")
        # Every argument is checked here, before the broker is asked anything: a failure after producing
        # would leave records in the topic without their oracle.
        start_ms = _check_history(start, days)
        if rate is not None and not math.isfinite(rate):
            raise ConfigError(f"--rate {rate:g}: give a finite number of events per second, or omit it for as fast as possible")
        check_topic("--topic", settings.orders_topic)
        oracle_path = check_file_target("--oracle", oracle or Path(".run/oracles") / f"{settings.orders_topic}-seed{seed}.sqlite")
        check_reachable(settings.bootstrap(), timeout_s=settings.connect_timeout_s)
        config = WorkloadConfig(
            seed=seed, orders=orders, days=days, late_rate=late_rate, poison_rate=poison_rate, old_version_rate=old_versions,
            max_lateness_ms=settings.max_lateness_ms, start_ms=start_ms,
        )
        with console.status(f"generating {orders:,} orders (seed {seed})"):
            workload = generate(config)
        records = list(workload.records)
        if confluent_share > 0 and settings.schema_registry_url:
            from schemas.confluent import ConfluentSchemas
            from schemas.registry import load_registry
            from scripts.workload.framing import confluent_framed, register_all

            headers = register_all(ConfluentSchemas(settings.schema_registry_url, load_registry(), timeout_s=settings.connect_timeout_s), load_registry())
            records = confluent_framed(records, share=confluent_share, seed=seed, headers=headers)
        report = produce_workload(settings, records, rate=rate, progress=progress)
        oracle_path.parent.mkdir(parents=True, exist_ok=True)
        write_oracle(workload, oracle_path, topic=report.topic)
        # In UTC: a local zone could carry a start near the end of year 9999 into year 10000.
        first = datetime.fromtimestamp(config.start_ms / 1000, tz=UTC).isoformat(timespec="seconds")
        console.print(
            f"produced {report.delivered:,} records ({report.poison:,} poison) to {report.topic} "
            f"in {report.elapsed_s:.1f}s ({report.events_per_s:,.0f} ev/s); history from {first}, {days:g} days"
        )
        typer.echo(str(oracle_path))
