"""`rewind registry up|down|status`: the local schema registry (Apicurio Registry, Confluent-compatible API)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from schemas.errors import ConfigError
from scripts import registry_local
from scripts.cli_common import build_settings, check_dir, setting_option
from scripts.local_service import check_ports

app = typer.Typer(
    help=(
        "Start, stop and inspect the local schema registry (Apicurio Registry 3.0.9, Confluent-compatible API "
        "on 127.0.0.1). Its schemas live in an H2 file under the run dir and survive down/up."
    ),
    no_args_is_help=True,
)
console = Console(stderr=True)


class Compatibility(str, Enum):
    """The transitive levels `up` may set: a replay from zero must read every old writer, not only the last."""

    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


# One option object shared by up, down and status.
_RUN_DIR = typer.Option(
    registry_local.PROJECT_ROOT / ".run" / "registry",
    envvar="REWIND_REGISTRY_RUN_DIR",
    show_envvar=True,
    help="Pid file, log and database of the local registry.",
)


@app.command()
def up(
    port: int = typer.Option(
        registry_local.DEFAULT_PORT, min=1, max=65535, envvar="REWIND_REGISTRY_PORT", show_envvar=True,
        help="HTTP port of the local registry (127.0.0.1).",
    ),
    management_port: int = typer.Option(
        registry_local.DEFAULT_MANAGEMENT_PORT, min=1, max=65535, envvar="REWIND_REGISTRY_MANAGEMENT_PORT", show_envvar=True,
        help="Management port, bound to 127.0.0.1 (Apicurio 3.0.9 does not open it; set so a newer build never listens on 0.0.0.0:9000).",
    ),
    compatibility: Compatibility = typer.Option(
        Compatibility.BACKWARD_TRANSITIVE, case_sensitive=False,
        help="Global compatibility level set on every `up` (Apicurio's default is NONE); per-subject levels are kept.",
    ),
    url: str | None = setting_option(
        "schema_registry_url", "External registry; when set to anything but this local registry's URL, nothing is started."
    ),
    run_dir: Path = _RUN_DIR,
    timeout_s: float = typer.Option(90.0, min=1.0, help="Give up if the registry is not ready within this many seconds."),
) -> None:
    """Fetch Apicurio Registry (Maven Central, cached), start it, wait until ready, set the compatibility level; print the URL.

    The URL printed is what clients and REWIND_SCHEMA_REGISTRY_URL take. Schemas
    are kept across restarts in an H2 file under the run dir (delete its data/
    to start empty).
    """
    settings = build_settings(schema_registry_url=url)
    # Checked even when an external registry makes them unused: a contradictory command line is refused, not ignored.
    check_ports(port, management_port, pair="the registry's HTTP and management ports", error=ConfigError)
    check_dir("--run-dir", run_dir)
    local_url = registry_local.registry_url(port)
    if settings.schema_registry_url and settings.schema_registry_url.rstrip("/") != local_url:
        console.print(f"REWIND_SCHEMA_REGISTRY_URL is set: using {settings.schema_registry_url}, nothing started")
        return
    address = registry_local.up(
        port=port,
        management_port=management_port,
        paths=registry_local.LocalRegistryPaths(run_dir=run_dir),
        compatibility=compatibility.value,
        timeout_s=timeout_s,
        console=console,
    )
    console.print(f"Schema registry is up at {address} (global compatibility {compatibility.value})")
    typer.echo(address)


@app.command()
def down(run_dir: Path = _RUN_DIR) -> None:
    """Stop the registry that `rewind registry up` started (SIGTERM, wait, SIGKILL after 30 s); its database is kept."""
    was_running = registry_local.down(paths=registry_local.LocalRegistryPaths(run_dir=run_dir))
    console.print("Schema registry stopped" if was_running else "Schema registry was not running")


@app.command()
def status(run_dir: Path = _RUN_DIR) -> None:
    """Say whether the local registry runs, its pid, URL, global compatibility level and log file (exit 3 when stopped)."""
    info = registry_local.status(paths=registry_local.LocalRegistryPaths(run_dir=run_dir))
    state = "running" if info.running else "stopped"
    typer.echo(f"{state} pid={info.pid} url={info.url} compatibility={info.compatibility} log={info.log}")
    if not info.running:
        raise typer.Exit(3)
