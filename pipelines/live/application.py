"""Builds and runs one projection as a long-lived Quix Streams Application.

Shape: one stateful Quix step per stage, each producing its own outputs (order-status is
not re-keyed, so it has step 1 only)::

    orders ── step 1 (per orderId) ──┬─► orders.dlq  (dead letters, late window changes)
                                     ├─► view.order-status  (compacted)
                                     └── changes ─ group_by(key) ─ step 2 (per view key) ─► view.<name>  (compacted)

Step 1 is ``sdf.update`` for order-status and ``sdf.apply(expand=True)`` for a re-keyed
view, whose changes alone go on to Quix's repartition hop; step 2 is ``sdf.update``. The
steps produce through Quix's own producer (:mod:`pipelines.live.outputs`), so there is no
``to_topic``, no header step and no filter per event.

Exactly-once by default: outputs, changelogs and consumer offsets commit in one
Kafka transaction per checkpoint, so a crash replays the uncommitted tail and
nothing is counted twice. State is recovered from the changelog topics on start.

Restart in seconds: each instance has a stable identity (:func:`instance_identity`), used
twice, because a restart after kill -9 used to wait for two things (measured 47-66 s):

1. the group: a dead dynamic member keeps its partitions until ``session.timeout.ms``
   (45 s) runs out. The identity is the consumer's ``group.instance.id`` (static
   membership, KIP-345): the restarted instance replaces its predecessor at once and
   gets its partitions back without waiting for it to be declared dead;
2. the offsets: the dead process's transaction stays open with its offsets in it, and a
   consumer's committed-offset fetch is refused (UNSTABLE_OFFSET_COMMIT, KIP-447) until
   ``transaction.timeout.ms``. Quix's default ``transactional.id`` is a random uuid per
   process, which can never end that transaction; ours is ``<group>-<identity>``, and Quix
   runs ``init_transactions`` (creating its producer for the first checkpoint) right after
   subscribing and before the first poll, so the new producer aborts the old transaction
   before ``on_assign`` fetches the committed offsets.

Static members do not leave the group when they close, so a cleanly stopped instance
would hold its partitions for ``session.timeout.ms`` too (scale-down, or stopping one
instance for good). On a clean stop (SIGTERM, SIGINT, idle timeout) the application
therefore unsubscribes before it closes (:func:`leave_group`):
librdkafka then sends a LeaveGroup even for a static member (it skips it only on close),
and the other instances take the partitions over at once; a restart of the same instance
is then an ordinary join. A crash leaves no such chance: the partitions of a crashed
instance that is never restarted move after ``session.timeout.ms``, which is therefore
15 s (:data:`SESSION_TIMEOUT_MS`) instead of librdkafka's 45 s: heartbeats come from
librdkafka's own thread, so a busy or GC-paused Python loop does not miss them.

Not KIP-848 (``group.protocol=consumer``, which Kafka 4 and librdkafka 2.12 support): it
does not help here. A dead member's partitions are still held until the
broker-side session timeout (``group.consumer.session.timeout.ms``, 45 s); a static member
restarted while its predecessor is still registered is refused (UNRELEASED_INSTANCE_ID, a
fatal error) instead of replacing it; and it only allows incremental assignment, while
the pinned Quix calls ``assign()`` in its rebalance callback.
"""

from __future__ import annotations

import hashlib
import logging
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application
from quixstreams.internal_consumer import InternalConsumer
from quixstreams.models import TopicConfig
from quixstreams.state.rocksdb import RocksDBOptions

from pipelines.live.outputs import ProducingStep
from pipelines.live.quix_metrics import CountingOutputs, time_checkpoints
from pipelines.live.row_cache import RowCache
from pipelines.live.stats import PipelineStats
from pipelines.live.steps import OrderStep, RekeyedStep
from pipelines.projections import get_projection, view_spec
from pipelines.settings import RewindSettings
from pipelines.topics import DLQ_TOPIC_CONFIG, VIEW_TOPIC_CONFIG, check_reachable, orders_partition_count, view_topic
from schemas.fast_decode import event_decoder

__all__ = ["LivePipeline", "build_pipeline", "instance_identity", "leave_group", "run_pipeline"]

log = logging.getLogger("rewind.live")


#: Quix's defaults allow 3 x 64 MiB memtables per partition store plus a 1 GiB block cache:
#: ~3.3 GiB peak RSS at 12 partitions (measured at 1M events). Smaller memtables bound a
#: pipeline to about 12 x 2 x 16 MiB + 256 MiB, whatever the event count.
ROCKSDB_OPTIONS = RocksDBOptions(write_buffer_size=16 * 1024 * 1024, max_write_buffer_number=2, block_cache_size=256 * 1024 * 1024)


#: How long a clean stop waits for the LeaveGroup to go out (it is one request; the revoke
#: before it commits nothing, the last checkpoint having been committed already). Bounded
#: because a stop during a broker outage cannot leave: the member then expires after the
#: session timeout, as a crashed one does.
LEAVE_GROUP_TIMEOUT_S = 5.0


#: The consumer's prefetch, bounded. librdkafka appends the records of every assigned partition
#: to one queue that the application polls in order, and prefetches up to 64 MiB into it; a
#: re-keyed view's step 2 reads the repartition topic through the same queue, so its records,
#: readable only once step 1's transaction commits, waited behind the whole prefetched orders
#: backlog (measured: no step-2 record processed, hence no view record committed, until 91k
#: orders records were done). A 2 MiB queue plus one 2 MiB fetch keeps them seconds behind.
BOUNDED_FETCH_CONFIG = {"queued.max.messages.kbytes": 2048, "fetch.max.bytes": 2 * 1024 * 1024}

#: How long a crashed instance that is not restarted keeps its partitions (see the module docstring).
SESSION_TIMEOUT_MS = 15_000


def leave_group(consumer: Any, *, timeout_s: float = LEAVE_GROUP_TIMEOUT_S) -> bool:
    """Unsubscribe and serve the revoke until librdkafka has sent the LeaveGroup; False if it had not within ``timeout_s``.

    Both engines call it on a clean stop, before closing their consumer (Quix's or a plain
    confluent-kafka one). librdkafka sends the LeaveGroup once the revoke is done, and resets
    the member id as it does, so an empty member id is the sign; ``consumer.close()`` then
    waits for the answer. Were the consumer closed first, a static member would not send it
    at all. Records a poll returns meanwhile are not processed, nor committed.
    """
    consumer.unsubscribe()
    deadline = time.monotonic() + timeout_s
    while consumer.memberid() and time.monotonic() < deadline:
        consumer.poll(0.1)  # serves the revoke callback
    if consumer.memberid():
        log.warning("did not leave the consumer group within %.0fs; its partitions move after the session timeout", timeout_s)
        return False
    return True


def instance_identity(settings: RewindSettings, view: str, *, state_dir: Path) -> str:
    """This instance's identity: ``settings.instance_id``, or ``<view>-<host>-<hash of the absolute state dir>``.

    Stable across restarts of one instance (same host, same state directory) and distinct
    between instances that run at the same time: two instances on one machine need two state
    directories anyway (RocksDB locks them), and the host name keeps apart machines that
    use the same path (e.g. containers). Only ``[A-Za-z0-9._-]`` (Kafka's rule for ids).
    """
    if settings.instance_id:
        return settings.instance_id
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40] or "host"
    digest = hashlib.sha256(str(state_dir.expanduser().resolve()).encode()).hexdigest()[:12]
    return f"{view}-{host}-{digest}"


#: The longest a poll of the pipeline's consumer waits (see :class:`_ShortPollConsumer`).
MAX_POLL_S = 0.2


class _ShortPollConsumer(InternalConsumer):
    """Quix's consumer, whose polls wait at most MAX_POLL_S.

    Quix's recovery check ends at an empty ``poll(1)``: under exactly-once every restart runs
    it (a changelog ends with a commit marker, past the offset the store holds), so it cost a
    full second of each restart (measured 1.1-1.4 s). Waiting less only means polling again.
    """

    def poll(self, timeout: float | None = None) -> Any:
        return super().poll(MAX_POLL_S if timeout is None or timeout < 0 else min(timeout, MAX_POLL_S))


class _RewindApplication(Application):
    """Quix's Application, plus two hooks.

    - ``on_partitions_moved`` runs on every assign, revoke and loss. The steps keep rows
      they wrote in memory (see :class:`RowCache`); such a copy is only true while this
      process owns the partition, so it is dropped whenever ownership changes. Quix has no
      public rebalance callback, hence the override of its three handlers.
    - a clean stop leaves the consumer group (see the module docstring): :func:`leave_group`;
    - its consumer polls briefly (:class:`_ShortPollConsumer`), so a restart does not idle.

    All rely on private members of the pinned quixstreams version; the scale-out test
    covers a rebalance and a clean stop handing partitions over.
    """

    def __init__(self, *args: Any, on_partitions_moved: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_partitions_moved = on_partitions_moved

    def _get_internal_consumer(self, on_error: Any = None, extra_config_overrides: dict[str, Any] | None = None) -> InternalConsumer:
        # Quix's own construction (pinned version), with the short-poll class.
        config = self._config
        return _ShortPollConsumer(
            broker_address=config.broker_address, consumer_group=config.consumer_group, auto_offset_reset=config.auto_offset_reset,
            auto_commit_enable=False, max_partition_buffer_size=config.max_partition_buffer_size,
            extra_config={**config.consumer_extra_config, **(extra_config_overrides or {})}, on_error=on_error,
        )

    def _on_assign(self, consumer: Any, topic_partitions: list[TopicPartition]) -> None:
        self._on_partitions_moved()
        super()._on_assign(consumer, topic_partitions)

    def _on_revoke(self, consumer: Any, topic_partitions: list[TopicPartition]) -> None:
        try:
            super()._on_revoke(consumer, topic_partitions)
        finally:
            self._on_partitions_moved()

    def _on_lost(self, consumer: Any, topic_partitions: list[TopicPartition]) -> None:
        try:
            super()._on_lost(consumer, topic_partitions)
        finally:
            self._on_partitions_moved()

    def _run_dataframe(self, sink: Any = None) -> None:
        super()._run_dataframe(sink)
        # Returns (rather than raises) only on a clean stop, after the final checkpoint commit;
        # the consumer is still open (Quix closes it when run() unwinds).
        leave_group(self._consumer)


@dataclass
class LivePipeline:
    """A built application plus its counters."""

    app: Application
    stats: PipelineStats
    view: str
    lag_probe: _LagProbe


def build_pipeline(
    settings: RewindSettings,
    view: str,
    *,
    group_id: str | None = None,
    state_dir: Path | None = None,
    guarantee: Literal["exactly-once", "at-least-once"] | None = None,
    progress_interval_s: float = 10.0,
    grace_ms: int | None = None,
    commit_interval_s: float | None = None,
) -> LivePipeline:
    """Build (not run) the Quix application for ``view``; raises UnknownViewError / BrokerUnreachableError, and
    TopicError when the orders topic does not exist (Quix would create it, empty, with its own partition count)."""
    projection = get_projection(view, grace_ms=grace_ms)
    bootstrap = settings.bootstrap()
    check_reachable(bootstrap, timeout_s=settings.connect_timeout_s)
    orders_partition_count(bootstrap, settings.orders_topic, timeout_s=settings.connect_timeout_s)
    stats = PipelineStats(view)
    lag_probe = _LagProbe(bootstrap, settings.orders_topic, interval_s=progress_interval_s)

    orders_topic, positions = settings.orders_topic, lag_probe.positions  # runs per message: no attribute lookups

    def on_processed(topic: str, partition: int, offset: int) -> None:
        if topic == orders_topic:
            positions[partition] = offset + 1
        if stats.due(interval_s=progress_interval_s):
            stats.log_progress(lag=lag_probe.lag())

    rekeyed = view_spec(view).rekeyed
    group = group_id or f"rewind-{view}"
    state_path = state_dir or settings.state_dir / view
    # Static membership and a stable transactional id: a restart resumes in seconds (module docstring).
    identity = instance_identity(settings, view, state_dir=state_path)
    order_step: OrderStep  # built once the orders topic is declared (below); partitions only move once the app runs
    app = _RewindApplication(
        on_partitions_moved=lambda: order_step.partitions_moved(),
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee=guarantee or settings.guarantee,
        state_dir=str(state_path),
        rocksdb_options=ROCKSDB_OPTIONS,
        commit_interval=commit_interval_s or settings.commit_interval_s,
        on_message_processed=on_processed,
        loglevel="WARNING",
        # Quix's poll after the assign callback otherwise idles up to 1 s before the recovery check
        # starts (measured ~0.5 s of a ~6 s restart); an idle loop polling 5 times a second costs nothing.
        consumer_poll_timeout=MAX_POLL_S,
        consumer_extra_config={"group.instance.id": identity, "session.timeout.ms": SESSION_TIMEOUT_MS, **BOUNDED_FETCH_CONFIG},
        # No compression: on these 2 cores the CPU it costs is worth more than the bytes it saves (measured +10%).
        # The transactional id is unique per group and instance (Quix prefixes it only on Quix Cloud).
        producer_extra_config={"linger.ms": 20, "transactional.id": f"{group}-{identity}"},
        broker_availability_timeout=settings.connect_timeout_s * 4,
    )
    time_checkpoints(app._processing_context, stats)  # for the metrics
    orders = app.topic(settings.orders_topic, value_deserializer="bytes", key_deserializer="bytes")
    # Quix read the topic's metadata when declaring it: its partition count is the placement rule's
    # (pipelines.partitioning), read once here, never per event.
    order_step = OrderStep(projection, stats, rekeyed=rekeyed, rows=RowCache(max_rows=settings.live_row_cache_rows),
                           decode=event_decoder(settings.schema_registry_url), partition_count=orders.broker_config.num_partitions)
    # Declared so that the TopicManager creates them with our configs; the steps encode and
    # produce their records themselves (see pipelines.live.outputs), hence bytes serializers.
    dlq = app.topic(
        settings.dlq_topic,
        value_serializer="bytes",
        key_serializer="bytes",
        config=TopicConfig(num_partitions=settings.orders_partitions, replication_factor=1, extra_config=DLQ_TOPIC_CONFIG),
    )
    out = app.topic(
        view_topic(view, prefix=settings.view_topic_prefix),
        value_serializer="bytes",
        key_serializer="bytes",
        config=TopicConfig(num_partitions=settings.orders_partitions, replication_factor=1, extra_config=VIEW_TOPIC_CONFIG),
    )
    sdf = app.dataframe(orders)
    # Quix's own producer: transactional under exactly-once, so outputs commit with state and offsets.
    outputs = CountingOutputs(sdf.processing_context.producer, dlq_topic=dlq.name, view_topic=out.name, stats=stats)
    step_1 = ProducingStep(order_step, outputs)
    if not rekeyed:
        sdf.update(step_1, stateful=True, metadata=True)
    else:
        changes = sdf.apply(step_1.forwarding, stateful=True, expand=True, metadata=True)  # RekeyedChange.to_json() dicts
        changes = changes.group_by(lambda value: value["pk"], name=f"{view}-by-key")
        changes.update(ProducingStep(RekeyedStep(projection, stats), outputs), stateful=True, metadata=True)
    return LivePipeline(app=app, stats=stats, view=view, lag_probe=lag_probe)


class _LagProbe:
    """Per-partition lag of the orders topic.

    High watermarks are fetched by a daemon thread with its own client, because a
    watermark request is a broker round trip per partition and must never stall the
    processing loop; the loop only records positions and reads the last answer.
    """

    def __init__(self, bootstrap: str, topic: str, *, interval_s: float) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._interval_s = interval_s
        self.positions: dict[int, int] = {}
        self._high: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh_loop, name="rewind-lag-probe", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        consumer = Consumer({"bootstrap.servers": self._bootstrap, "group.id": "rewind-lag-probe", "enable.auto.commit": False, "log_level": 0})
        try:
            while not self._stop.wait(self._interval_s / 2):
                for partition in list(self.positions):
                    try:
                        _, high = consumer.get_watermark_offsets(TopicPartition(self._topic, partition), timeout=2.0)
                    except Exception:  # lag is best-effort telemetry, never a reason to stop
                        continue
                    self._high[partition] = high
        finally:
            consumer.close()

    def lag(self) -> dict[int, int]:
        """Last known lag per partition (records between our position and the high watermark)."""
        return {p: max(0, self._high[p] - pos) for p, pos in self.positions.items() if p in self._high}

    def stop(self) -> None:
        """Stop the refresh thread; it closes its consumer on the way out."""
        self._stop.set()


def run_pipeline(pipeline: LivePipeline, *, idle_timeout_s: float = 0.0) -> PipelineStats:
    """Run until SIGTERM/SIGINT (Quix stops cleanly and commits), or until idle for ``idle_timeout_s`` if > 0."""
    log.info("starting pipeline %s", pipeline.view)
    try:
        # collect=False: with a timeout, Quix would otherwise keep every output in memory (meant for tests).
        pipeline.app.run(timeout=idle_timeout_s, collect=False)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        pipeline.lag_probe.stop()
        pipeline.stats.export()
    return pipeline.stats
