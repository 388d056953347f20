"""`rewind demo`: the README's main job.

Each command imports what it runs inside its own body, so that ``rewind --help`` and the other
commands do not pay for it (Quix, rocksdict, the replay engine).
"""

from __future__ import annotations

from typing import cast

import typer
from rich.console import Console

from scripts.cli_common import build_settings, setting_option

#: Default orders per source. Through the order service each event is one HTTP command: a few hundred
#: commands/s on two cores with the relay publishing alongside, so fewer orders keep the run to a few minutes.
SERVICE_DEFAULT_ORDERS = 2_000
PRODUCE_DEFAULT_ORDERS = 5_000


def register(app: typer.Typer) -> None:
    """Add the demo command to ``app``."""

    @app.command()
    def demo(
        source: str = typer.Option("service", "--source", help=(
            "Where the log comes from. service: the workload driven through the order service as commands (`rewind orders serve` "
            "and `rewind outbox relay` as child processes, a fresh SQLite event store under .run/demo/<run id>/); the views are "
            "checked against its event store too. produce: the workload's records produced straight to Kafka, with poison, older "
            "schema versions and Confluent framing."
        )),
        orders: int | None = typer.Option(None, min=1, help=(
            "Orders to simulate, about 4 events each (default: 2,000 with --source service, where each event is an HTTP command; "
            "5,000 with --source produce)."
        )),
        seed: int = typer.Option(42, help="Workload seed."),
        workers: int = typer.Option(8, min=1, max=256, help="--source service: concurrent HTTP senders of commands."),
        poison_rate: float | None = typer.Option(None, min=0.0, max=1.0, help="--source produce: share of poison records (default 0.01)."),
        old_versions: float | None = typer.Option(None, "--old-versions", min=0.0, max=1.0, help=(
            "--source produce: share of OrderPlaced/PaymentAuthorized events written with an older schema version, upcast at decode (default 0.3)."
        )),
        confluent_share: float | None = typer.Option(None, "--confluent-share", min=0.0, max=1.0, help=(
            "--source produce: share of records in the Confluent wire format (default 0.3); > 0 uses the schema registry (default: start the local one)."
        )),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: start the local broker)."),
        schema_registry_url: str | None = setting_option(
            "schema_registry_url", "--source produce: schema registry for Confluent-framed records (default: start the local one).", "--registry",
        ),
    ) -> None:
        """Start Kafka, drive a workload through the order service (or produce it), run the five pipelines, compare the views with
        the oracle and the event store, answer time-travel questions."""
        from schemas.errors import ConfigError
        from scripts import kafka_local
        from scripts.main_job import Source, run_main_job

        if source not in ("service", "produce"):
            raise ConfigError(f"--source {source[:40]!r}: service or produce")
        given = {"--poison-rate": poison_rate, "--old-versions": old_versions, "--confluent-share": confluent_share}
        if source == "service":
            nonzero = [flag for flag, value in given.items() if value]
            if nonzero:
                raise ConfigError(f"{', '.join(nonzero)}: only with --source produce (the order service writes no poison, "
                                  "every event in the newest schema version, single-object framed)")
            poison_rate = old_versions = confluent_share = 0.0
            orders = orders or SERVICE_DEFAULT_ORDERS
        else:
            poison_rate = 0.01 if poison_rate is None else poison_rate
            old_versions = 0.3 if old_versions is None else old_versions
            confluent_share = 0.3 if confluent_share is None else confluent_share
            orders = orders or PRODUCE_DEFAULT_ORDERS
        settings = build_settings(kafka_bootstrap_servers=kafka_bootstrap_servers, schema_registry_url=schema_registry_url)
        console = Console()
        if not settings.uses_local_broker:
            from pipelines.topics import check_reachable

            # Before the local registry is started for it: an unreachable cluster is one line, and nothing runs.
            check_reachable(settings.bootstrap(), timeout_s=settings.connect_timeout_s)
        if settings.uses_local_broker:
            console.rule("[bold]0. Kafka")
            console.print(f"local broker up at {kafka_local.up(port=settings.kafka_port, controller_port=settings.kafka_controller_port)}")
        if confluent_share > 0 and not settings.schema_registry_url:
            from scripts import registry_local

            console.rule("[bold]0. Schema registry")
            url = registry_local.up(console=console)
            console.print(f"local Apicurio registry up at {url}")
            settings = settings.model_copy(update={"schema_registry_url": url})
        failures = run_main_job(settings, orders=orders, seed=seed, console=console, source=cast("Source", source),
                                poison_rate=poison_rate, old_versions=old_versions, confluent_share=confluent_share, workers=workers)
        if failures:
            console.print(f"[red]{len(failures)} check(s) failed[/]")
            raise typer.Exit(1)
        console.print("[green]every check agreed with the oracle[/]" + (" and the event store" if source == "service" else ""))
