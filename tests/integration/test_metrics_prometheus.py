"""Metrics scraped by a real Prometheus (Debian's 2.42, started by the test on loopback with a 1 s scrape interval).

One world: outbox rows in SQLite, `rewind outbox relay` publishing them to the orders topic, one poison record
produced beside them, and `rewind run order-status` of each engine (batch and Quix) folding the topic; every process serves
--metrics-port, Prometheus scrapes both and evaluates the shipped alert rules. No sleeps synchronise: every wait
polls Prometheus's query API or the broker with a deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from pipelines.dlq import headers_to_dict
from pipelines.orders.database import migrate, open_database
from pipelines.orders.relay_outbox import outbox_lag
from pipelines.partitioning import partition_for
from pipelines.settings import RewindSettings
from pipelines.topics import ORDERS_TOPIC_CONFIG, ensure_topic
from scripts.prometheus_local import PROMETHEUS, SHIPPED_RULES, LocalPrometheus
from tests.integration.support import PipelineProcess, for_engine, group_caught_up, isolated_settings, read_topic, wait_until
from tests.integration.test_outbox_relay import PARTITIONS, RelayProcess, workload_rows, write_rows

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not PROMETHEUS.exists(), reason=f"{PROMETHEUS} missing (scripts/ensure-apt-tools.sh installs it)"),
]

VIEW = "order-status"
POISON_KEY = b"poison-order-1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _value(prometheus: LocalPrometheus, expr: str) -> float | None:
    """The one value of ``expr`` (None while it has no sample; more than one is a failure)."""
    result = prometheus.query(expr)
    assert len(result) <= 1, f"{expr}: {result}"
    return next(iter(result.values()), None)


def _samples_since(prometheus: LocalPrometheus, expr: str, since_s: float) -> list[tuple[float, float]]:
    """The scraped (time, value) samples of the one series ``expr`` selects over the last 30 s, those after ``since_s``."""
    data: Any = prometheus.api("query", query=f"{expr}[30s]")
    assert len(data["result"]) <= 1, data
    values = data["result"][0]["values"] if data["result"] else []
    return [(float(t), float(v)) for t, v in values if float(t) > since_s]


ENGINES = ("batch", "quix")


@pytest.fixture
def prometheus_world(tmp_path: Path) -> Iterator[tuple[dict[str, int], int, LocalPrometheus]]:
    """(metrics port per engine's pipeline, the relay's metrics port, a Prometheus scraping them every second with the shipped rules)."""
    pipeline_ports, relay_port = {engine: _free_port() for engine in ENGINES}, _free_port()
    targets = {"rewind-pipelines": [f"127.0.0.1:{port}" for port in pipeline_ports.values()], "rewind-relay": [f"127.0.0.1:{relay_port}"]}
    with LocalPrometheus.start(port=_free_port(), run_dir=tmp_path / "prometheus", targets=targets, rule_files=[SHIPPED_RULES]) as prometheus:
        yield pipeline_ports, relay_port, prometheus
        assert prometheus.stop() == 0, prometheus.log_tail()


@dataclass
class Scraped:
    """What Prometheus held for one engine's pipeline once it had caught up and its applied counter stopped moving."""

    settled_applied: list[tuple[float, float]]
    events: dict[str, float | None]
    by_reason: dict[str, float]
    checkpoints: float | None
    state_bytes: float | None


def _settled(prometheus: LocalPrometheus, *, kafka_bootstrap: str, settings: RewindSettings, group: str, instance: str) -> Scraped:
    """Wait until the pipeline at ``instance`` has lag series for every partition, has committed the whole topic, and two
    scrapes since show one applied count; then read its series."""
    topic = settings.orders_topic
    where = f'pipeline="{VIEW}",instance="{instance}"'
    lag = f'rewind_pipeline_consumer_lag{{{where},topic="{topic}"}}'
    wait_until(lambda: {dict(k)["partition"] for k in prometheus.query(lag)} == {str(p) for p in range(PARTITIONS)},
               timeout_s=60, what=f"a lag series per orders partition in Prometheus ({settings.engine})")
    wait_until(lambda: group_caught_up(kafka_bootstrap, group, topic), timeout_s=90, what=f"the {settings.engine} pipeline to commit the topic")
    wait_until(lambda: _value(prometheus, f"sum({lag})") == 0, timeout_s=30, what=f"the lag series at 0 ({settings.engine})")
    caught_up_at = _value(prometheus, "vector(time())")
    assert caught_up_at is not None
    applied = f'rewind_pipeline_events_total{{{where},outcome="applied"}}'
    # Stopped moving: at least two scrapes after the catch-up, all with one value.
    settled = wait_until(lambda: len(s := _samples_since(prometheus, applied, caught_up_at)) >= 2 and len({v for _, v in s}) == 1 and s,
                         timeout_s=30, what=f"two scrapes of the applied counter after the catch-up ({settings.engine})")
    return Scraped(
        settled_applied=settled,
        events={o: _value(prometheus, f'rewind_pipeline_events_total{{{where},outcome="{o}"}}')
                for o in ("events_in", "applied", "duplicates", "dead_lettered")},
        by_reason={dict(k)["reason"]: v for k, v in prometheus.query(f"rewind_pipeline_dead_letters_total{{{where}}}").items()},
        checkpoints=_value(prometheus, f"rewind_pipeline_checkpoint_seconds_count{{{where}}}"),
        state_bytes=_value(prometheus, f"rewind_pipeline_state_bytes{{{where}}}"),
    )


def test_prometheus_scrapes_the_pipelines_and_the_relay(kafka_bootstrap: str, unique_name: str, tmp_path: Path,
                                                        prometheus_world: tuple[dict[str, int], int, LocalPrometheus]) -> None:
    """Scenario: the relay publishes 80 orders' outbox rows, a poison record joins them, a pipeline of each engine folds it all,
    each process serving --metrics-port to a real Prometheus. We expect the relay's published and lag series (all rows, then
    0 left), each pipeline's lag per partition (every partition) and dead letters by reason (its DLQ's header), and, once a
    pipeline has caught up and Prometheus's value stopped moving, its applied counter in Prometheus equal to what it prints
    at SIGTERM (and to the rows relayed)."""
    pipeline_ports, relay_port, prometheus = prometheus_world
    base = isolated_settings(kafka_bootstrap, unique_name, tmp_path, commit_interval_s=0.5, orders_partitions=PARTITIONS)
    topic = base.orders_topic
    database_url = f"sqlite:///{tmp_path / 'orders.sqlite'}"
    engine = open_database(database_url, pool_size=2)
    migrate(engine)
    rows = workload_rows(80)
    write_rows(engine, rows)
    ensure_topic(kafka_bootstrap, topic, partitions=PARTITIONS, config=ORDERS_TOPIC_CONFIG)  # so that every process starts at once
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, b"\xc3\x01garbage", POISON_KEY, partition=partition_for(POISON_KEY, PARTITIONS))
    assert producer.flush(30) == 0

    relay = RelayProcess.start(bootstrap=kafka_bootstrap, database_url=database_url, topic=topic, log_path=tmp_path / "relay.log",
                               args=("--metrics-port", str(relay_port)))
    settings = {name: for_engine(base, name) for name in ENGINES}
    pipelines = {
        name: PipelineProcess.start(settings[name], VIEW, group=f"{unique_name}-{name}", state_dir=tmp_path / f"state-{name}",
                                    log_dir=tmp_path, extra_args=("--metrics-port", str(pipeline_ports[name]), "--progress-interval-s", "1"))
        for name in ENGINES
    }
    stats: dict[str, dict[str, int]] = {}
    try:
        # The relay: every row published, none left, as Prometheus scraped it (the first scrapes take a few seconds).
        wait_until(lambda: _value(prometheus, "rewind_outbox_published_total") == len(rows), timeout_s=60,
                   what=f"Prometheus to see {len(rows)} rows published by the relay")
        wait_until(lambda: _value(prometheus, "rewind_outbox_unpublished_rows") == 0, timeout_s=30, what="the relay's lag 0 in Prometheus")
        assert outbox_lag(engine).rows == 0
        assert _value(prometheus, "rewind_outbox_database_up") == 1
        scraped = {name: _settled(prometheus, kafka_bootstrap=kafka_bootstrap, settings=settings[name], group=f"{unique_name}-{name}",
                                  instance=f"127.0.0.1:{pipeline_ports[name]}") for name in ENGINES}
        rules = prometheus.api("rules")["groups"]
    finally:
        try:
            for name, pipeline in pipelines.items():
                stats[name] = pipeline.terminate()
        finally:
            try:
                relay_stats = relay.terminate()
            finally:
                for pipeline in pipelines.values():
                    pipeline.stop()  # one that failed to terminate cleanly
                engine.dispose()

    for name in ENGINES:
        got, printed = scraped[name], stats[name]
        # The applied counter Prometheus holds is the one the pipeline printed at shutdown, and so are the others...
        assert got.settled_applied[-1][1] == printed["applied"] == got.events["applied"], name
        assert got.events == {k: printed[k] for k in got.events}, name
        # ...and they are right: every relayed row applied, the poison record the one dead letter.
        assert printed["applied"] == len(rows) and printed["dead_lettered"] == 1, (name, printed)
        assert printed["events_in"] == printed["applied"] + printed["duplicates"] + printed["dead_lettered"], (name, printed)
        letters = [headers_to_dict(m.headers()) for m in read_topic(kafka_bootstrap, settings[name].dlq_topic)]
        assert [h["rewind.reason.class"] for h in letters] == ["TruncatedEventError"], name
        assert got.by_reason == {"TruncatedEventError": 1.0}, name
        assert got.checkpoints is not None and got.checkpoints >= 1 and got.state_bytes is not None and got.state_bytes > 0, (name, got)
    assert relay_stats["published"] == len(rows)
    # The shipped rules load and evaluate against these series without error.
    evaluated = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert set(evaluated) == {"RewindPipelineLagGrowing", "RewindDeadLetters", "RewindReplicaBehind", "RewindOutboxBehind"}
    assert "err" not in evaluated.values(), rules
