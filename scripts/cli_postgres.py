"""`rewind postgres up|down|status`: the local PostgreSQL 15 server for the order service's event store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from scripts import postgres_local
from scripts.cli_common import build_settings, check_dir, setting_option

app = typer.Typer(
    help=(
        "Start, stop and inspect the local PostgreSQL 15 server (127.0.0.1 only, trust authentication) "
        "for the order service's event store. Its cluster lives under the run dir and survives down/up."
    ),
    no_args_is_help=True,
)
console = Console(stderr=True)

# One option object shared by up, down and status.
_RUN_DIR = typer.Option(
    postgres_local.PROJECT_ROOT / ".run" / "pg",
    envvar="REWIND_POSTGRES_RUN_DIR",
    show_envvar=True,
    help="Cluster (data/), log and lock of the local PostgreSQL server.",
)


@app.command()
def up(
    port: int | None = setting_option("postgres_port", "Port of the local PostgreSQL server (127.0.0.1)."),
    run_dir: Path = _RUN_DIR,
    timeout_s: float = typer.Option(60.0, min=1.0, help="Give up if the server does not accept connections within this many seconds."),
) -> None:
    """Initialise a cluster once, start PostgreSQL 15, create the database `rewind`; print its URL.

    The URL printed is what REWIND_DATABASE_URL takes:
    postgresql+psycopg://postgres@127.0.0.1:PORT/rewind. Run as root, the server
    runs as the `postgres` OS user (PostgreSQL refuses root).
    """
    settings = build_settings(postgres_port=port)
    check_dir("--run-dir", run_dir)
    url = postgres_local.up(
        port=settings.postgres_port, paths=postgres_local.LocalPostgresPaths(run_dir=run_dir), timeout_s=timeout_s, console=console
    )
    console.print(f"PostgreSQL is up; its database: {url}")
    if settings.database_url and _plain(settings.database_url) != _plain(url):
        console.print("REWIND_DATABASE_URL names another database: the order service keeps using that one until you export this URL")
    typer.echo(url)


@app.command()
def down(run_dir: Path = _RUN_DIR) -> None:
    """Stop the server that `rewind postgres up` started (fast shutdown; immediate after 30 s); its cluster is kept."""
    was_running = postgres_local.down(paths=postgres_local.LocalPostgresPaths(run_dir=run_dir))
    console.print("PostgreSQL stopped" if was_running else "PostgreSQL was not running")


@app.command()
def status(run_dir: Path = _RUN_DIR) -> None:
    """Say whether the local server runs, its pid, database URL and log file (exit 3 when stopped)."""
    info = postgres_local.status(paths=postgres_local.LocalPostgresPaths(run_dir=run_dir))
    state = "running" if info.running else "stopped"
    typer.echo(f"{state} pid={info.pid} url={info.url} log={info.log}")
    if not info.running:
        raise typer.Exit(3)


def _plain(url: str) -> str:
    """``url`` without SQLAlchemy's driver suffix: postgresql+psycopg:// and postgresql:// name the same database."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
