"""The batch live engine: the kernel over batches of records, exactly-once, with no per-message framework loop.

One process consumes the orders topic in a consumer group (cooperative rebalancing),
folds each record through :func:`pipelines.kernel.process_record` (the same kernel the
Quix adapter and replay run), and keeps each partition's order rows in a RocksDB of its
own (:class:`~pipelines.batch.partition_store.PartitionStore`). A re-keyed view (counters
by customer, sku, currency...) adds a second stage in the same process and transaction:
stage 1 sends each change to the repartition topic ``<group>--<orders topic>.repartition``, keyed and
partitioned (murmur2) by the view's partition key; stage 2 consumes it and folds the
changes per view key (:mod:`pipelines.batch.stages`). Every partition of either topic has
its store, and the protocol below holds for each of them alike. The repartition topic
keeps its records (retention.ms=-1): it is stage 2's changelog, so a lost state
directory is rebuilt from it.

Exactly-once protocol, per checkpoint (every ``commit_interval_s``):

1. **Assign.** For each partition the group assigns: open its store, read ``applied``
   (the store's next offset) and ``c`` (the group's committed offset; the log start when
   none). The producer ran ``init_transactions`` before the consumer joined, so a previous
   incarnation's open transaction (same transactional id) is aborted and its pending
   offset commit no longer blocks ``c``. A store whose directory is missing (a lost disk,
   or a partition new to this instance) is first restored from the newest snapshot whose
   ``applied`` is at most ``c`` (:mod:`pipelines.batch.snapshots`), when there is one.

   - ``applied == c``: nothing to do.
   - ``applied < c``: a crash fell between steps 5 and 6 of an earlier checkpoint (or the
     store is new): refold ``[applied, c)`` with outputs muted (they are already
     published and committed) and write the rows with ``applied = c``.
   - ``applied > c``: the store holds work the group never committed (offsets reset or
     deleted, or a store from elsewhere); it is deleted and rebuilt muted from the log start.

   Then the consumer starts the partition at ``c``.
2. **Consume** up to ``batch_size`` records.
3. **Fold** each in a Kafka transaction (begun at the first record after a checkpoint):
   the kernel's verdict, its view records and dead letters produced in the transaction,
   the new order rows *staged in memory*, not written to the store.
4. **Commit the transaction:** ``send_offsets_to_transaction`` with each partition's next
   offset, then ``commit_transaction``. Outputs and consumer offsets are now one atomic fact.
5. (the point a crash can fall between)
6. **Write the stores:** per partition, the staged rows and ``applied = next offset`` in
   one RocksDB WriteBatch (WAL on).
7. Every ``snapshot_interval_s``, snapshot each store that moved (a RocksDB checkpoint,
   outside the state directory). A snapshot is only ever a store as step 6 left it, so
   restoring one in step 1 is the same as a store that crashed between 4 and 6.

A crash before step 4 completes aborts the transaction (the broker's timeout, or step 1's
``init_transactions``): the stores were not written, the group's offsets did not move,
and the work is redone. A crash between 4 and 6 leaves ``applied < c``, which step 1
refolds without publishing again. A transaction that fails in step 4 with an abortable
error is aborted: staged rows are dropped and every partition seeks back to ``applied``.

A cooperative revoke commits the open transaction (steps 4-6) before its partitions go; a
lost partition (the group moved on without us) aborts it instead, since our offsets
would be refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from pipelines.batch.partition_store import PartitionStore
from pipelines.batch.snapshots import PartitionSnapshots
from pipelines.batch.stages import OrderStage, RekeyStage, Stage
from pipelines.errors import InstanceFencedError
from pipelines.gc_pause import gc_young_generation_of
from pipelines.live.application import SESSION_TIMEOUT_MS, leave_group
from pipelines.live.stats import PendingCounts, PipelineStats
from pipelines.projections import get_projection, view_spec
from pipelines.settings import RewindSettings
from pipelines.topics import DLQ_TOPIC_CONFIG, VIEW_TOPIC_CONFIG, check_reachable, ensure_topic, orders_partition_count, view_topic
from schemas.codec import Event
from schemas.fast_decode import event_decoder

__all__ = ["BatchEngine", "BatchRun", "default_batch_group", "repartition_topic"]

log = logging.getLogger("rewind.batch")
#: The Kafka clients' own lines (librdkafka), through Python logging: run_resilient's noise filter
#: counts connection failures there during an outage instead of letting them flood stderr.
client_log = logging.getLogger("rewind.kafka.batch")

_TXN_TIMEOUT_S = 30.0
#: Rows staged in memory (all partitions) that make a checkpoint come early, and a refold write its
#: stores: with the stores' shared block cache and memtables (:mod:`pipelines.batch.partition_store`)
#: this bounds the engine's memory whatever the backlog. A staged order row is a Python dict of about
#: 4 kB (measured: a 2M-event refold that staged every row to the end grew to 970 MB).
MAX_STAGED_ROWS = 20_000
#: Net allocations between two collections of Python's youngest GC generation while the engine
#: runs (:func:`pipelines.gc_pause.gc_young_generation_of`; CPython's default 700 cost about a fifth
#: of the engine's time on order-status).
GC_YOUNG_GENERATION = 50_000
#: Client errors that mean the brokers (the group coordinator among them) are unreachable: every one of them.
_BROKER_TROUBLE = frozenset({KafkaError._ALL_BROKERS_DOWN})
#: A static member fenced within this long of broker trouble is taken for a rejoin after the coordinator came
#: back (restart the run), not for a second process with our identity (stop): see BatchEngine._failure.
_REJOIN_FENCING_WINDOW_S = 300.0


class _BrokerTrouble:
    """When a client of this process last reported the brokers unreachable (monotonic s; -inf: never).
    Per process, not per engine: the run that follows an outage is a new engine that never saw it."""

    at = float("-inf")


_broker_trouble = _BrokerTrouble()
#: A per-order view's prefetch (see the consumer's configuration).
_DEEP_FETCH_CONFIG = {"fetch.max.bytes": 8 * 1024 * 1024, "queued.max.messages.kbytes": 16 * 1024}
#: A re-keyed view's fetch responses at most (bytes): as deep as a per-order view's.
_REKEYED_FETCH_MAX_BYTES = 8 * 1024 * 1024


def rekeyed_fetch_config(partitions: int) -> dict[str, int]:
    """A re-keyed view's prefetch when its consumer may be assigned ``partitions`` (>= 1) partitions of
    the orders and the repartition topic together: deep, and fair between partitions.

    A fetch response fills its bytes partition by partition in the order of the request, so with
    1 MiB per partition (the default) two orders partitions filled every 2 MiB response and the
    repartition partitions, last in the list, got nothing until the orders backlog ahead of them
    was drained (measured: 86k orders records committed in a run, not one view record). A share of
    the response per partition, between 64 KiB and 1 MiB, puts every assigned partition in each
    response. The share is not smaller than it must be: 64 KiB per partition in a 2 MiB response
    kept stage 2 waiting on fetches for three quarters of a run (bench_live --view
    customer-summary: 9k events/s; 42k with this).
    """
    share = _REKEYED_FETCH_MAX_BYTES // max(1, partitions)
    return {**_DEEP_FETCH_CONFIG, "fetch.max.bytes": _REKEYED_FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": max(64 * 1024, min(1024 * 1024, share)),
            # librdkafka stops fetching a partition for this long when the queue is full (default 1 s):
            # stage 2's partitions too, so it sat idle for seconds in one run of seven.
            "fetch.queue.backoff.ms": 50}


def default_batch_group(view: str) -> str:
    """The consumer group of ``rewind run VIEW --engine batch`` unless told otherwise."""
    return f"rewind-batch-{view}"


class BatchEngine:
    """One batch-engine process for ``view`` (see the module docstring for the protocol).

    ``instance_id`` names this instance within the group: it is the producer's
    transactional id (with the group) and the consumer's static member id, so a restart of
    the same instance fences its predecessor and takes its partitions back at once. Two
    live processes must never share one.
    """

    def __init__(
        self,
        settings: RewindSettings,
        view: str,
        *,
        state_dir: Path,
        instance_id: str,
        group_id: str | None = None,
        commit_interval_s: float | None = None,
        batch_size: int = 2000,
        progress_interval_s: float = 10.0,
        grace_ms: int | None = None,
        snapshots: PartitionSnapshots | None = None,
        snapshot_interval_s: float = 60.0,
        decode: Callable[[bytes], Event] | None = None,
    ) -> None:
        """``decode``: how orders values are read (None: this build's schemas, and the settings' registry for
        Confluent framing); a test passes another build's, to deploy a fix in-process."""
        self.view = view
        self._snapshots = snapshots
        self._snapshot_interval_s = snapshot_interval_s
        self._last_snapshot = time.monotonic()
        projection = get_projection(view, grace_ms=grace_ms)
        self._topic = settings.orders_topic
        self._state_dir = state_dir
        self._batch_size = batch_size
        self._commit_interval_s = commit_interval_s or settings.commit_interval_s
        self._progress_interval_s = progress_interval_s
        self.stats = PipelineStats(view)
        #: The stages count into this; a commit adds it to ``stats``, an abort drops it (records are redone).
        self._pending = PendingCounts(view)
        bootstrap = self._bootstrap = settings.bootstrap()
        check_reachable(bootstrap, timeout_s=settings.connect_timeout_s)
        out_topic = view_topic(view, prefix=settings.view_topic_prefix)
        ensure_topic(bootstrap, out_topic, partitions=settings.orders_partitions, config=VIEW_TOPIC_CONFIG)
        ensure_topic(bootstrap, settings.dlq_topic, partitions=settings.orders_partitions, config=DLQ_TOPIC_CONFIG)
        partition_count = orders_partition_count(bootstrap, self._topic, timeout_s=settings.connect_timeout_s)
        # Not Quix's default group (rewind-<view>): its offsets belong to state kept in Quix's changelogs,
        # which this engine neither reads nor writes, so sharing a group would fold on the wrong state.
        group = group_id or default_batch_group(view)
        self._identity = f"{group}-{instance_id}"
        repartition: str | None = None
        if view_spec(view).rekeyed:
            # Named by group and source, as Quix names its own: two deployments never share one.
            repartition = repartition_topic(group, self._topic)
            ensure_topic(bootstrap, repartition, partitions=settings.orders_partitions, config={"retention.ms": "-1"})
        self._stages: dict[str, Stage] = {
            self._topic: OrderStage(projection, self._pending, orders_topic=self._topic, view_topic=out_topic, dlq_topic=settings.dlq_topic,
                                    partition_count=partition_count, decode=decode or event_decoder(settings.schema_registry_url),
                                    repartition_topic=repartition, repartition_partitions=settings.orders_partitions),
        }
        if repartition is not None:
            self._stages[repartition] = RekeyStage(projection, self._pending, view_topic=out_topic)
        #: The reason of the last fatal error a client reported (librdkafka then fails every call with a bare
        #: _FATAL, "Local: Fatal error"; the reason, e.g. "Producer fenced by newer instance", comes only here).
        self._fatal_reason: str | None = None
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "transactional.id": self._identity,
            "error_cb": self._on_client_error,
            "transaction.timeout.ms": int(_TXN_TIMEOUT_S * 2000),
            "linger.ms": 20,
            # Bounded: librdkafka queues up to 1 GiB of unsent records by default, and a fold that outruns
            # the broker would fill it. Past the bound, produce() raises BufferError and _send waits.
            "queue.buffering.max.kbytes": 32 * 1024,
            "log_level": 3,
            "logger": client_log,
        })
        # Step 1's precondition: fence and abort a previous incarnation before the consumer fetches offsets.
        self._producer.init_transactions(_TXN_TIMEOUT_S)
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": self._identity,
            "error_cb": self._on_client_error,
            "session.timeout.ms": SESSION_TIMEOUT_MS,  # the Quix engine's, for the same reason
            "partition.assignment.strategy": "cooperative-sticky",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # The prefetch (librdkafka's default queue is 64 MiB): 8 MiB fetches and a 16 MiB queue double
            # a per-order view's rate (bench_live: 17k -> 35k events/s). A re-keyed view's repartition
            # records go through the same queue and must not wait behind a whole orders backlog, so its
            # fetches give each partition a share (rekeyed_fetch_config).
            **(rekeyed_fetch_config(partition_count + settings.orders_partitions) if repartition else _DEEP_FETCH_CONFIG),
            "log_level": 3,
            "logger": client_log,
        })
        self._stores: dict[tuple[str, int], PartitionStore] = {}
        #: Next offset per (topic, partition) folded in the open transaction.
        self._positions: dict[tuple[str, int], int] = {}
        self._in_transaction = False
        self._last_commit = time.monotonic()
        self._fenced = False  # another process took our identity: nothing of ours may talk to the group any more
        #: Records refolded with outputs muted (step 1) since start, per topic.
        self.refolded: dict[str, int] = {}
        #: Partition stores restored from a snapshot (step 1) since start, per topic.
        self.restored: dict[str, int] = {}

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, idle_timeout_s: float = 0.0) -> PipelineStats:
        """Run until ``stop`` is set (or no record came for ``idle_timeout_s`` > 0); commit and close on the way out."""
        with gc_young_generation_of(GC_YOUNG_GENERATION):  # a fold allocates several short-lived objects per record
            return self._run(stop, idle_timeout_s=idle_timeout_s)

    def _run(self, stop: threading.Event, *, idle_timeout_s: float) -> PipelineStats:
        self._consumer.subscribe(list(self._stages), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        last_record = time.monotonic()
        try:
            while not stop.is_set():
                messages = self._consumer.consume(self._batch_size, timeout=0.2)
                if messages:
                    self._fold_batch(messages)
                    last_record = time.monotonic()
                elif idle_timeout_s > 0 and time.monotonic() - last_record > idle_timeout_s:
                    break
                if self._in_transaction and (time.monotonic() - self._last_commit >= self._commit_interval_s
                                             or sum(store.staged_count for store in self._stores.values()) >= MAX_STAGED_ROWS):
                    self._checkpoint()
                self.stats.sample_lag(self._lag)  # for the metrics: a cheap read, at most once a second
                if self.stats.due(interval_s=self._progress_interval_s):
                    self.stats.log_progress(lag=self._lag())
            if self._in_transaction:
                self._checkpoint()
        except KafkaException as exc:  # a client call that failed outright (produce, begin_transaction, consume)
            raise self._failure(exc.args[0]) from exc
        finally:
            self.close()
        return self.stats

    def _fold_batch(self, messages: list[Message]) -> None:
        """Step 3 for one consumed batch."""
        if not self._in_transaction:
            self._producer.begin_transaction()
            self._in_transaction = True
        stats = self.stats
        now = time.monotonic()
        stats.last_event_at = now
        if stats.first_event_at is None:
            stats.first_event_at = now
        stages, stores, positions, send = self._stages, self._stores, self._positions, self._send
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise self._failure(error)
            where = (message.topic(), message.partition())
            store = stores.get(where)
            if store is None:  # revoked between fetch and now: the new owner folds it
                continue
            stages[where[0]].fold(message, store, send)
            positions[where] = message.offset() + 1
        self._producer.poll(0)

    def _send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None,
              timestamp_ms: int, partition: int | None) -> None:
        """Produce in the open transaction (:class:`~pipelines.batch.stages.Outputs`)."""
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key, headers=headers, timestamp=timestamp_ms)
                else:
                    self._producer.produce(topic, value, key, partition=partition, headers=headers, timestamp=timestamp_ms)
                return
            except BufferError:  # the local queue is full: serve deliveries, then retry
                self._producer.poll(0.1)

    # -- checkpoints ----------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """Steps 4-6; an abortable failure aborts and rewinds instead (module docstring)."""
        started = time.monotonic()
        offsets = [TopicPartition(topic, p, offset) for (topic, p), offset in self._positions.items()]
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(offsets, self._consumer.consumer_group_metadata(), _TXN_TIMEOUT_S)
            self._producer.commit_transaction(_TXN_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise self._failure(error) from exc
            log.warning("%s: transaction aborted (%s); redoing its records from the last checkpoint", self.view, error.str())
            self._abort()
            return
        self._in_transaction = False
        self._last_commit = time.monotonic()
        self.stats.add(self._pending)
        self._pending.reset()
        for where, offset in self._positions.items():  # step 6
            store = self._stores.get(where)
            if store is not None:
                store.commit(offset)
        self._positions.clear()
        self.stats.observe_checkpoint(time.monotonic() - started)
        if self._snapshots is not None and self._last_commit - self._last_snapshot >= self._snapshot_interval_s:
            self._snapshot()

    def _snapshot(self) -> None:
        """Snapshot every store that moved since its last snapshot (right after step 6: nothing is staged)."""
        assert self._snapshots is not None
        started = self._last_snapshot = time.monotonic()
        taken = sum(self._snapshots.take(store.path.name, store) for store in self._stores.values())
        if taken:
            log.info("%s: snapshot of %d partition stores in %.2fs", self.view, taken, time.monotonic() - started)

    def _on_client_error(self, error: KafkaError) -> None:
        """The clients' error callback: keeps the reason of a fatal error, and when the brokers were last
        unreachable, for :meth:`_failure`; the clients retry the rest on their own."""
        if error.fatal() or error.code() == KafkaError._FATAL:
            self._fatal_reason = error.str()
        elif error.code() in _BROKER_TROUBLE:
            _broker_trouble.at = time.monotonic()

    def _failure(self, error: KafkaError) -> Exception:
        """The exception to stop with for ``error``: fencing is a one-line :class:`InstanceFencedError`."""
        fenced_codes = (KafkaError._FENCED, KafkaError.FENCED_INSTANCE_ID, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
        reason = error.str()
        if error.code() == KafkaError._FATAL:  # a bare "Fatal error": the error callback knows why
            if self._fatal_reason is None:
                self._producer.poll(0)  # serve the callback of the fatal error if it is still queued
            reason = self._fatal_reason or reason
        static_member_fenced = error.code() == KafkaError.FENCED_INSTANCE_ID or "static consumer fenced" in reason.lower()
        if static_member_fenced and time.monotonic() - _broker_trouble.at < _REJOIN_FENCING_WINDOW_S:
            # Seen in the chaos soak, never with a second process: right after the broker (the group
            # coordinator) comes back, librdkafka's rejoin gets its own static member fenced. A restarted
            # run joins afresh. A real second instance also fences our transactional producer (its
            # init_transactions), which stops this process whatever the consumer says.
            log.warning("%s: the group fenced this member just after the broker came back (%s): restarting the run", self.view, reason)
            restart: Exception = KafkaException(error)
            return restart
        if error.code() in fenced_codes or "fenced" in reason.lower():
            self._fenced = True
            return InstanceFencedError(
                f"{self.view}: another process runs as this instance ({self._identity}) and fenced this one ({reason}); "
                "stopping without committing (give each instance its own state dir or REWIND_INSTANCE_ID)"
            )
        failure: Exception = KafkaException(error)
        return failure

    def _abort(self) -> None:
        """Abort the open transaction, drop staged rows, and seek every partition back to its store's offset.

        Raises what :meth:`_failure` makes of a refused abort (a fenced producer refuses it: InstanceFencedError)."""
        if self._in_transaction:
            try:
                self._producer.abort_transaction(_TXN_TIMEOUT_S)
            except KafkaException as exc:
                raise self._failure(exc.args[0]) from exc
            self._in_transaction = False
        self._positions.clear()
        self._pending.reset()
        for (topic, partition), store in self._stores.items():
            store.discard()
            self._consumer.seek(TopicPartition(topic, partition, store.applied))

    # -- rebalances -----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Step 1 for newly assigned ``partitions``."""
        if not partitions:
            return
        committed = consumer.committed(partitions, timeout=_TXN_TIMEOUT_S)
        start: list[TopicPartition] = []
        behind: list[tuple[PartitionStore, str, int, int, int]] = []
        for tp in committed:
            topic, partition = tp.topic, tp.partition
            low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=_TXN_TIMEOUT_S)
            target = tp.offset if tp.offset >= 0 else low
            path = self._store_path(topic, partition)
            if self._snapshots is not None and not path.exists():
                restored = self._snapshots.restore(path.name, path, at_most=target)
                if restored is not None:
                    self.restored[topic] = self.restored.get(topic, 0) + 1
                    log.info("%s: %s[%d] starts from its snapshot at offset %d (the group committed %d)",
                             self.view, topic, partition, restored, target)
            store = PartitionStore(path)
            if store.applied > target:
                log.warning("%s: the store of %s[%d] is at offset %d, past the group's committed %d: rebuilding it",
                            self.view, topic, partition, store.applied, target)
                store.destroy()
                store = PartitionStore(path)
            if store.applied < target:
                behind.append((store, topic, partition, max(store.applied, low), target))
            self._stores[(topic, partition)] = store
            start.append(TopicPartition(topic, partition, target))
        self._refold(behind)
        consumer.incremental_assign(start)
        by_topic: dict[str, list[int]] = {}
        for tp in start:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        log.info("%s: assigned %s", self.view, "; ".join(f"{t} {sorted(ps)}" for t, ps in sorted(by_topic.items())))

    def _store_path(self, topic: str, partition: int) -> Path:
        """``p<N>`` for an orders partition, ``r<N>`` for a repartition partition."""
        return self._state_dir / f"{'p' if topic == self._topic else 'r'}{partition}"

    def _refold(self, behind: list[tuple[PartitionStore, str, int, int, int]]) -> None:
        """For each (store, topic, partition, begin, end): fold records ``[begin, end)`` into the store with outputs
        muted, then commit it at ``end``. One reader for them all, so partitions refold side by side."""
        if not behind:
            return
        started = time.monotonic()
        pending = {(topic, partition): (store, end) for store, topic, partition, begin, end in behind if begin < end}
        for store, _, _, begin, end in behind:
            if begin >= end:
                store.commit(end)
        reader = Consumer({
            "bootstrap.servers": self._bootstrap, "group.id": f"rewind-refold-{self.view}", "isolation.level": "read_committed",
            "enable.auto.commit": False, "log_level": 3, "logger": client_log,
        })
        folded = 0
        staged = 0
        folded_to: dict[tuple[str, int], int] = {}  # next offset after the last record folded, per partition
        try:
            reader.assign([TopicPartition(topic, partition, begin) for _, topic, partition, begin, end in behind if begin < end])
            deadline = time.monotonic() + 600
            while pending:
                for message in reader.consume(5000, timeout=0.2):
                    where = (message.topic(), message.partition())
                    item = pending.get(where)
                    if item is None or message.error() is not None or message.offset() >= item[1]:
                        continue
                    self._stages[where[0]].fold(message, item[0], None)
                    folded_to[where] = message.offset() + 1
                    self.refolded[where[0]] = self.refolded.get(where[0], 0) + 1
                    folded += 1
                    staged += 1
                if staged >= MAX_STAGED_ROWS:  # write what is folded so far: memory stays bounded however long the refold
                    for where, offset in folded_to.items():
                        if where in pending:
                            pending[where][0].commit(offset)
                    staged = 0
                # Done by position, not by the last record: aborted records and commit markers are never delivered.
                for tp in reader.position([TopicPartition(t, p) for t, p in pending]):
                    store, end = pending[(tp.topic, tp.partition)]
                    if tp.offset >= end:
                        store.commit(end)
                        del pending[(tp.topic, tp.partition)]
                if pending and time.monotonic() > deadline:
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"refold stuck on {sorted(pending)}"))
        finally:
            reader.close()
        log.info("%s: refolded %d records of %d partitions without publishing, in %.1fs",
                 self.view, folded, len(behind), time.monotonic() - started)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A cooperative revoke: commit what we did (steps 4-6), then let the partitions go.
        Once fenced (the consumer's close revokes too) there is nothing we may commit: drop only."""
        if self._in_transaction and not self._fenced:
            self._checkpoint()
        self._drop(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions lost without a revoke: our offsets would be refused, so abort and redo."""
        if not self._fenced:
            self._abort()
        self._drop(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = self._stores.pop((tp.topic, tp.partition), None)
            self._positions.pop((tp.topic, tp.partition), None)
            if store is not None:
                store.close()

    # -- telemetry and shutdown -----------------------------------------------------------

    def _lag(self) -> dict[int, int]:
        """Per-partition lag of the orders topic from the last fetch's high watermarks (no broker round trip)."""
        lag: dict[int, int] = {}
        for tp in self._consumer.position([TopicPartition(t, p) for t, p in self._stores if t == self._topic]):
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0 and tp.offset >= 0:
                lag[tp.partition] = max(0, high - tp.offset)
        return lag

    def _leave_group(self) -> None:
        """Leave the group on a clean stop, so the other instances take the partitions at once
        (a static member sends no LeaveGroup on close: :func:`pipelines.live.application.leave_group`)."""
        try:
            leave_group(self._consumer, timeout_s=10.0)
        except (KafkaException, RuntimeError) as exc:  # fenced or closed: nothing to leave
            log.info("%s: did not leave the group cleanly (%s)", self.view, exc)

    def close(self) -> None:
        """Abort any open transaction, leave the group, close clients and stores (``run`` does it on its way out)."""
        try:
            if self._in_transaction and not self._fenced:
                try:
                    self._abort()
                except KafkaException as exc:  # fenced or broker gone: the broker aborts it on its own timeout
                    log.warning("%s: could not abort the open transaction (%s)", self.view, exc.args[0].str())
                    self._in_transaction = False
            if not self._fenced:  # the group belongs to the new instance now; a fenced member cannot leave it
                self._leave_group()
            try:
                self._consumer.close()
            except (KafkaException, InstanceFencedError) as exc:
                # Its revoke callback found us fenced. Raised from here it would replace the exception the
                # run is stopping with (the cause a caller must see), so it is only logged.
                log.info("%s: consumer close: %s", self.view, exc)
        finally:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
            try:
                self._producer.flush(10)  # nothing is pending outside a transaction; serves the last callbacks
            except KafkaException as exc:  # a fenced producer refuses even this
                log.info("%s: producer flush on close: %s", self.view, exc.args[0].str())
            self.stats.export()


def repartition_topic(group: str, orders_topic: str) -> str:
    """The repartition topic of a re-keyed view's batch pipeline in consumer group ``group`` (stage 1 writes it, stage 2 reads it)."""
    return f"{group}--{orders_topic}.repartition"


class BatchRun:
    """A :class:`BatchEngine` as a :class:`pipelines.live.resilience.Runnable` (the stop event is set by SIGTERM/SIGINT)."""

    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine

    @property
    def stats(self) -> PipelineStats:
        return self.engine.stats

    def run(self, *, idle_timeout_s: float, stop: threading.Event) -> PipelineStats:
        return self.engine.run(stop, idle_timeout_s=idle_timeout_s)

    def discard(self) -> None:
        self.engine.close()
