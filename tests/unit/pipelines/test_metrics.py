"""pipelines.metrics without a broker: what a scrape of a pipeline or relay process shows, served over real HTTP."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.live.stats import PipelineStats
from pipelines.metrics import PipelineCollector, RelayCollector, dir_bytes, metrics_registry, serve_metrics
from pipelines.orders.relay import RelayStats
from schemas.errors import ConfigError


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus-client's own parser: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def _run(pipeline: str, *, events_in: int, applied: int, duplicates: int, dead: int) -> PipelineStats:
    stats = PipelineStats(pipeline)
    stats.events_in, stats.applied, stats.duplicates, stats.dead_lettered = events_in, applied, duplicates, dead
    return stats


def test_counters_add_up_across_runs_and_the_gauges_follow_the_current_run(tmp_path: Path) -> None:
    """Scenario: a pipeline process whose first run is replaced by a second (a broker outage), scraped over HTTP. We expect
    events totals of both runs (never back), dead letters by reason, the second run's lag per partition, the state dir's
    bytes, two runs, and the port free again once closed."""
    name = f"view-{uuid.uuid4().hex[:8]}"  # the counters are process-wide: a name of this test's own
    (tmp_path / "p0").mkdir()
    (tmp_path / "p0" / "000001.sst").write_bytes(b"x" * 1000)
    (tmp_path / "CURRENT").write_bytes(b"y" * 24)
    collector = PipelineCollector(name, topic="orders")
    port = _free_port()
    with serve_metrics(port, metrics_registry(collector)):
        before = _scrape(port)  # before the first run: no counts yet, and no run
        assert not [k for k in before if k[0] == "rewind_pipeline_events_total" and ("pipeline", name) in k[1]]
        assert before[("rewind_pipeline_runs_total", (("pipeline", name),))] == 0
        first = _run(name, events_in=10, applied=7, duplicates=2, dead=1)
        first.count_dead_letter("SequenceGap")
        collector.attach(first, lag=lambda: {0: 5, 1: 0}, state_dir=tmp_path)
        seen = _scrape(port)
        assert seen[("rewind_pipeline_events_total", (("outcome", "applied"), ("pipeline", name)))] == 7
        second = _run(name, events_in=4, applied=4, duplicates=0, dead=0)
        second.count_dead_letter("SequenceGap")
        second.count_dead_letter("TruncatedEventError")
        second.observe_checkpoint(0.03)
        collector.attach(second, lag=lambda: {2: 3}, state_dir=tmp_path)
        seen = _scrape(port)
    events = {dict(labels)["outcome"]: v for (sample, labels), v in seen.items()
              if sample == "rewind_pipeline_events_total" and ("pipeline", name) in labels}
    assert events == {"events_in": 14, "applied": 11, "duplicates": 2, "dead_lettered": 1, "rekey_duplicates": 0, "late": 0}
    reasons = {dict(labels)["reason"]: v for (sample, labels), v in seen.items()
               if sample == "rewind_pipeline_dead_letters_total" and ("pipeline", name) in labels}
    assert reasons == {"SequenceGap": 2, "TruncatedEventError": 1}
    lag = {dict(labels)["partition"]: v for (sample, labels), v in seen.items() if sample == "rewind_pipeline_consumer_lag"}
    assert lag == {"2": 3}
    assert seen[("rewind_pipeline_checkpoint_seconds_count", (("pipeline", name),))] == 1
    assert seen[("rewind_pipeline_state_bytes", (("pipeline", name),))] == 1024 == dir_bytes(tmp_path)
    assert seen[("rewind_pipeline_runs_total", (("pipeline", name),))] == 2
    assert any(sample.startswith("process_") for sample, _ in seen)
    with serve_metrics(port, metrics_registry(collector)):  # closed: the port can be had again
        pass


def test_a_taken_port_is_one_config_error_line() -> None:
    """Scenario: the metrics port is held by another socket. We expect a ConfigError naming the flag and the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            serve_metrics(port, metrics_registry(PipelineCollector("v", topic="orders")), flag="--metrics-port")
    assert str(refused.value) == f"--metrics-port {port}: 127.0.0.1:{port} is already in use by another process"


def test_the_relay_shows_its_lag_and_says_when_it_cannot_read_it() -> None:
    """Scenario: a relay scraped with its outbox readable, then with the database down. We expect published rows and the
    lag (rows, age in seconds), then database_up 0 and no lag series rather than a stale one."""
    collector = RelayCollector()
    stats = RelayStats("r1")
    stats.published, stats.batches = 120, 3
    answers: list[tuple[int, int | None] | Exception] = [(7, 2500), OSError("database down")]

    def lag() -> tuple[int, int | None]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    collector.attach(stats, lag=lag)
    port = _free_port()
    with serve_metrics(port, metrics_registry(collector)):
        up = _scrape(port)
        down = _scrape(port)
    assert up[("rewind_outbox_published_total", ())] == 120 and up[("rewind_outbox_batches_total", ())] == 3
    assert up[("rewind_outbox_unpublished_rows", ())] == 7 and up[("rewind_outbox_oldest_unpublished_age_seconds", ())] == 2.5
    assert up[("rewind_outbox_database_up", ())] == 1
    assert down[("rewind_outbox_database_up", ())] == 0
    assert ("rewind_outbox_unpublished_rows", ()) not in down and down[("rewind_outbox_published_total", ())] == 120
