"""The versioned read replica: consumes every ``view.<name>`` topic into a RocksDB store.

Protocol (one loop, one thread; the store is the only record of offsets):

1. Read the store's position ``{topic: {partition: next_offset}}``.
2. Assign every partition of every view topic explicitly, at its stored next_offset
   (the beginning when none is stored). No consumer group, no commits: a restart
   resumes exactly where the last applied batch ended.
3. Poll a batch and decode each record into a :class:`~state.contracts.ViewUpdate`
   (``record_position`` = the record's own topic/partition/offset). A malformed record
   is counted and logged; its offset still advances, since reading it again would not
   fix it (view topics are derived data: a replay rebuilds them).
4. ``store.apply(updates, position={topic: {partition: last offset + 1}})``: data and
   position in one WriteBatch. A record at or below the stored position is a counted
   no-op in the store, so even a redelivery is never applied twice.
5. Every ``metadata_refresh_s``, assign partitions of topics that appeared since (a view
   topic is created by its pipeline's first run) and refresh the lag per partition
   (:func:`partition_lag`: 0 once the replica read to the end, transaction markers included),
   from the watermarks of the consumer's own fetch responses (no request of its own).

Broker outages: the loop never exits for one. The metadata request of step 5 is the probe: while
it fails (or the client reports all brokers down) the broker counts as unreachable, the lag is
not refreshed (it would wait a second per partition), one WARNING line per ``outage_report_s``
says for how long (the client's own connection lines are dropped and counted), and
:meth:`Replica.status` carries ``broker_unreachable_s`` for /healthz. The client reconnects by
itself; once a metadata request is answered, one INFO line says so and fetching resumes from
the assigned positions. Nothing is lost or applied twice: the store's position is the record.

History: view topics are compacted. A replica that starts after compaction ran sees only
the retained records, so versions before the first retained one are unknown (as-of
reads there answer "no row"), and counter rows are aligned to the published row by a
correction change (:mod:`state.rocks_apply`). For full history from any point, rebuild
from the orders log with the replay engine into a fresh store.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipelines.client_logs import ClientNoiseFilter
from pipelines.projections import VIEW_NAMES
from pipelines.topics import view_topic
from state.contracts import SourcePosition, ViewUpdate, WritableProjectionStore
from state.view_records import MalformedRecord, decode_view_update

__all__ = ["ReplicaStatus", "Replica", "view_topics", "partition_lag"]

log = logging.getLogger(__name__)

#: Consume errors that only say the broker is out of reach: counted, reported once per interval.
_CONNECTION_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE})


def view_topics(*, prefix: str = "", views: tuple[str, ...] = VIEW_NAMES, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{topic: view}`` for the replica: ``prefix + view.<name>`` unless ``overrides`` names a topic for the view.

    The prefix exists so tests (and side-by-side deployments) can use unique topic names.
    """
    overrides = overrides or {}
    return {overrides.get(view, prefix + view_topic(view)): view for view in views}


def partition_lag(*, low: int, high: int, next_offset: int | None, end_seen: int | None) -> int:
    """Offsets of one partition the replica has still to read: 0 once it read to the end.

    ``high`` (the high watermark) counts transaction markers, which a read_committed consumer
    never returns: after a transaction whose last record is at offset N the marker takes
    N + 1, so the stored ``next_offset`` (N + 1) stays one below ``high`` for good.
    ``end_seen`` is where the consumer last reached the end of the partition (its
    end-of-partition event): every offset below it, markers included, has been read and
    applied. The lag counts from the larger of the two (and from ``low``, after retention
    deleted records); until caught up it may include up to one marker per transaction.
    """
    read_to = max(low, next_offset if next_offset is not None else low, end_seen if end_seen is not None else low)
    return max(0, high - read_to)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What /healthz and /metrics report about the consumer loop (``lag``: :func:`partition_lag` per partition)."""

    running: bool
    error: str | None
    records: int
    malformed: int
    last_malformed: str | None
    assigned: dict[str, list[int]]
    lag: dict[str, dict[int, int]] = field(default_factory=dict)
    #: The broker the replica reads from, and for how long it has not answered (None: it answers).
    bootstrap: str = ""
    broker_unreachable_s: float | None = None


class Replica:
    """Keeps a :class:`~state.contracts.WritableProjectionStore` up to date with the view topics."""

    def __init__(
        self,
        store: WritableProjectionStore,
        *,
        bootstrap: str,
        topics: Mapping[str, str],
        batch_size: int = 1000,
        poll_timeout_s: float = 0.1,
        metadata_refresh_s: float = 5.0,
        outage_report_s: float = 30.0,
    ) -> None:
        self._store = store
        self._bootstrap = bootstrap
        self._topics = dict(topics)
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._metadata_refresh_s = metadata_refresh_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._assigned: dict[str, set[int]] = {}
        self._lag: dict[str, dict[int, int]] = {}
        # Where each partition's end-of-partition event was last seen (see partition_lag).
        self._end_seen: dict[tuple[str, int], int] = {}
        self._records = 0
        self._malformed = 0
        self._last_malformed: str | None = None
        self._error: str | None = None
        self._running = False
        self._outage_report_s = outage_report_s
        self._down_since: float | None = None
        self._next_report = 0.0
        self._kafka_log = logging.getLogger(f"{__name__}.kafka")
        self._noise = ClientNoiseFilter(loggers=(self._kafka_log.name,))

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self._run_guarded, name="rewind-replica", daemon=True)
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Ask the loop to stop after its current batch and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def status(self) -> ReplicaStatus:
        """A snapshot of the loop's counters."""
        assigned = {t: sorted(p) for t, p in self._assigned.items()}
        lag = {t: dict(p) for t, p in self._lag.items()}
        down_since = self._down_since
        return ReplicaStatus(
            self._running, self._error, self._records, self._malformed, self._last_malformed, assigned, lag, bootstrap=self._bootstrap,
            broker_unreachable_s=None if down_since is None else time.monotonic() - down_since,
        )

    def _run_guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:  # reported on /healthz; the HTTP side keeps serving what it has
            self._error = f"{type(exc).__name__}: {exc}"
            log.exception("replica stopped")

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        """The consume/apply loop (see the module docstring); returns when :meth:`stop` is called."""
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                # Required by librdkafka, never used: partitions are assigned, offsets live in the store.
                "group.id": f"rewind-replica-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # The end-of-partition event says where the data ends, past any transaction marker (lag).
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "log_level": 3,
                # librdkafka's lines go through Python logging, where an outage's connection noise is dropped.
                "logger": self._kafka_log,
            }
        )
        self._running = True
        self._kafka_log.addFilter(self._noise)
        try:
            next_refresh = 0.0
            while not self._stop.is_set():
                if time.monotonic() >= next_refresh:
                    self._assign_new(consumer)  # Steps 1-2 and 5
                    next_refresh = time.monotonic() + self._metadata_refresh_s
                messages = consumer.consume(self._batch_size, self._poll_timeout_s) if self._assigned else []
                if not messages:
                    if not self._assigned:
                        self._stop.wait(self._poll_timeout_s)
                    continue
                self._apply(messages)  # Steps 3-4
        finally:
            self._running = False
            consumer.close()
            self._kafka_log.removeFilter(self._noise)

    def _assign_new(self, consumer: Consumer) -> None:
        position = self._store.position()
        asked = time.monotonic()
        try:
            metadata = consumer.list_topics(timeout=5.0)
        except KafkaException as exc:
            self._broker_unreachable(f"metadata request failed: {exc.args[0].str() if exc.args else exc}", since=asked)
            return
        self._broker_answers()
        new = []
        for topic in self._topics:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                continue
            have = self._assigned.setdefault(topic, set())
            for partition in sorted(found.partitions):
                if partition not in have:
                    next_offset = position.get(topic, {}).get(partition)
                    new.append(TopicPartition(topic, partition, OFFSET_BEGINNING if next_offset is None else next_offset))
                    have.add(partition)
        if new:
            consumer.incremental_assign(new)
            log.info("replica: assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in new))
        self._refresh_lag(consumer, position)

    def _refresh_lag(self, consumer: Consumer, position: dict[str, dict[int, int]]) -> None:
        # The watermarks the consumer's own fetch responses carry (cached=True): no request of its own. Asking the
        # broker (cached=False) took two round trips per partition on this thread, 60 of them for five views of 12
        # partitions, and stalled applying for seconds every refresh (command -> replica p99 of 4 s). A partition
        # not fetched yet has none (negative offsets): its lag stays as it was until its first fetch answers.
        lag: dict[str, dict[int, int]] = {}
        for topic, partitions in self._assigned.items():
            for partition in partitions:
                try:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
                except KafkaException:
                    low = high = -1
                if low < 0 or high < 0:
                    if partition in self._lag.get(topic, {}):
                        lag.setdefault(topic, {})[partition] = self._lag[topic][partition]
                    continue
                lag.setdefault(topic, {})[partition] = partition_lag(
                    low=low, high=high, next_offset=position.get(topic, {}).get(partition), end_seen=self._end_seen.get((topic, partition))
                )
        self._lag = lag

    def _apply(self, messages: list[Any]) -> None:
        updates: list[ViewUpdate] = []
        position: dict[str, dict[int, int]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    # Everything below this offset was read; the records among it are applied below,
                    # before the lag is next refreshed.
                    self._end_seen[(message.topic(), message.partition())] = message.offset()
                elif error.code() in _CONNECTION_ERRORS:
                    if error.code() == KafkaError._ALL_BROKERS_DOWN:
                        self._broker_unreachable(error.str())
                    else:
                        self._noise.dropped += 1
                else:
                    log.warning("replica: consume error: %s", error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            parts = position.setdefault(topic, {})
            parts[partition] = max(parts.get(partition, 0), offset + 1)
            self._records += 1
            try:
                updates.append(
                    decode_view_update(message.value(), view=self._topics[topic], record_position=SourcePosition(topic, partition, offset))
                )
            except MalformedRecord as exc:
                self._malformed += 1
                self._last_malformed = f"{topic}[{partition}]@{offset}: {exc}"
                log.warning("replica: skipped malformed record %s", self._last_malformed)
        if position:
            self._store.apply(updates, position=position)

    # -- broker outages ------------------------------------------------------------------

    def _broker_unreachable(self, reason: str, *, since: float | None = None) -> None:
        """Note that the broker did not answer (a request sent at ``since``); say so at once, then once per ``outage_report_s``."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now if since is None else since
            self._next_report = now
        if now >= self._next_report:
            log.warning(
                "replica: broker %s unreachable for %.0f s (%s); serving from the store, retrying (%d client log lines suppressed so far)",
                self._bootstrap, now - self._down_since, reason, self._noise.dropped,
            )
            self._next_report = now + self._outage_report_s

    def _broker_answers(self) -> None:
        if self._down_since is not None:
            log.info("replica: broker %s answers again after %.0f s unreachable; resuming", self._bootstrap, time.monotonic() - self._down_since)
            self._down_since = None
