"""`rewind replay NAME` and `rewind snapshot NAME`: rebuild a view from the orders log, now or as of T.

Each command imports what it runs inside its own body, so that ``rewind --help`` and the other
commands do not pay for it (Quix, rocksdict, the replay engine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pipelines.projections import VIEW_NAMES
from scripts.cli_common import build_settings, check_dir, check_new_dir, check_topic, parse_time_arg, setting_option

console = Console(stderr=True)

#: Upper bound of --workers. Each worker is a process with its own Kafka consumer, RocksDB spill and
#: share of the fold state, and folds at least one partition (12 by default): more workers than
#: partitions sit idle, and beyond a few per core they only contend. 64 is far above both here,
#: and a typo (100000000) is refused instead of allocating a partition group per worker.
MAX_WORKERS = 64


def _workers(workers: int | None) -> int:
    """``--workers``, or by default one per CPU core (at most MAX_WORKERS)."""
    return min(os.cpu_count() or 1, MAX_WORKERS) if workers is None else workers


def _run_or_exit(request: Any, console: Console, *, progress: bool) -> Any:
    """Run one replay with a progress bar (or none); SIGINT/SIGTERM ends the command with exit code 130."""
    from state.errors import ReplayInterruptedError
    from state.replay.engine import run_replay
    from state.replay.progress import NullProgress, RichProgress

    try:
        return run_replay(request, progress=RichProgress(console) if progress else NullProgress())
    except ReplayInterruptedError as exc:
        console.print(f"interrupted: {exc}")
        raise typer.Exit(130) from exc


def _schema_gate(url: str | None, *, force: bool, timeout_s: float) -> None:
    """Before a replay from offset 0 (every replay): refuse when a registry subject's level is not transitive.

    No registry URL: no gate. The check reads levels only (schemas.registry_client.replay_gate);
    it runs before any broker contact or file write.
    """
    if not url:
        return
    if force:
        console.print("schema compatibility gate skipped (--force)")
        return
    from schemas.registry_client import replay_gate

    levels = replay_gate(url, timeout_s=timeout_s)
    console.print(f"schema compatibility gate passed: {len(levels)} subjects, levels {', '.join(sorted({s.level for s in levels}))}")


def register(app: typer.Typer) -> None:
    """Add the replay and snapshot commands to ``app``."""

    @app.command()
    def replay(
        name: str = typer.Argument(..., help=f"View to rebuild: {', '.join(VIEW_NAMES)}."),
        from_offset: int = typer.Option(0, "--from-offset", min=0, help=(
            "Fold from this offset of every partition; only 0 is supported (a usable snapshot may seed the fold, with the same result)."
        )),
        as_of: str | None = typer.Option(None, "--as-of", help=(
            "Reconstruct the view as of this time (inclusive): ISO-8601 with a zone, or epoch ms. Default: up to the current end of the log."
        )),
        into: Path | None = typer.Option(None, "--into", help=(
            "Build the new view directory here (must not exist). Default: a new generation under <state-dir>/views/NAME/."
        )),
        swap: bool = typer.Option(False, "--swap", help=(
            "When built, serve it as NAME: atomic flip of <views-dir>/NAME/current; the old one stays as 'previous'."
        )),
        replay_dlq_topic: str | None = typer.Option(None, "--dlq-topic", help=(
            "Also write dead letters to this topic. Default: count them only (the live pipeline has written them once already)."
        )),
        workers: int | None = typer.Option(None, "--workers", min=0, max=MAX_WORKERS, help=(
            f"Fold processes, partitions split among them (at most {MAX_WORKERS}). Default: one per CPU core; 0: fold in this process."
        )),
        snapshots: bool = typer.Option(True, "--snapshots/--no-snapshots", help="Start from the newest usable snapshot (same result, less to read)."),
        snapshots_dir: Path | None = typer.Option(None, "--snapshots-dir", help="Where snapshots live. Default: <state-dir>/snapshots."),
        views_dir: Path | None = typer.Option(None, "--views-dir", help="Where served view directories live. Default: <state-dir>/views."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar (events/s, per-partition offsets, ETA) on stderr."),
        state_dir: Path | None = setting_option("state_dir", "State directory (views and snapshots live under it)."),
        orders_topic: str | None = setting_option("orders_topic", "Source topic of order events."),
        max_lateness_ms: int | None = setting_option("max_lateness_ms", (
            "Speed hint only (how long counter views hold changes to write them in event-time order); never changes an answer."
        )),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
        keep_generations: int | None = setting_option("replay_keep_generations", (
            "With --swap: keep the newest N generations of NAME on disk, delete older ones (never the served one or 'previous')."
        ), "--keep-generations"),
        force: bool = typer.Option(False, "--force", help=(
            "Skip the schema compatibility gate (with REWIND_SCHEMA_REGISTRY_URL set, a replay from offset 0 refuses to start "
            "when a subject's level is not transitive)."
        )),
    ) -> None:
        """Fold the orders log into a new directory of view NAME (every version), optionally as of T, optionally swap it in.

        1. build into DIR.tmp (from the newest usable snapshot, or offset 0) while the served view keeps serving;
        2. close and fsync it; 3. rename DIR.tmp -> DIR; 4. with --swap, flip <views-dir>/NAME/current to DIR.
        """
        from pipelines.projections import get_projection
        from pipelines.topics import check_reachable
        from schemas.errors import ConfigError
        from state.replay.engine import ReplayRequest
        from state.replay.swap import new_generation_dir, swap_view

        # Every argument before the registry, the broker or the file system is touched: the build
        # directory appears only after the log's metadata was read.
        get_projection(name)
        if from_offset != 0:
            raise ConfigError("--from-offset: only 0 is supported (a fold that starts mid-log has no order state; snapshots give the speed-up)")
        settings = build_settings(state_dir=state_dir, orders_topic=orders_topic, max_lateness_ms=max_lateness_ms,
                                  kafka_bootstrap_servers=kafka_bootstrap_servers, replay_keep_generations=keep_generations)
        as_of_ms = parse_time_arg("--as-of", as_of) if as_of is not None else None
        if swap and as_of_ms is not None:
            raise ConfigError("--swap with --as-of would serve a view of the past as the current one; build it with --into and query it there")
        check_topic("--orders-topic", settings.orders_topic)
        if replay_dlq_topic is not None:
            check_topic("--dlq-topic", replay_dlq_topic)
        views_root = views_dir or settings.state_dir / "views"
        if into is None or swap:
            check_dir("--views-dir" if views_dir else "--state-dir", views_root)
        target = check_new_dir("--into", into) if into is not None else new_generation_dir(views_root, name)
        if as_of_ms is not None:
            check_dir("--state-dir", settings.state_dir)  # an as-of replay keeps the log's range facts under it
        if snapshots:
            check_dir("--snapshots-dir" if snapshots_dir else "--state-dir", snapshots_dir or settings.state_dir / "snapshots", writable=False)
        _schema_gate(settings.schema_registry_url, force=force, timeout_s=settings.connect_timeout_s)
        check_reachable(settings.bootstrap(), timeout_s=settings.connect_timeout_s)
        request = ReplayRequest(
            view=name, bootstrap=settings.bootstrap(), topic=settings.orders_topic, into=target,
            mode="to-end" if as_of_ms is None else "as-of", as_of_ms=as_of_ms, max_lateness_ms=settings.max_lateness_ms,
            workers=_workers(workers),
            snapshots_root=(snapshots_dir or settings.state_dir / "snapshots") if snapshots else None,
            dlq_topic=replay_dlq_topic, facts_dir=settings.state_dir / "log-facts",
            schema_registry_url=settings.schema_registry_url,
        )
        result = _run_or_exit(request, console, progress=progress)
        manifest = result.manifest
        console.print(
            f"[bold]{name}[/bold] -> {result.output}: {result.records_read:,} records in {result.fold_s:.1f}s "
            f"({result.events_per_s:,.0f} events/s), {result.updates_written:,} versions"
            + (f", from snapshot {result.snapshot}" if result.snapshot else "")
            + f"; dead letters {manifest.counters.get('dead_lettered', 0):,}"
            + ("" if replay_dlq_topic else " (counted, not written)")
        )
        swapped = None
        if swap:
            swapped = swap_view(views_root, name, result.output, keep_generations=settings.replay_keep_generations)
            console.print(f"serving {swapped.current}" + (f" (previous: {swapped.previous})" if swapped.previous else ""))
        typer.echo("REWIND_REPLAY " + json.dumps({
            "view": name, "output": str(result.output), "records": result.records_read, "updates": result.updates_written,
            "fold_s": round(result.fold_s, 3), "events_per_s": round(result.events_per_s), "snapshot": result.snapshot,
            "next_offsets": {str(p): o for p, o in manifest.next_offsets.items()}, "watermark_ms": manifest.watermark_ms,
            "as_of_ms": manifest.as_of_ms, "complete": manifest.complete, "counters": manifest.counters,
            "served": str(swapped.current) if swapped else None,
        }, sort_keys=True))

    @app.command()
    def snapshot(
        name: str = typer.Argument(..., help="View whose replay output to snapshot."),
        at: str | None = typer.Option(None, "--at", help=(
            "Build the snapshot by replaying every record before offsets_for_times(T + 1) (ISO-8601 with zone, or epoch ms); "
            "it then seeds every as-of replay at or after T."
        )),
        source: Path | None = typer.Option(None, "--from", help=(
            "Replay output directory to snapshot (default: the served one, <views-dir>/NAME/current). Ignored with --at."
        )),
        snapshots_dir: Path | None = typer.Option(None, "--snapshots-dir", help="Where snapshots live. Default: <state-dir>/snapshots."),
        views_dir: Path | None = typer.Option(None, "--views-dir", help="Where served view directories live. Default: <state-dir>/views."),
        workers: int | None = typer.Option(None, "--workers", min=0, max=MAX_WORKERS, help=(
            f"With --at: fold processes (default: one per CPU core; at most {MAX_WORKERS})."
        )),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="With --at: show the progress bar on stderr."),
        state_dir: Path | None = setting_option("state_dir", "State directory (views and snapshots live under it)."),
        orders_topic: str | None = setting_option("orders_topic", "Source topic of order events."),
        max_lateness_ms: int | None = setting_option(
            "max_lateness_ms", "Speed hint only (how long counter views hold changes to write them in event-time order)."
        ),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
        force: bool = typer.Option(False, "--force", help=(
            "With --at: skip the schema compatibility gate (it replays from offset 0, like rewind replay)."
        )),
    ) -> None:
        """Write a snapshot of view NAME: a RocksDB checkpoint tagged with per-partition next offsets and the event-time watermark."""
        from pipelines.projections import get_projection
        from pipelines.topics import check_reachable
        from schemas.errors import ConfigError
        from state.errors import SnapshotError
        from state.replay.engine import ReplayRequest, checkpoint_view_store
        from state.replay.swap import served_dir
        from state.snapshots import new_snapshot_dir, take_snapshot

        # Every argument before the registry, the broker or the file system is touched.
        get_projection(name)
        settings = build_settings(state_dir=state_dir, orders_topic=orders_topic, max_lateness_ms=max_lateness_ms,
                                  kafka_bootstrap_servers=kafka_bootstrap_servers)
        at_ms = parse_time_arg("--at", at) if at is not None else None
        snapshots_root = check_dir("--snapshots-dir" if snapshots_dir else "--state-dir", snapshots_dir or settings.state_dir / "snapshots")
        if at_ms is None and source is not None and not source.is_dir():
            raise ConfigError(f"--from {str(source)!r}: not a directory (give a replay output directory)")
        if at_ms is None and source is None:
            check_dir("--views-dir" if views_dir else "--state-dir", views_dir or settings.state_dir / "views", writable=False)
        if at_ms is not None:
            # A snapshot is a replay output: build one straight into the snapshots directory.
            check_topic("--orders-topic", settings.orders_topic)
            _schema_gate(settings.schema_registry_url, force=force, timeout_s=settings.connect_timeout_s)
            check_reachable(settings.bootstrap(), timeout_s=settings.connect_timeout_s)
            request = ReplayRequest(
                view=name, bootstrap=settings.bootstrap(), topic=settings.orders_topic,
                into=new_snapshot_dir(snapshots_root, name), mode="up-to", as_of_ms=at_ms,
                max_lateness_ms=settings.max_lateness_ms, workers=_workers(workers),
                snapshots_root=snapshots_root, schema_registry_url=settings.schema_registry_url,
            )
            result = _run_or_exit(request, console, progress=progress)
            path, manifest = result.output, result.manifest
        else:
            origin = source or served_dir(views_dir or settings.state_dir / "views", name)
            if origin is None:
                raise SnapshotError(f"no served view {name} to snapshot: give --from DIR, or --at T")
            taken = take_snapshot(origin, snapshots_root=snapshots_root, checkpoint_store=checkpoint_view_store)
            path, manifest = taken.path, taken.manifest
        console.print(f"snapshot {path}: next offsets {dict(manifest.next_offsets)}, watermark {manifest.watermark_ms}, "
                      f"versions valid from at most {manifest.max_valid_from_ms}")
        typer.echo("REWIND_SNAPSHOT " + json.dumps({
            "view": name, "path": str(path), "next_offsets": {str(p): o for p, o in manifest.next_offsets.items()},
            "watermark_ms": manifest.watermark_ms, "max_valid_from_ms": manifest.max_valid_from_ms,
        }, sort_keys=True))
