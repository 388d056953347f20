"""`rewind kafka up|down|status`: the local single-node KRaft broker."""

from __future__ import annotations

import typer
from rich.console import Console

from schemas.errors import ConfigError
from scripts import kafka_local
from scripts.cli_common import build_settings, setting_option
from scripts.local_service import check_ports

app = typer.Typer(help="Start, stop and inspect the local Apache Kafka broker (KRaft, one node).", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def up(
    port: int | None = setting_option("kafka_port", "Client port of the local broker."),
    controller_port: int | None = setting_option("kafka_controller_port", "KRaft controller port of the local broker."),
    bootstrap: str | None = setting_option("kafka_bootstrap_servers", "External cluster; when set, nothing is started."),
    timeout_s: float = typer.Option(90.0, min=1.0, help="Give up if the broker does not answer within this many seconds."),
) -> None:
    """Fetch the Kafka jars (Maven Central), format KRaft storage once, start the broker, wait until it answers."""
    settings = build_settings(kafka_port=port, kafka_controller_port=controller_port, kafka_bootstrap_servers=bootstrap)
    # Checked even when an external cluster makes them unused: a contradictory command line is refused, not ignored.
    check_ports(settings.kafka_port, settings.kafka_controller_port, pair="the broker and controller ports", error=ConfigError)
    if not settings.uses_local_broker:
        console.print(f"KAFKA_BOOTSTRAP_SERVERS is set: using {settings.bootstrap()}, nothing started")
        return
    address = kafka_local.up(port=settings.kafka_port, controller_port=settings.kafka_controller_port, timeout_s=timeout_s)
    console.print(f"Kafka is up at {address}")
    typer.echo(address)


@app.command()
def down() -> None:
    """Stop the broker that `rewind kafka up` started (SIGTERM, then wait)."""
    was_running = kafka_local.down()
    console.print("Kafka stopped" if was_running else "Kafka was not running")


@app.command()
def status() -> None:
    """Say whether the local broker runs, its pid, address and log file."""
    info = kafka_local.status()
    state = "running" if info["running"] else "stopped"
    typer.echo(f"{state} pid={info['pid']} bootstrap={info['bootstrap']} log={info['log']}")
    if not info["running"]:
        raise typer.Exit(3)
