"""`rewind run NAME`: one projection as a long-lived pipeline process.

Each command imports what it runs inside its own body, so that ``rewind --help`` and the other
commands do not pay for it (Quix, rocksdict, the replay engine).
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipelines.projections import VIEW_NAMES
from scripts.cli_common import build_settings, check_dir, check_topic, setting_option


def register(app: typer.Typer) -> None:
    """Add the run command to ``app``."""

    @app.command()
    def run(
        name: str = typer.Argument(..., help=f"View to maintain: {', '.join(VIEW_NAMES)}."),
        group: str | None = typer.Option(None, help=(
            "Consumer group (instances sharing it split the partitions). Default: rewind-<name> (quix), rewind-batch-<name> (batch)."
        )),
        state_dir: Path | None = setting_option("state_dir", "RocksDB state directory (one per instance on a machine)."),
        guarantee: str | None = setting_option("guarantee", "exactly-once (Kafka transactions) or at-least-once."),
        engine: str | None = setting_option("engine", "quix (Quix Streams) or batch (the batch engine; exactly-once only)."),
        orders_topic: str | None = setting_option("orders_topic", "Source topic of order events."),
        dlq_topic: str | None = setting_option("dlq_topic", "Dead-letter topic."),
        view_topic_prefix: str | None = setting_option("view_topic_prefix", "Prefix of the view.<name> output topic."),
        kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
        grace_ms: int | None = typer.Option(None, min=0, help=(
            "Windowed views (revenue-hourly): how long after a window ends changes still count, ms. Default: the view's own (10 min)."
        )),
        idle_timeout_s: float = typer.Option(0.0, min=0, help="Stop after this many seconds without new messages (0: run until SIGTERM/SIGINT)."),
        # At most a day: the lag probe waits half of it on a threading.Event, which overflows on huge values.
        progress_interval_s: float = typer.Option(10.0, min=0.1, max=86_400.0, help="Seconds between progress lines (events/s, lag per partition)."),
        outage_report_s: float = typer.Option(30.0, min=1.0, max=86_400.0, help=(
            "While the broker is unreachable, seconds between the lines that say so (and between probes of a broker that answers)."
        )),
        metrics_port: int | None = setting_option("metrics_port", (
            "Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (events, dead letters by reason, lag per partition, "
            "checkpoint times, state size); unset: none."
        )),
        outage_limit_s: float = typer.Option(0.0, min=0.0, envvar="REWIND_OUTAGE_LIMIT_S", show_envvar=True, help=(
            "Give up (exit 1, one line) once the broker has been unreachable this many seconds; 0: wait for as long as it takes."
        )),
    ) -> None:
        """Run one projection until SIGTERM/SIGINT: RocksDB state, exactly-once, view.<name> and DLQ output.

        Rides out broker outages: a run the broker fails is dropped and a fresh one starts once the broker
        answers again (pipelines.live.resilience); the work of the failed transaction is redone, never doubled.
        """
        from pipelines.live import build_pipeline
        from pipelines.live.resilience import OutagePolicy, QuixRun, Runnable, run_resilient
        from pipelines.metrics import PipelineCollector, metrics_registry, serve_metrics
        from pipelines.projections import get_projection
        from pipelines.topics import view_topic
        from schemas.errors import ConfigError

        get_projection(name)  # an unknown view fails before anything connects
        settings = build_settings(
            state_dir=state_dir, guarantee=guarantee, engine=engine, orders_topic=orders_topic, dlq_topic=dlq_topic,
            kafka_bootstrap_servers=kafka_bootstrap_servers, view_topic_prefix=view_topic_prefix, metrics_port=metrics_port,
        )
        # Arguments before the broker: Quix would create the state directory and the topics only after connecting.
        if group is not None and not group.strip():
            raise ConfigError(f"--group {group!r}: empty; omit it for the default group rewind-{name}")
        check_dir("--state-dir", state_dir or settings.state_dir)
        check_topic("--orders-topic", settings.orders_topic)
        check_topic("--dlq-topic", settings.dlq_topic)
        check_topic("--view-topic-prefix", view_topic(name, prefix=settings.view_topic_prefix))
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        if settings.engine == "batch" and settings.guarantee != "exactly-once":
            raise ConfigError("--engine batch runs exactly-once only; drop --guarantee at-least-once or use --engine quix")
        # The port before the broker: one taken by another process is one line, and nothing has started.
        collector = PipelineCollector(name, topic=settings.orders_topic)
        server = None if settings.metrics_port is None else serve_metrics(settings.metrics_port, metrics_registry(collector))

        def build() -> Runnable:
            if settings.engine == "batch":
                from pipelines.batch.engine import BatchEngine, BatchRun, default_batch_group
                from pipelines.batch.snapshots import PartitionSnapshots
                from pipelines.live.application import instance_identity

                engine_dir = state_dir or settings.state_dir / name
                snapshots = None
                if settings.batch_snapshot_interval_s > 0:
                    snapshots = PartitionSnapshots(settings.batch_snapshot_dir / (group or default_batch_group(name)))
                batch = BatchEngine(
                    settings, name, state_dir=engine_dir, group_id=group, progress_interval_s=progress_interval_s, grace_ms=grace_ms,
                    instance_id=instance_identity(settings, name, state_dir=engine_dir),
                    snapshots=snapshots, snapshot_interval_s=settings.batch_snapshot_interval_s,
                )
                collector.attach(batch.stats, lag=batch.stats.lag, state_dir=engine_dir)
                return BatchRun(batch)
            pipeline = build_pipeline(
                settings, name, group_id=group, grace_ms=grace_ms, progress_interval_s=progress_interval_s, state_dir=state_dir,
            )
            collector.attach(pipeline.stats, lag=pipeline.lag_probe.lag, state_dir=state_dir or settings.state_dir / name)
            return QuixRun(pipeline)

        try:
            stats = run_resilient(
                build, view=name, bootstrap=settings.bootstrap(), idle_timeout_s=idle_timeout_s,
                policy=OutagePolicy(report_interval_s=outage_report_s, limit_s=outage_limit_s,
                                    probe_timeout_s=min(settings.connect_timeout_s, 5.0)),
            )
        finally:
            if server is not None:
                server.close()
        typer.echo(stats.summary_line())
