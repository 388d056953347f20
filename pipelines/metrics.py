"""Prometheus metrics of the long-lived processes, served on a loopback port (README, "Metrics").

``rewind run NAME`` and ``rewind outbox relay`` take ``--metrics-port`` (``REWIND_METRICS_PORT``;
unset: no server) and serve ``http://127.0.0.1:PORT/metrics`` (:func:`serve_metrics`) from a
registry of their own: the process collectors of prometheus-client (CPU, memory, open files,
GC) and one collector of the process, which reads its live counters at scrape time.
``rewind serve`` has its own ``/metrics`` on its API port (:mod:`state.http_api`).

``rewind run NAME`` (:class:`PipelineCollector`), every series labelled ``pipeline=NAME``:

- ``rewind_pipeline_events_total{outcome}``: events_in, applied, duplicates, dead_lettered
  (events_in = applied + duplicates + dead_lettered), rekey_duplicates, late;
- ``rewind_pipeline_dead_letters_total{reason}``: records written to the DLQ by reason class;
- ``rewind_pipeline_events_per_second``: events in per second over the last ~30 s of scrapes;
- ``rewind_pipeline_consumer_lag{topic,partition}``: records of the orders topic not yet read;
- ``rewind_pipeline_checkpoint_seconds``: a histogram of checkpoint (transaction commit) times;
- ``rewind_pipeline_state_bytes``: bytes of the RocksDB state directory on disk;
- ``rewind_pipeline_runs_total``: runs started (more than one: the broker failed a run).

``rewind outbox relay`` (:class:`RelayCollector`): ``rewind_outbox_published_total`` (rows
acknowledged and marked), ``rewind_outbox_batches_total``, ``rewind_outbox_abandoned_total``,
``rewind_outbox_database_failures_total``, ``rewind_outbox_producer_restarts_total``,
``rewind_outbox_parked_orders_total``; its lag, read from the outbox at each scrape:
``rewind_outbox_unpublished_rows`` and ``rewind_outbox_oldest_unpublished_age_seconds`` (0 when
every row is published), with ``rewind_outbox_database_up`` 0 when that read failed (the two
lag series are then absent from the scrape rather than stale).

Counters are totals over the process's life: a run restarted after a broker outage adds to
them (:mod:`pipelines.live.stats`), so they never go back while the process lives.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipelines.live.stats import CHECKPOINT_SECONDS, DEAD_LETTERS, EVENTS, PipelineStats
from schemas.errors import ConfigError

__all__ = ["MetricsServer", "PipelineCollector", "RelayCollector", "metrics_registry", "serve_metrics", "dir_bytes"]

#: Loopback only: the metrics say how busy the system is and carry no authentication.
METRICS_HOST = "127.0.0.1"
#: How long a measured state size is reused: a walk of the state directory is cheap, but not per scrape of many scrapers.
_STATE_SIZE_TTL_S = 5.0
#: The window of ``rewind_pipeline_events_per_second``.
_RATE_WINDOW_S = 30.0


def metrics_registry(collector: Collector) -> CollectorRegistry:
    """A registry of the process's own ``collector`` and prometheus-client's process, platform and GC collectors."""
    registry = CollectorRegistry()
    for each in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, collector):
        registry.register(each)
    return registry


class MetricsServer:
    """A running metrics server (a daemon thread); :meth:`close` stops it and frees the port. A context manager."""

    def __init__(self, port: int, server: Any, thread: threading.Thread) -> None:
        self.port = port
        self._server = server
        self._thread = thread

    def close(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def serve_metrics(port: int, registry: CollectorRegistry, *, flag: str = "--metrics-port") -> MetricsServer:
    """Serve ``registry`` at ``http://127.0.0.1:PORT/metrics`` from a daemon thread.

    Call it before the process's first side effect: a port that cannot be had (in use, or
    refused) is one :class:`ConfigError` line naming ``flag``, not a traceback.
    """
    try:
        server, thread = start_http_server(port, addr=METRICS_HOST, registry=registry)
    except OSError as exc:
        why = "is already in use by another process" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror or exc})"
        raise ConfigError(f"{flag} {port}: {METRICS_HOST}:{port} {why}") from exc
    return MetricsServer(port, server, thread)


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist). Files removed during the walk
    (RocksDB compactions delete SSTs all the time) are skipped, not an error."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class _Rate:
    """Events per second over the last :data:`_RATE_WINDOW_S` of samples (one per scrape)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._value = 0.0

    def update(self, count: int, *, now: float) -> float:
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW_S:
            samples.popleft()
        then, count_then = samples[0]
        if now - then >= 0.5:  # two scrapes a moment apart say nothing; keep the last value
            self._value = max(0.0, (count - count_then) / (now - then))
        return self._value


class PipelineCollector(Collector):
    """The metrics of one ``rewind run`` process (module docstring), read at each scrape.

    :meth:`attach` each run as it starts: its counters, how to read its lag per partition (a
    callable that must not block: the batch engine's sampled lag, the Quix lag probe), and its
    state directory.
    """

    def __init__(self, pipeline: str, *, topic: str) -> None:
        self._pipeline = pipeline
        self._topic = topic
        self._lock = threading.Lock()
        self._stats: PipelineStats | None = None
        self._lag: Callable[[], Mapping[int, int]] = dict
        self._last_lag: Mapping[int, int] = {}
        self._state_dir: Path | None = None
        self._runs = 0
        self._events_in_before = 0  # events in of the runs before the current one
        self._rate = _Rate()
        self._state_size: tuple[float, int] | None = None  # (measured at, bytes)

    def attach(self, stats: PipelineStats, *, lag: Callable[[], Mapping[int, int]], state_dir: Path) -> None:
        """Follow a new run from now on (the previous run's last counts are pushed first)."""
        with self._lock:
            if self._stats is not None:
                self._stats.export()
                self._events_in_before += self._stats.events_in
            self._stats, self._lag, self._state_dir = stats, lag, state_dir
            self._runs += 1

    def describe(self) -> list[Metric]:
        """Nothing: the series depend on the runs, so the registry must not collect at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every series of the module docstring, as of now."""
        with self._lock:
            stats, lag_of, state_dir, runs = self._stats, self._lag, self._state_dir, self._runs
            now = time.monotonic()
            events_in = self._events_in_before + (stats.events_in if stats is not None else 0)
            rate = self._rate.update(events_in, now=now)
            if stats is not None:
                stats.export()
            try:
                self._last_lag = dict(lag_of())
            except RuntimeError:  # the loop changed the partitions while we read: the last lag stands
                pass
            lag = self._last_lag
            # Measured at most every _STATE_SIZE_TTL_S (a walk of the directory), except while it was empty: a store
            # that is just being created (the first scrape often comes before it) is looked at again on the next scrape.
            if state_dir is not None and (self._state_size is None or self._state_size[1] == 0
                                          or now - self._state_size[0] >= _STATE_SIZE_TTL_S):
                self._state_size = (now, dir_bytes(state_dir))
            state_bytes = self._state_size[1] if self._state_size is not None else 0
        yield from EVENTS.collect()
        yield from DEAD_LETTERS.collect()
        yield from CHECKPOINT_SECONDS.collect()
        yield _one(GaugeMetricFamily("rewind_pipeline_events_per_second", "Events in per second over the last 30 s",
                                     labels=["pipeline"]), self._pipeline, rate)
        per_partition = GaugeMetricFamily("rewind_pipeline_consumer_lag", "Records of the source topic not yet read, per partition",
                                          labels=["pipeline", "topic", "partition"])
        for partition, behind in sorted(lag.items()):
            per_partition.add_metric([self._pipeline, self._topic, str(partition)], behind)
        yield per_partition
        yield _one(GaugeMetricFamily("rewind_pipeline_state_bytes", "Bytes of the pipeline's RocksDB state directory on disk",
                                     labels=["pipeline"]), self._pipeline, state_bytes)
        yield _one(CounterMetricFamily("rewind_pipeline_runs", "Runs started by this process (a broker outage restarts the run)",
                                       labels=["pipeline"]), self._pipeline, runs)


def _one(family: GaugeMetricFamily | CounterMetricFamily, pipeline: str, value: float) -> Metric:
    """``family`` with its one sample, labelled ``pipeline``."""
    family.add_metric([pipeline], value)
    return family


class RelayCollector(Collector):
    """The metrics of one ``rewind outbox relay`` process (module docstring), read at each scrape.

    Nothing until :meth:`attach`: ``stats`` is the relay's counters
    (:class:`~pipelines.orders.relay.RelayStats`, read by attribute), ``lag`` reads the
    outbox (rows, age of the oldest in ms or None) and may raise when the database does not answer.
    """

    _COUNTERS = (
        ("published", "Outbox rows acknowledged by the broker and marked published"),
        ("batches", "Batches published"),
        ("abandoned", "Rows handed to the producer but not marked (published again later)"),
        ("database_failures", "Database calls that failed (retried)"),
        ("producer_restarts", "Producer restarts after a fatal producer error"),
        ("parked_orders", "Orders parked after the broker refused one of their rows for good"),
    )

    def __init__(self) -> None:
        self._stats: Any = None
        self._lag: Callable[[], tuple[int, int | None]] | None = None

    def attach(self, stats: Any, *, lag: Callable[[], tuple[int, int | None]]) -> None:
        """Serve ``stats`` and the outbox lag read by ``lag`` from now on."""
        self._stats, self._lag = stats, lag

    def describe(self) -> list[Metric]:
        """Nothing: collecting reads the database, which registration must not do."""
        return []

    def collect(self) -> Iterator[Metric]:
        stats, read_lag = self._stats, self._lag
        if stats is None or read_lag is None:
            return
        for name, text in self._COUNTERS:
            yield CounterMetricFamily(f"rewind_outbox_{name}", text, value=getattr(stats, name))
        up = "1 when the last read of the outbox lag succeeded"
        try:
            rows, oldest_age_ms = read_lag()
        except Exception:  # an outage (the relay reports and retries it itself): no lag rather than a stale one
            yield GaugeMetricFamily("rewind_outbox_database_up", up, value=0)
            return
        yield GaugeMetricFamily("rewind_outbox_database_up", up, value=1)
        yield GaugeMetricFamily("rewind_outbox_unpublished_rows", "Outbox rows not yet published (all shards)", value=rows)
        yield GaugeMetricFamily("rewind_outbox_oldest_unpublished_age_seconds",
                                "Age of the oldest unpublished outbox row (0: none)", value=(oldest_age_ms or 0) / 1000)
