"""Partition-parallel folding: one worker process per core, partitions split among them.

Orders are partition-local (key = orderId), so each worker folds its partitions' orders
alone and sends the parent its changes; the parent merges them (re-keyed views) and is
the only writer of the store. Messages, worker -> parent, in this order per worker:

1. :class:`Batch` per consumed batch: changes, and the next_offsets they reach;
2. :class:`Done` with its counters, once every order row it changed is in its spill
   directory (:mod:`state.replay.orderrows`); or :class:`Failed` with a traceback, at any point.

The rows of its orders stay in the worker (the recent ones in memory, the rest in its
spill), never cross the pipe: the parent copies the spills into the fold state after
every worker is done (and so has stopped reading the seed fold state, which it replaces).

A worker stops after its current batch when the shared stop event is set (the parent
sets it on SIGINT/SIGTERM); it ignores SIGINT itself, so Ctrl-C is handled once, by the
parent. If the parent dies, the worker's next send fails and it exits.

``workers=0`` runs the same generator in the calling process (tests, small topics).
"""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import Producer

from pipelines.dlq import DeadLetter
from pipelines.projections import Row, get_projection
from schemas.fast_decode import event_decoder
from state.encoded_writes import EncodedWrites
from state.errors import ReplayError, ReplayInterruptedError
from state.order_row_writes import encode_order_row_writes
from state.replay.fold import OrderFolder
from state.replay.foldstate import FoldStateDB
from state.replay.orderrows import OrderRows
from state.replay.plan import ReplayPlan
from state.replay.reader import BoundedReader, PartitionRange

__all__ = [
    "WorkerSpec",
    "Batch",
    "Done",
    "Failed",
    "WorkerMessage",
    "split_partitions",
    "worker_messages",
    "WorkerPool",
]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs (pickled to a spawned process, so plain data only)."""

    worker_id: int
    bootstrap: str
    topic: str
    view: str
    ranges: tuple[PartitionRange, ...]
    as_of_ms: int | None
    grace_ms: int | None = None
    seed_fold_dir: str | None = None
    #: Where this worker spills order rows (see :mod:`state.replay.orderrows`); None: keeps them in memory.
    spill_dir: str | None = None
    max_rows_in_memory: int = 50_000
    dlq_topic: str | None = None
    batch_size: int = 5_000
    consumer_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: Stream time per partition where the seed snapshot ends (the kernel's step 2); empty: from offset zero.
    seed_stream_time_ms: Mapping[int, int] = field(default_factory=dict)
    #: The seed snapshot's parks (orderId -> :meth:`pipelines.kernel.Park.to_json`; the kernel's "Per-order parking").
    seed_parks: Mapping[str, Any] = field(default_factory=dict)
    #: Encode the store's writes here (a per-order view into a store that takes them, see
    #: :mod:`state.encoded_writes`) and send those instead of the changes.
    encode_store_writes: bool = False
    #: Where Confluent-framed records' schema ids are looked up (None: such records are dead letters).
    schema_registry_url: str | None = None
    #: The topic's partition count, for the kernel's placement check (None: not checked).
    partition_count: int | None = None


class Batch(NamedTuple):
    """One consumed batch: its changes (:class:`~state.replay.fold.FoldedChange` fields, as plain
    tuples: cheaper to pickle), the next_offsets reached, the greatest record timestamp read
    so far per partition, and how many records it held. With ``encode_store_writes``,
    ``changes`` is empty and ``encoded`` holds the store writes of those changes."""

    worker_id: int
    changes: list[tuple[Any, ...]]
    next_offsets: dict[int, int]
    max_timestamp_ms: dict[int, int]
    records: int
    encoded: EncodedWrites | None = None


class Done(NamedTuple):
    """The worker finished: its counters, how many orders were cut, max timestamps read per partition."""

    worker_id: int
    counters: dict[str, Any]
    cut_orders: int
    max_timestamp_ms: dict[int, int]


class Failed(NamedTuple):
    """The worker failed; ``error`` is the formatted traceback."""

    worker_id: int
    error: str


WorkerMessage = Batch | Done | Failed


def split_partitions(plan: ReplayPlan, workers: int) -> list[tuple[PartitionRange, ...]]:
    """Partitions with something to read, split into at most ``workers`` groups of similar size.

    Greedy: largest partition first, each to the group with the fewest records so far.
    """
    ranges = [PartitionRange(p, plan.start_offsets[p], plan.stop_offsets[p]) for p in plan.partitions]
    ranges = [r for r in ranges if r.stop > r.start]
    groups: list[list[PartitionRange]] = [[] for _ in range(max(1, workers))]
    loads = [0] * len(groups)
    for r in sorted(ranges, key=lambda r: r.stop - r.start, reverse=True):
        i = loads.index(min(loads))
        groups[i].append(r)
        loads[i] += r.stop - r.start
    return [tuple(sorted(g, key=lambda r: r.partition)) for g in groups if g]


class _DeadLetterProducer:
    """Sends dead letters to the DLQ topic (opt-in for replays) and fails loudly if any is lost."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self.failed = 0
        self.first_error: str | None = None
        self._producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
            "delivery.report.only.error": True, "on_delivery": self._on_delivery,
        })

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)

    def __call__(self, letter: DeadLetter) -> None:
        self._producer.produce(self._topic, letter.value, letter.key, headers=letter.headers(), timestamp=letter.timestamp_ms)
        self._producer.poll(0)

    def close(self, *, timeout_s: float = 60.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining or self.failed:
            raise ReplayError(
                f"{remaining + self.failed} dead letters were not delivered to {self._topic}: {self.first_error or 'flush timed out'}"
            )


def worker_messages(spec: WorkerSpec, *, should_stop: Callable[[], bool]) -> Iterator[WorkerMessage]:
    """The worker's whole job as a generator of messages (see the module docstring for the order)."""
    seed = FoldStateDB(Path(spec.seed_fold_dir), read_only=True) if spec.seed_fold_dir is not None else None
    rows = OrderRows(None if spec.spill_dir is None else Path(spec.spill_dir), seed=seed,
                     max_in_memory=spec.max_rows_in_memory)
    try:
        yield from _fold(spec, rows, should_stop=should_stop)
    finally:
        rows.discard()  # after close(), a no-op; when stopped or failed, the build is discarded anyway
        if seed is not None:
            seed.close()


def _fold(spec: WorkerSpec, rows: OrderRows, *, should_stop: Callable[[], bool]) -> Iterator[WorkerMessage]:
    """:func:`worker_messages` with the fold state open."""
    dlq = _DeadLetterProducer(spec.bootstrap, spec.dlq_topic) if spec.dlq_topic else None
    folder = OrderFolder(
        get_projection(spec.view, grace_ms=spec.grace_ms), topic=spec.topic, decode=event_decoder(spec.schema_registry_url),
        as_of_ms=spec.as_of_ms, rows=rows, on_dead_letter=dlq,
        stream_time_ms={p: t for p, t in spec.seed_stream_time_ms.items() if any(r.partition == p for r in spec.ranges)},
        partition_count=spec.partition_count,
        parks={order_id: park for order_id, park in spec.seed_parks.items() if any(r.partition == park[1] for r in spec.ranges)},
    )
    reader = BoundedReader(spec.bootstrap, spec.topic, list(spec.ranges), batch_size=spec.batch_size,
                           consumer_overrides=spec.consumer_overrides)
    # Step 1: fold batch by batch.
    started_at = {spec.topic: {r.partition: r.start for r in spec.ranges}}
    for records in reader.batches(should_stop=should_stop):
        out: list[Any] = []
        if not spec.encode_store_writes:
            folder.fold(records, out)
            yield Batch(spec.worker_id, out, dict(reader.next_offsets), dict(reader.max_timestamp_ms), len(records))
            continue
        # The store's latest version of an order's row is its row before this batch: the
        # parent commits this worker's batches in order, and no other worker has its orders.
        before: dict[str, Row | None] = {}
        folder.fold(records, out, rows_before=before)
        encoded = encode_order_row_writes(spec.view, spec.topic, out, stored_position=started_at, rows_before=before)
        yield Batch(spec.worker_id, [], dict(reader.next_offsets), dict(reader.max_timestamp_ms), len(records), encoded)
    if should_stop():
        return
    # Step 2: every row this replay changed into the spill, then Done.
    folder.settle_parks()
    rows.close()
    if dlq is not None:
        dlq.close()
    yield Done(spec.worker_id, folder.counters.as_dict(), len(folder.cut), dict(reader.max_timestamp_ms))


def _worker_main(spec: WorkerSpec, conn: Connection, stop: Any) -> None:
    """Entry point of a worker process."""
    # The parent owns Ctrl-C: it sets ``stop`` and drains us; a second SIGINT here would
    # interrupt a send half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The fold allocates millions of acyclic dicts; the cyclic GC's passes over them cost
    # ~15% of a worker's time and free nothing.
    gc.freeze()
    gc.disable()
    dumps = pickle.dumps
    try:
        for message in worker_messages(spec, should_stop=stop.is_set):
            conn.send_bytes(dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, EOFError):
        return  # the parent is gone: nothing to report to
    except BaseException:
        try:
            conn.send_bytes(dumps(Failed(spec.worker_id, traceback.format_exc())))
        except (BrokenPipeError, EOFError, OSError):
            pass
    finally:
        conn.close()


class WorkerPool:
    """Runs workers (processes, or inline when ``inline``) and multiplexes their messages.

    A receiver thread per process drains its pipe into one bounded queue, so workers keep
    folding while the parent writes the store (the queue bound is the backpressure).
    """

    def __init__(self, specs: list[WorkerSpec], *, inline: bool = False, queue_size: int = 4) -> None:
        self._specs = specs
        self._inline = inline
        self._queue: queue.Queue[tuple[int, bytes | None]] = queue.Queue(maxsize=queue_size)
        self._ctx = multiprocessing.get_context("spawn")
        self.stop_event: Any = self._ctx.Event() if not inline else threading.Event()
        self._processes: list[Any] = []
        self._threads: list[threading.Thread] = []

    def _receive(self, worker_id: int, conn: Connection) -> None:
        try:
            while True:
                self._queue.put((worker_id, conn.recv_bytes()))
        except (EOFError, OSError):
            self._queue.put((worker_id, None))  # the worker closed its end: finished or died
        finally:
            conn.close()

    def start(self) -> None:
        """Start the worker processes (nothing to start inline)."""
        if self._inline:
            return
        for spec in self._specs:
            receiver, sender = self._ctx.Pipe(duplex=False)
            process = self._ctx.Process(target=_worker_main, args=(spec, sender, self.stop_event), daemon=True,
                                        name=f"rewind-replay-worker-{spec.worker_id}")
            process.start()
            sender.close()  # only the child writes; our copy would keep EOF from ever arriving
            thread = threading.Thread(target=self._receive, args=(spec.worker_id, receiver), daemon=True)
            thread.start()
            self._processes.append(process)
            self._threads.append(thread)

    def messages(self, *, should_stop: Callable[[], bool] = lambda: False) -> Iterator[WorkerMessage]:
        """Every worker's messages until all are Done.

        Raises ReplayError when a worker fails or dies, ReplayInterruptedError once
        ``should_stop()`` turns true (the workers are told to stop; :meth:`close` drains them).
        """
        if self._inline:
            def stopping() -> bool:
                return should_stop() or self.stop_event.is_set()

            for spec in self._specs:
                for message in worker_messages(spec, should_stop=stopping):
                    yield message
                if stopping():
                    raise ReplayInterruptedError("replay stopped")
            return
        running = {spec.worker_id for spec in self._specs}
        processes = {spec.worker_id: process for spec, process in zip(self._specs, self._processes, strict=True)}
        done: set[int] = set()
        loads = pickle.loads
        while running:
            if should_stop():
                self.stop_event.set()
                raise ReplayInterruptedError("replay stopped")
            try:
                worker_id, data = self._queue.get(timeout=0.25)
            except queue.Empty:
                continue
            if data is None:
                running.discard(worker_id)
                if worker_id not in done:
                    processes[worker_id].join(timeout=5.0)
                    raise ReplayError(f"replay worker {worker_id} ended without finishing (exit code {processes[worker_id].exitcode})")
                continue
            message = loads(data)
            if isinstance(message, Failed):
                raise ReplayError(f"replay worker {message.worker_id} failed:\n{message.error}")
            if isinstance(message, Done):
                done.add(worker_id)
            yield message

    def close(self, *, timeout_s: float = 10.0) -> None:
        """Stop the workers: set the stop event, drain their pipes, join, and terminate any straggler.

        Draining matters: a worker blocked sending a batch only sees the stop event once its
        send completes, and a receiver thread blocked on the full queue only sees its pipe
        close once there is room.
        """
        self.stop_event.set()
        if self._inline:
            return
        deadline = time.monotonic() + timeout_s
        while any(t.is_alive() for t in self._threads) and time.monotonic() < deadline:
            self._drain(timeout_s=0.05)
        for process in self._processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(timeout=timeout_s)
        while any(t.is_alive() for t in self._threads) and time.monotonic() < deadline + timeout_s:
            self._drain(timeout_s=0.05)

    def _drain(self, *, timeout_s: float) -> None:
        try:
            self._queue.get(timeout=timeout_s)
        except queue.Empty:
            pass
