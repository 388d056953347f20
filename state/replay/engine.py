"""The replay engine: fold the orders log into a new view directory, from offset zero or a snapshot.

The as-of contract: with ``mode="as-of"`` and ``as_of_ms=T`` the output holds, for every
key, exactly its state as of T (inclusive) under ../shared/DESIGN.md "Time, precisely":
per order the longest prefix of its accepted events in seq order whose occurredAt are
all <= T; re-keyed views the fold of those prefixes' changes (:mod:`state.replay.fold`).
Every version is written, so the output also answers as-of reads for times before T.
``mode="to-end"`` folds everything up to the high watermarks captured at start;
``mode="up-to"`` folds every record before offsets_for_times(T + 1), completely (used
to build snapshots, :mod:`state.snapshots`).

The result equals a replay from offset zero whether or not a snapshot seeded it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipelines.gc_pause import gc_paused
from pipelines.projections import get_projection
from schemas.errors import ConfigError
from schemas.fast_decode import event_decoder
from state.contracts import WritableProjectionStore
from state.encoded_writes import EncodedWritesStore
from state.errors import ReplayInterruptedError
from state.replay.fold import FoldCounters, ViewFolder, is_rekeyed
from state.replay.foldstate import FoldStateDB
from state.replay.logfacts import DEFAULT_RANGE_RECORDS, LogFacts, facts_path, kafka_record_source, kafka_topic_id
from state.replay.output import FOLD_DIR, VIEW_DIR, ReplayManifest, fold_fingerprint, write_manifest
from state.replay.plan import KafkaOffsetSource, OffsetSource, ReplayMode, ReplayPlan, StopFacts, plan_replay
from state.replay.progress import NullProgress, ReplayProgress
from state.replay.sink import StoreSink
from state.replay.stopping import stop_on_signals
from state.replay.swap import build_paths, publish
from state.replay.workers import Batch, Done, WorkerPool, WorkerSpec, split_partitions
from state.rocks_store import RocksStore
from state.snapshots import Snapshot, choose_snapshot, list_snapshots, restore_snapshot

__all__ = ["StoreOpener", "ReplayRequest", "ReplayResult", "run_replay", "default_store_opener", "checkpoint_view_store"]

#: Worker i spills order rows to ``<build dir>/spill-<i>`` (removed before the output is published).
SPILL_PREFIX = "spill-"


class StoreOpener(Protocol):
    """Opens (creating) the writable view store of a replay build in a directory."""

    def __call__(self, path: Path) -> WritableProjectionStore: ...


def default_store_opener(path: Path) -> WritableProjectionStore:
    """The RocksDB view store of a replay build, without a write-ahead log (:class:`state.rocks_store.RocksStore`)."""
    # No write-ahead log: the build directory is removed if the replay fails, and the store
    # is closed (memtables flushed) before the manifest is written and the directory published.
    return RocksStore(path, wal=False)


def checkpoint_view_store(source: Path, dest: Path) -> None:
    """Copy the (closed) view store in ``source`` to new directory ``dest`` (its RocksDB checkpoint)."""
    store = RocksStore(source)
    try:
        store.checkpoint(dest)
    finally:
        store.close()


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay and where to.

    ``into`` must not exist; the build happens in ``<into>.tmp`` and is renamed into place
    when complete. ``workers``: processes that fold (0: fold in this process).
    ``snapshots_root``: where to look for a seed snapshot (None: always from offset zero).
    ``dlq_topic``: write dead letters there (None: only count them; the live pipeline
    has already dead-lettered the same records once). ``max_rows_in_memory``: order rows
    each worker keeps in memory; it spills older ones to disk (:mod:`state.replay.orderrows`).
    """

    view: str
    bootstrap: str
    topic: str
    into: Path
    mode: ReplayMode = "to-end"
    as_of_ms: int | None = None
    #: A speed hint only (how long re-keyed changes are held to write them in event-time
    #: order, :mod:`state.replay.sink`); never changes an answer.
    max_lateness_ms: int = 600_000
    #: Where the log's range facts live (:mod:`state.replay.logfacts`); an as-of replay uses
    #: them to stop early where that is proven safe. None: no facts, read to the high watermarks.
    facts_dir: Path | None = None
    #: Offsets per range fact when the facts are extended (finer: an earlier stop, a bigger file).
    facts_range_records: int = DEFAULT_RANGE_RECORDS
    workers: int = 2
    snapshots_root: Path | None = None
    dlq_topic: str | None = None
    #: Windowed views: how long after a window ends changes still count (None: the view's default).
    grace_ms: int | None = None
    #: Records per worker batch. Order-status batches carry an order row per record, and up
    #: to WorkerPool's queue bound of them wait in the parent: 5k keeps that near 20 MB
    #: (measured: 20k batches and a queue of 16 cost ~700 MB more peak RSS, same speed).
    batch_size: int = 5_000
    store_batch_updates: int = 20_000
    max_rows_in_memory: int = 50_000
    #: A per-order view into a store that takes encoded writes: the workers encode the store's
    #: writes where they fold (:mod:`state.encoded_writes`); False: the parent applies updates.
    encode_in_workers: bool = True
    #: A Confluent-compatible schema registry for Confluent-framed records (None: they are dead letters).
    schema_registry_url: str | None = None

    def __post_init__(self) -> None:
        get_projection(self.view)  # UnknownViewError before anything connects
        if (self.mode == "to-end") != (self.as_of_ms is None):
            raise ConfigError(f"replay mode {self.mode} {'takes no' if self.mode == 'to-end' else 'needs a'} time")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did. ``records_read`` counts this run only (not a seed snapshot's)."""

    view: str
    output: Path
    manifest: ReplayManifest
    plan: ReplayPlan
    snapshot: str | None
    records_read: int
    updates_written: int
    elapsed_s: float
    fold_s: float

    @property
    def events_per_s(self) -> float:
        """Records read per second of the fold phase (planning and publishing excluded)."""
        return self.records_read / self.fold_s if self.fold_s > 0 else 0.0


def _watermark_ms(plan: ReplayPlan, max_timestamp_ms: Mapping[int, int]) -> int | None:
    """The manifest's event-time watermark (see ReplayManifest): every event with occurredAt at or
    below it that was in the log when the replay was planned has been read.

    As of T: T (the stops are proven, or the high watermarks). To the end: everything was read,
    so the greatest record timestamp read stands for "all of it". Up to T: None (the stop comes
    from record timestamps, which prove nothing about occurredAt).
    """
    if plan.mode == "as-of":
        return plan.as_of_ms
    if plan.mode == "to-end":
        return max(max_timestamp_ms.values()) if max_timestamp_ms else None
    return None


def run_replay(
    request: ReplayRequest,
    *,
    open_store: StoreOpener = default_store_opener,
    progress: ReplayProgress | None = None,
    offsets: OffsetSource | None = None,
    stop: threading.Event | None = None,
    facts: StopFacts | None = None,
) -> ReplayResult:
    """Replay ``request.view`` into ``request.into``; steps:

    1. Plan the offsets (capture high watermarks; find the stop for the mode: as of T, with
       ``facts``, else with the range facts in ``request.facts_dir``, brought up to date).
    2. Choose the newest usable snapshot (:mod:`state.snapshots` rule), if snapshots are on.
    3. Prepare ``<into>.tmp``: restore the snapshot into it (its next offsets become the start), or create it.
    4. Open the view store there; for a re-keyed view, load its rows from the fold state.
    5. Start the workers (partitions split by records to read); each reads its orders' rows
       from the seed's fold state as it meets them, and spills rows to ``<into>.tmp/spill-<i>``.
    6. Fold: each worker batch's updates go to the store with the position they reach
       (one ``store.apply`` = one atomic batch); the progress bar follows the offsets. The
       last batch carries the final position (every partition at its stop).
    7. Save the fold state: the workers' changed order rows (copied from their spills, which
       are then removed), the re-keyed view's rows.
    8. Close the store and fold state, write the manifest (last).
    9. Publish: fsync, rename ``<into>.tmp`` -> ``<into>``.

    On SIGINT/SIGTERM (or ``stop`` set) the workers stop after their current batch and
    :class:`ReplayInterruptedError` is raised; on any failure the build directory is
    removed. Nothing served is touched either way (serving it is :func:`state.replay.swap.swap_view`).
    """
    progress = progress or NullProgress()
    stop = stop or threading.Event()
    started = time.monotonic()
    # Step 1
    source = offsets or KafkaOffsetSource(request.bootstrap)
    if facts is None and request.mode == "as-of" and request.facts_dir is not None:
        progress.stage("bringing the log's range facts up to date")
        facts = LogFacts(facts_path(request.facts_dir, request.topic, kafka_topic_id(request.bootstrap, request.topic)),
                         read=kafka_record_source(request.bootstrap, request.topic), decode=event_decoder(request.schema_registry_url),
                         range_records=request.facts_range_records)
    try:
        plan = plan_replay(source, request.topic, mode=request.mode, as_of_ms=request.as_of_ms, facts=facts)
    finally:
        if offsets is None:
            source.close()  # type: ignore[attr-defined]  # the KafkaOffsetSource opened above has close(); OffsetSource does not
    fingerprint = fold_fingerprint()
    # Step 2
    snapshot: Snapshot | None = None
    if request.snapshots_root is not None:
        snapshot = choose_snapshot(
            list_snapshots(request.snapshots_root, request.view), view=request.view, topic=request.topic,
            partitions=len(plan.partitions), mode=plan.mode, as_of_ms=plan.as_of_ms, stop_offsets=plan.stop_offsets,
            fingerprint=fingerprint,
        )
    # Step 3
    into = Path(request.into)
    tmp = build_paths(into)
    with stop_on_signals(stop), gc_paused():
        try:
            return _build(request, plan, snapshot, tmp, into, fingerprint, open_store, progress, stop, started)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            progress.finish()


def _build(
    request: ReplayRequest,
    plan: ReplayPlan,
    snapshot: Snapshot | None,
    tmp: Path,
    into: Path,
    fingerprint: str,
    open_store: StoreOpener,
    progress: ReplayProgress,
    stop: threading.Event,
    started: float,
) -> ReplayResult:
    """Steps 3-9 of :func:`run_replay` (the caller removes ``tmp`` on failure)."""
    seed: ReplayManifest | None = None
    if snapshot is not None:
        seed = restore_snapshot(snapshot, tmp)
        plan = plan.with_start(seed.next_offsets)
    else:
        tmp.mkdir(parents=True)
    # Step 4
    store = open_store(tmp / VIEW_DIR)
    fold_db: FoldStateDB | None = None
    pool: WorkerPool | None = None
    try:
        view_folder = None
        if is_rekeyed(request.view):
            rows = {}
            if seed is not None:
                saved = FoldStateDB(tmp / FOLD_DIR, read_only=True)
                rows = saved.view_rows()
                saved.close()
            view_folder = ViewFolder(get_projection(request.view, grace_ms=request.grace_ms), rows=rows)
        sink = StoreSink(store, view=request.view, topic=request.topic, start_offsets=plan.start_offsets,
                         stop_offsets=plan.stop_offsets, view_folder=view_folder, max_lateness_ms=request.max_lateness_ms,
                         batch_updates=request.store_batch_updates)
        # Step 5
        encode_apart = request.encode_in_workers and view_folder is None and isinstance(store, EncodedWritesStore)
        seed_stream_time = {int(p): t for p, t in (seed.counters.get("stream_time_ms", {}) if seed is not None else {}).items()}
        seed_parks = dict(seed.counters.get("parks", {})) if seed is not None else {}
        specs = [
            WorkerSpec(
                worker_id=i, bootstrap=request.bootstrap, topic=request.topic, view=request.view, ranges=ranges,
                as_of_ms=request.as_of_ms if request.mode == "as-of" else None, grace_ms=request.grace_ms,
                seed_fold_dir=str(tmp / FOLD_DIR) if seed is not None else None, dlq_topic=request.dlq_topic,
                spill_dir=str(tmp / f"{SPILL_PREFIX}{i}"), max_rows_in_memory=request.max_rows_in_memory,
                batch_size=request.batch_size, seed_stream_time_ms=seed_stream_time, seed_parks=seed_parks,
                encode_store_writes=encode_apart,
                schema_registry_url=request.schema_registry_url,
                # Kafka numbers a topic's partitions 0..n-1, and the plan read them all from its metadata.
                partition_count=len(plan.partitions),
            )
            for i, ranges in enumerate(split_partitions(plan, max(1, request.workers)))
        ]
        pool = WorkerPool(specs, inline=request.workers == 0)
        what = f"replay {request.view}" + (f" as of {request.as_of_ms}" if request.mode == "as-of" else "")
        progress.start(plan, description=what + (f" from {snapshot.snapshot_id}" if snapshot else ""))
        fold_started = time.monotonic()
        pool.start()
        # Step 6
        counters = FoldCounters(stream_time_ms=dict(seed_stream_time), parks=dict(seed_parks))
        cut_orders = 0
        max_ts: dict[int, int] = dict(seed.max_timestamp_ms) if seed is not None else {}
        done: set[int] = set()
        records = 0
        for message in pool.messages(should_stop=stop.is_set):
            if isinstance(message, Batch):
                if message.encoded is not None:
                    sink.add_encoded(message.encoded, message.next_offsets, message.max_timestamp_ms)
                else:
                    sink.add(message.changes, message.next_offsets, message.max_timestamp_ms)
                records += message.records
                progress.update(message.next_offsets, records=message.records)
            elif isinstance(message, Done):
                done.add(message.worker_id)
                counters.add(message.counters)
                cut_orders += message.cut_orders
                for p, ts in message.max_timestamp_ms.items():
                    max_ts[p] = max(ts, max_ts.get(p, ts))
        if stop.is_set() or len(done) != len(specs):
            raise ReplayInterruptedError(f"replay of {request.view} stopped; {tmp} removed, nothing served changed")
        # The last versions, and the final position: every partition read up to its stop
        # (control records past the last data record included).
        sink.next_offsets.update(plan.end_offsets())
        sink.flush(final=True)
        fold_s = time.monotonic() - fold_started
        # Step 7
        progress.stage("saving fold state")
        fold_db = FoldStateDB(tmp / FOLD_DIR, wal=False)  # closed (flushed) before the build is published
        for spec in specs:
            assert spec.spill_dir is not None
            spill = FoldStateDB(Path(spec.spill_dir), read_only=True)
            try:
                fold_db.copy_order_rows(spill)
            finally:
                spill.close()
            shutil.rmtree(spec.spill_dir)
        if view_folder is not None:
            fold_db.put_view_rows(view_folder.rows)
        # Step 8
        fold_db.close()
        fold_db = None
        store.close()
        max_valid_from = counters.max_valid_from_ms
        if seed is not None and seed.max_valid_from_ms is not None:
            max_valid_from = max(seed.max_valid_from_ms, max_valid_from or seed.max_valid_from_ms)
        manifest = ReplayManifest(
            view=request.view, topic=request.topic, partitions=len(plan.partitions), mode=plan.mode,
            as_of_ms=plan.as_of_ms, next_offsets=plan.end_offsets(), max_timestamp_ms=max_ts,
            watermark_ms=_watermark_ms(plan, max_ts), max_valid_from_ms=max_valid_from, complete=cut_orders == 0,
            cut_orders=cut_orders, fold_fingerprint=fingerprint, counters=counters.as_dict(),
            created_at_ms=int(time.time() * 1000), seeded_from=snapshot.snapshot_id if snapshot else None,
        )
        write_manifest(tmp, manifest)
        # Step 9
        progress.stage(f"publishing {into}")
        publish(tmp, into)
    except BaseException:
        if pool is not None:
            pool.close()
        if fold_db is not None:
            fold_db.close()
        store.close()
        raise
    pool.close()
    return ReplayResult(
        view=request.view, output=into, manifest=manifest, plan=plan,
        snapshot=snapshot.snapshot_id if snapshot else None, records_read=records,
        updates_written=sink.updates_written, elapsed_s=time.monotonic() - started, fold_s=fold_s,
    )
