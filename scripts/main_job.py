"""The main job, end to end: Kafka, a workload with its oracle, every pipeline, the views, time travel.

Two sources of the log (``source``):

* ``"service"`` (the default): the workload is driven through the order service as commands
  and published by its outbox relay (:mod:`scripts.main_job_service`), so every event in the
  log was decided by the service; the views are checked against its event store as well as
  against the oracle. No poison, every event in the newest schema version, single-object
  framing: what the service writes.
* ``"produce"``: the workload's records are produced straight to Kafka, with poison, older
  schema versions and a share in the Confluent wire format (what other producers may write).

Every step prints what it checked; the job exits non-zero if any check fails.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from pipelines.dlq import headers_to_dict
from pipelines.live.supervisor import PipelineChild, group_lag
from pipelines.projections import VIEW_NAMES
from pipelines.readback import data_end_offsets, latest_by_key, read_to_end
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from schemas import CodecError, ConfigError, EventCodec, RewindError
from schemas.codec import CONFLUENT_MAGIC
from schemas.confluent import ConfluentSchemas
from schemas.registry import load_registry
from scripts.main_job_service import CommandSide
from scripts.workload import Oracle, Workload, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import (
    expected_customers,
    expected_order_status,
    expected_payments_daily,
    expected_revenue_windows,
    expected_skus,
    late_revenue,
    mismatched_keys,
)
from scripts.workload.framing import confluent_framed, register_all
from state.replay.engine import ReplayRequest, run_replay
from state.replica import Replica, view_topics
from state.rocks_store import open_store

__all__ = ["MainJob", "MainJobFailed", "Source", "run_main_job"]

#: Where the main job's log comes from: the order service (commands) or straight from the workload's records.
Source = Literal["service", "produce"]

DAY_MS = 86_400_000


class MainJobFailed(RewindError):
    """A check of the main job against the oracle failed; the message says which."""


@dataclass
class MainJob:
    """One run of the main job; every topic is prefixed with ``run_id`` so runs never mix."""

    settings: RewindSettings
    orders: int = 5000
    seed: int = 42
    source: Source = "service"
    #: Share of poison records (``source="produce"`` only: the service never writes one).
    poison_rate: float = 0.0
    #: Share of the events of evolved types written with an older schema version (``source="produce"`` only).
    old_versions: float = 0.0
    #: Share of records in the Confluent wire format (``source="produce"`` only; needs ``settings.schema_registry_url``).
    confluent_share: float = 0.0
    #: Concurrent HTTP senders of commands (``source="service"``).
    workers: int = 8
    console: Console = field(default_factory=lambda: Console(stderr=False))
    run_id: str = field(default_factory=lambda: "demo-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    #: The run's files go to ``<run_root>/<run_id>`` (state, logs, oracle, event store).
    run_root: Path = Path(".run/demo")
    failures: list[str] = field(default_factory=list)
    #: (orderId, seq, eventId) of every event read back from the orders topic, and its events per type.
    topic_events: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    topic_types: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.source == "service" and (self.poison_rate or self.old_versions or self.confluent_share):
            raise ConfigError("poison, old schema versions and Confluent framing only apply to --source produce: the order service "
                              "writes every event once, in the newest schema version, single-object framed")
        self.run_dir = self.run_root / self.run_id
        self.settings = self.settings.model_copy(update={
            "orders_topic": f"{self.run_id}.orders", "dlq_topic": f"{self.run_id}.orders.dlq",
            "view_topic_prefix": f"{self.run_id}.", "state_dir": self.run_dir / "state",
        })

    def check(self, ok: bool, what: str) -> None:
        """Record one check against the oracle and print it."""
        self.console.print(("[green]✔[/] " if ok else "[red]✘[/] ") + what)
        if not ok:
            self.failures.append(what)

    def codec(self) -> EventCodec:
        """A codec for this run's records: Confluent-framed ones through the run's registry, if it has one."""
        url = self.settings.schema_registry_url
        return EventCodec(load_registry(), schema_ids=ConfluentSchemas(url, load_registry()) if url else None)

    # Step 1
    def generate(self) -> Workload:
        """The workload over the last three days (poison and old versions only when produced straight to Kafka)."""
        now_ms = int(time.time() * 1000)
        config = WorkloadConfig(seed=self.seed, orders=self.orders, days=3, poison_rate=self.poison_rate,
                                old_version_rate=self.old_versions, start_ms=now_ms - 3 * DAY_MS,
                                max_lateness_ms=self.settings.max_lateness_ms)
        return generate(config)

    def write_oracle(self, workload: Workload) -> Path:
        """Fold the workload into its oracle under the run directory."""
        oracle_path = self.run_dir / "oracle.sqlite"
        oracle_path.parent.mkdir(parents=True, exist_ok=True)
        write_oracle(workload, oracle_path, topic=self.settings.orders_topic)
        return oracle_path

    # Step 1 + 2, source "service"
    def drive(self, command_side: CommandSide) -> Path:
        """Generate the workload, drive it through the order service as commands, wait until the relay published it all."""
        self.console.rule(f"[bold]1. {self.orders:,} orders through the order service -> outbox relay -> {self.settings.orders_topic}")
        command_side.start()
        workload = self.generate()
        command_side.drive(workload)
        command_side.wait_published()
        oracle_path = self.write_oracle(workload)
        self.console.print(f"oracle: {oracle_path}")
        return oracle_path

    # Step 1 + 2, source "produce"
    def produce(self) -> Path:
        """Generate the workload over the last three days, produce it, write the oracle."""
        self.console.rule(f"[bold]1. Produce {self.orders:,} orders to {self.settings.orders_topic}")
        workload = self.generate()
        records = list(workload.records)
        url = self.settings.schema_registry_url
        if self.confluent_share > 0 and url:
            headers = register_all(ConfluentSchemas(url, load_registry(), timeout_s=self.settings.connect_timeout_s), load_registry())
            records = confluent_framed(records, share=self.confluent_share, seed=self.seed, headers=headers)
            self.console.print(f"every schema version registered in {url}; {self.confluent_share:.0%} of the records Confluent-framed")
        report = produce_workload(self.settings, records)
        oracle_path = self.write_oracle(workload)
        self.console.print(f"{report.delivered:,} records ({report.poison} poison) at {report.events_per_s:,.0f} ev/s; oracle: {oracle_path}")
        return oracle_path

    # Step 3
    def read_back(self, oracle: Oracle) -> None:
        """Consume the topic back and compare counts per event type with the oracle."""
        self.console.rule("[bold]2. Read the log back")
        codec = self.codec()
        counts: Counter[str] = Counter()
        written: Counter[tuple[str, int, str]] = Counter()
        for msg in read_to_end(self.settings.bootstrap(), self.settings.orders_topic, timeout_s=120):
            value = msg.value()
            try:
                schema, _ = codec.decode_written(value)
                envelope = codec.decode(value)["envelope"]
                counts[envelope["eventType"]] += 1
                self.topic_events[(envelope["orderId"], envelope["seq"], envelope["eventId"])] += 1
            except CodecError as exc:
                counts[f"<{type(exc).__name__}>"] += 1
                continue
            written[(schema.event_type, schema.version, "Confluent" if value[0] == CONFLUENT_MAGIC else "single-object")] += 1
        versions = Table("event type", "schema version", "framing", "records", title="as written (every consumer reads the newest shape)")
        for (event_type, version, framing), n in sorted(written.items()):
            if len(load_registry().versions(event_type)) > 1 or framing == "Confluent":
                versions.add_row(event_type, f"v{version}", framing, f"{n:,}")
        if versions.row_count:
            self.console.print(versions)
        expected = Counter(oracle.event_type_counts())
        decodable_poison = Counter(p.event_type for p in oracle.poison() if p.kind in ("impossible_transition", "duplicate"))
        table = Table("event type", "read back", "oracle (good)", "oracle (poison)")
        for event_type in sorted(set(counts) | set(expected)):
            table.add_row(event_type, f"{counts[event_type]:,}", f"{expected[event_type]:,}", f"{decodable_poison[event_type]:,}")
        self.console.print(table)
        decoded = Counter({k: v for k, v in counts.items() if not k.startswith("<")})
        self.topic_types = decoded
        self.check(decoded == expected + decodable_poison, "every event type count equals the oracle's (good + decodable poison)")
        undecodable = sum(v for k, v in counts.items() if k.startswith("<"))
        self.check(undecodable == sum(1 for p in oracle.poison() if p.kind in ("undecodable", "unknown_schema")),
                   f"{undecodable} undecodable records, as the oracle's poison list says")

    # Step 4
    def run_pipelines(self) -> dict[str, PipelineChild]:
        """Start every pipeline and wait until every one has committed the whole log."""
        self.console.rule("[bold]3. Run every pipeline (exactly-once) until they catch up")
        children = {
            view: PipelineChild.start(self.settings, view, group=f"{self.run_id}-{view}", state_dir=self.run_dir / "state" / view,
                                      log_path=self.run_dir / "logs" / f"{view}.log")
            for view in VIEW_NAMES
        }
        deadline = time.monotonic() + 600
        with self.console.status("waiting for the pipelines") as status:
            while True:
                lags = {v: group_lag(self.settings.bootstrap(), c.group, self.settings.orders_topic) for v, c in children.items()}
                status.update("lag per pipeline: " + ", ".join(f"{v}={lag:,}" for v, lag in lags.items()))
                dead = [v for v, c in children.items() if not c.alive()]
                if dead:
                    raise MainJobFailed(f"pipeline {dead[0]} exited:\n{children[dead[0]].log_tail()}")
                if not any(lags.values()):
                    break
                if time.monotonic() > deadline:
                    raise MainJobFailed(f"pipelines did not catch up in 600 s: {lags}")
                time.sleep(1.0)  # a progress display refresh, not synchronisation: the loop polls a condition
        self.console.print("every pipeline have committed every record of the log")
        return children

    def show_views(self, oracle: Oracle) -> None:
        """A few rows of each view next to the oracle's answer, and a full comparison of every row.

        The re-keyed views lag a little behind the orders topic (their second step reads a
        repartition topic), so each comparison is polled until it agrees or a deadline passes.
        """
        self.console.rule("[bold]4. The views (view.<name> topics) next to the oracle")
        bootstrap, prefix = self.settings.bootstrap(), self.settings.view_topic_prefix
        expected = {
            "order-status": expected_order_status(oracle), "customer-summary": expected_customers(oracle),
            "product-sales": expected_skus(oracle), "payments-daily": expected_payments_daily(oracle),
        }
        for view, exp in expected.items():
            rows: dict = {}

            def mismatched(rows: dict = rows, view: str = view, exp: dict = exp) -> list[str]:
                rows.clear()
                rows.update(latest_by_key(bootstrap, view_topic(view, prefix=prefix)))
                return mismatched_keys(rows, exp)

            bad = _poll(mismatched, timeout_s=120)
            fields = list(next(iter(exp.values())))[1:6]
            table = Table("key", *fields, title=f"{view} (view / oracle)")
            for key in sorted(exp)[:3]:
                actual = rows.get(key, {}).get("row", {})
                table.add_row(key, *(f"{actual.get(f)} / {exp[key][f]}" for f in fields))
            self.console.print(table)
            self.check(not bad, f"{view}: all {len(exp):,} rows equal the oracle" + (f" ({len(bad)} differ)" if bad else ""))
        windows = {k: v for k, v in expected_revenue_windows(oracle).items() if v}
        state: dict[str, int] = {}
        codec = self.codec()

        def revenue_mismatch() -> list[str]:
            revenue = {k: r["row"]["revenueMinor"] for k, r in latest_by_key(bootstrap, view_topic("revenue-hourly", prefix=prefix)).items()}
            late = [codec.decode(m.value()) for m in read_to_end(bootstrap, self.settings.dlq_topic)
                    if headers_to_dict(m.headers()).get("rewind.reason.class") == "LateEvent"]
            state.update(windows=len(revenue), late=len(late))
            for key, amount in late_revenue(oracle, late).items():
                revenue[key] = revenue.get(key, 0) + amount
            return [k for k in set(windows) | set(revenue) if windows.get(k, 0) != revenue.get(k, 0)]

        bad = _poll(revenue_mismatch, timeout_s=120)
        self.check(not bad, f"revenue-hourly: {state['windows']:,} windows + {state['late']:,} late events (dead-lettered "
                            f"past grace) add up to the oracle's revenue in each of its {len(windows):,} hours")

    def time_travel(self, oracle: Oracle) -> None:
        """"What was order X's status at T?" for three points in its life: replica as-of read, replay as of T, oracle."""
        self.console.rule("[bold]5. Time travel: versioned read replica vs replay as of T vs oracle")
        topics = view_topics(prefix=self.settings.view_topic_prefix, views=("order-status",))
        store = open_store(self.run_dir / "replica")
        replica = Replica(store, bootstrap=self.settings.bootstrap(), topics=topics)
        replica.start()
        try:
            ends = {t: data_end_offsets(self.settings.bootstrap(), t) for t in topics}
            _poll(lambda: [t for t, parts in ends.items() for p, o in parts.items() if store.position().get(t, {}).get(p, 0) < o],
                  timeout_s=120)
        finally:
            replica.stop()
        order = next(o for o in oracle.final_orders() if o.status == "DELIVERED" and o.times_ms["shipped_at_ms"])
        placed, shipped, delivered = (order.times_ms[c] for c in ("placed_at_ms", "shipped_at_ms", "delivered_at_ms"))
        assert placed is not None and shipped is not None and delivered is not None, f"{order.order_id} was delivered"
        questions = [("1 s after it was placed", placed + 1000), ("exactly when it shipped", shipped), ("1 s before delivery", delivered - 1000)]
        table = Table("as of", "T (UTC)", "replica as-of read", "replay as of T", "oracle", title=f"order {order.order_id}")
        for label, at_ms in questions:
            replica_answer = store.get_as_of("order-status", order.order_id, at_ms)
            into = self.run_dir / f"replay-order-status-{at_ms}"
            run_replay(ReplayRequest(view="order-status", bootstrap=self.settings.bootstrap(), topic=self.settings.orders_topic,
                                     into=into, mode="as-of", as_of_ms=at_ms, facts_dir=self.settings.state_dir / "log-facts",
                                     schema_registry_url=self.settings.schema_registry_url))
            replayed = open_store(into / "view", read_only=True)
            replay_answer = replayed.get("order-status", order.order_id)
            replayed.close()
            truth = oracle.order_as_of(order.order_id, at_ms)
            answers = [a.row["status"] if a else None for a in (replica_answer, replay_answer)] + [str(truth.status) if truth else None]
            table.add_row(label, datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="seconds"), *map(str, answers))
            self.check(len(set(answers)) == 1, f"{order.order_id} {label}: all three say {answers[2]}")
        store.close()
        self.console.print(table)
        self.console.print(f"try it: rewind query order-status {order.order_id} --history --replica-dir {self.run_dir / 'replica'}")

    def stop(self, children: dict[str, PipelineChild]) -> None:
        """SIGTERM every pipeline and check in = applied + duplicates + dead-lettered."""
        self.console.rule("[bold]4b. Stop the pipelines (SIGTERM)")
        table = Table("pipeline", "in", "applied", "duplicates", "dead-lettered", "late (windows)")
        for view, child in children.items():
            stats = child.stop()
            if stats is None:
                self.check(False, f"{view} printed its counters on SIGTERM")
                continue
            table.add_row(view, *(f"{stats[k]:,}" for k in ("events_in", "applied", "duplicates", "dead_lettered", "late")))
            self.check(stats["events_in"] == stats["applied"] + stats["duplicates"] + stats["dead_lettered"],
                       f"{view}: in = applied + duplicates + dead-lettered")
        self.console.print(table)


def _poll(mismatches: Any, *, timeout_s: float) -> list[str]:
    """Call ``mismatches`` until it returns an empty list or ``timeout_s`` passes; return the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        bad = mismatches()
        if not bad or time.monotonic() > deadline:
            return bad
        time.sleep(1.0)


def run_main_job(settings: RewindSettings, *, orders: int, seed: int, console: Console, source: Source = "service",
                 poison_rate: float = 0.0, old_versions: float = 0.0, confluent_share: float = 0.0, workers: int = 8,
                 run_id: str | None = None, run_root: Path | None = None) -> list[str]:
    """Run every step; return the failed checks (empty: all agreed with the oracle, and with the event store).

    ``source="service"`` starts the order service and its relay as child processes and stops
    them at the end, on a failure too; ``poison_rate``, ``old_versions`` and ``confluent_share``
    only apply to ``source="produce"`` (ConfigError otherwise). ``run_id`` (default: ``demo-<UTC time>``)
    prefixes every topic; the run's files go to ``<run_root>/<run_id>`` (default root: ``.run/demo``).
    """
    where: dict[str, Any] = {k: v for k, v in {"run_id": run_id, "run_root": run_root}.items() if v is not None}
    job = MainJob(settings, orders=orders, seed=seed, source=source, poison_rate=poison_rate, console=console,
                  old_versions=old_versions, confluent_share=confluent_share, workers=workers, **where)
    console.print(f"run id [bold]{job.run_id}[/]: topics {job.settings.orders_topic}, {job.settings.dlq_topic}, {job.settings.view_topic_prefix}view.<name>")
    command_side = CommandSide(job.settings, run_dir=job.run_dir, console=console, check=job.check, workers=workers) if source == "service" else None
    try:
        oracle_path = job.drive(command_side) if command_side is not None else job.produce()
        with Oracle.open(oracle_path) as oracle:
            if command_side is not None:
                console.rule("[bold]1b. Bad input: commands the order service refuses")
                command_side.bad_input(oracle)
            job.read_back(oracle)
            children = job.run_pipelines()
            try:
                job.show_views(oracle)
                if command_side is not None:
                    console.rule("[bold]4a. The log and the views against the order service's event store")
                    command_side.check_views(topic_events=job.topic_events, topic_types=job.topic_types, poll=_poll)
            finally:
                job.stop(children)
            job.time_travel(oracle)
        if command_side is not None:
            console.rule("[bold]6. Stop the order service and the outbox relay (SIGTERM)")
            command_side.stop()
    finally:
        if command_side is not None:
            command_side.kill()
    return job.failures
