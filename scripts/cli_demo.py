"""`rewind demo`: the README's main job.

Each command imports what it runs inside its own body, so that ``rewind --help`` and the other
commands do not pay for it (Quix, rocksdict, the replay engine).
"""

from __future__ import annotations

import typer
from rich.console import Console

from scripts.cli_common import build_settings, setting_option


def register(app: typer.Typer) -> None:
    """Add the demo command to ``app``."""

    @app.command()
    def demo(
        orders: int = typer.Option(5000, min=1, help="Orders to simulate (about 5 events each)."),
        seed: int = typer.Option(42, help="Workload seed."),
        poison_rate: float = typer.Option(0.01, min=0.0, max=1.0, help="Share of poison records."),
        old_versions: float = typer.Option(0.3, "--old-versions", min=0.0, max=1.0, help=(
            "Share of OrderPlaced/PaymentAuthorized events written with an older schema version (upcast at decode)."
        )),
        confluent_share: float = typer.Option(0.3, "--confluent-share", min=0.0, max=1.0, help=(
            "Share of records in the Confluent wire format; > 0 uses the schema registry (default: start the local one)."
        )),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: start the local broker)."),
        schema_registry_url: str | None = setting_option(
            "schema_registry_url", "Schema registry for Confluent-framed records (default: start the local one).", "--registry",
        ),
    ) -> None:
        """Start Kafka, produce a workload with its oracle, run the four pipelines, compare the views, answer time-travel questions."""
        from scripts import kafka_local
        from scripts.main_job import run_main_job

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
        failures = run_main_job(settings, orders=orders, seed=seed, poison_rate=poison_rate, console=console,
                                old_versions=old_versions, confluent_share=confluent_share)
        if failures:
            console.print(f"[red]{len(failures)} check(s) failed[/]")
            raise typer.Exit(1)
        console.print("[green]every check agreed with the oracle[/]")
