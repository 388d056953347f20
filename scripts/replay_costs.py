"""Where a replayed event's CPU goes: each step of a replay, measured alone, in one process.

    python scripts/replay_costs.py --topic TOPIC [--records 250000] [--views order-status,product-sales]

(``bench_replay.py`` runs it too, as its step 6, on the topic it replayed.)

A replay on C cores can reach R events/s only if every event costs at most C / R seconds
of CPU, summed over every process (workers, parent, RocksDB's threads; the broker's
fetches come on top). This measures each step's CPU per event with ``time.process_time``
(every thread of this process, so RocksDB's flushes and librdkafka's fetch threads count)
on the first whole partitions of the topic (whole partitions: every order's whole life):

1. consume: read the records (librdkafka, confluent-kafka Message objects);
2. decode: the fast Avro decoder;
3. fold: the projection's fold, in worker batches (decode + fold, less step 2);
4. transfer: pickling a worker batch and unpickling it in the parent;
5. parent: the store sink and the replay's store (its thread only): re-keyed views merge and
   fold there; every view's updates are applied into RocksDB's WriteBatch and memtable;
6. flush: RocksDB's own threads, sorting and writing the memtables to SST files
   (compactions excluded: a lower bound).

Each figure is a lower bound of what the same step costs inside a replay (there it shares
caches and cores with the other processes). The sum, against the budget ``cores / aim``,
says whether the aim can be met by running the steps in parallel at all; the parent's
figure alone bounds what one writer can take.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines.projections import VIEW_NAMES  # noqa: E402

#: Runs of each repeatable step (decode, fold, transfer); the fastest counts.
REPEAT = 3
STEPS = ("consume", "decode", "fold", "transfer", "parent", "flush")


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(CPU seconds of every thread of this process while ``fn`` ran, its result)."""
    started = time.process_time()
    result = fn()
    return time.process_time() - started, result


def _best_cpu(fn: Callable[[], Any], repeat: int = REPEAT) -> tuple[float, Any]:
    """:func:`_cpu` of the fastest of ``repeat`` runs (as timeit does): an allocation-heavy step
    measured once varied up to 3x between runs on this machine; the minimum is stable."""
    best, result = _cpu(fn)
    for _ in range(repeat - 1):
        seconds, result = _cpu(fn)
        best = min(best, seconds)
    return best, result


def _cpu_split(fn: Callable[[], Any]) -> tuple[float, float]:
    """(CPU seconds of the calling thread, of every other thread of this process) while ``fn`` ran."""
    process, thread = time.process_time(), time.thread_time()
    fn()
    thread = time.thread_time() - thread
    return thread, time.process_time() - process - thread


def to_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Per partition of ``topic``, in partition order, the offset a replay to the end stops at."""
    from state.replay.plan import KafkaOffsetSource, plan_replay

    source = KafkaOffsetSource(bootstrap)
    try:
        plan = plan_replay(source, topic, mode="to-end", as_of_ms=None)
    finally:
        source.close()
    return {p: plan.stop_offsets[p] for p in plan.partitions}


def read_sample(bootstrap: str, topic: str, records: int) -> tuple[list[Any], dict[int, int]]:
    """Whole partitions, in partition order, until at least ``records`` records; and their stop offsets."""
    from state.replay.reader import BoundedReader, PartitionRange

    chosen: dict[int, int] = {}
    total = 0
    for p, stop in to_end_offsets(bootstrap, topic).items():
        if total >= records:
            break
        chosen[p] = stop
        total += stop
    reader = BoundedReader(bootstrap, topic, [PartitionRange(p, 0, stop) for p, stop in chosen.items()])
    out: list[Any] = []
    for batch in reader.batches():
        out.extend(batch)
    return out, chosen


def _max_timestamps(batch: list[Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    for record in batch:
        ts = record.timestamp()[1]
        if ts > out.get(record.partition(), -1):
            out[record.partition()] = ts
    return out


def view_costs(view: str, topic: str, sample: list[Any], stops: dict[int, int], *, partition_count: int,
               batch_size: int = 5_000) -> dict[str, float]:
    """CPU seconds of steps 2-6 for one view over ``sample`` (``partition_count``: the topic's, for the placement check a replay makes)."""
    from pipelines.projections import get_projection
    from schemas.errors import CodecError
    from schemas.fast_decode import FastDecoder
    from state.replay.engine import default_store_opener
    from state.replay.fold import OrderFolder, ViewFolder, is_rekeyed
    from state.replay.sink import StoreSink

    decode = FastDecoder().decode
    batches = [sample[i : i + batch_size] for i in range(0, len(sample), batch_size)]

    def decode_all() -> None:
        for record in sample:
            try:
                decode(record.value())
            except CodecError:
                pass

    costs: dict[str, float] = {}
    costs["decode"], _ = _best_cpu(decode_all)
    rekeyed = is_rekeyed(view)

    def fold_all() -> list[list[Any]]:
        folder = OrderFolder(get_projection(view), topic=topic, decode=decode, partition_count=partition_count)
        folded = []
        for batch in batches:
            out: list[Any] = []
            folder.fold(batch, out)
            folded.append(out)
        return folded

    decode_fold, messages = _best_cpu(fold_all)
    costs["fold"] = max(0.0, decode_fold - costs["decode"])
    costs["transfer"], received = _best_cpu(
        lambda: [pickle.loads(pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)) for m in messages]
    )
    work = Path(tempfile.mkdtemp(prefix="replay-costs-"))
    try:
        store = default_store_opener(work / "view")
        view_folder = ViewFolder(get_projection(view)) if rekeyed else None
        sink = StoreSink(store, view=view, topic=topic, start_offsets={p: 0 for p in stops}, stop_offsets=stops,
                         view_folder=view_folder, max_lateness_ms=600_000)
        # What each worker batch reached, as the workers report it (the held changes' watermark).
        reached = [({r.partition(): r.offset() + 1 for r in batch}, _max_timestamps(batch)) for batch in batches]

        def write_all() -> None:
            for message, (next_offsets, max_ts) in zip(received, reached, strict=True):
                sink.add(message, next_offsets, max_ts)
            sink.next_offsets.update(stops)
            sink.flush(final=True)
            store.close()  # waits for the memtables' flushes: RocksDB's share of the cost

        costs["parent"], costs["flush"] = _cpu_split(write_all)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return costs


def measure(bootstrap: str, topic: str, *, records: int = 250_000, views: Sequence[str] = VIEW_NAMES,
            aim: int = 150_000) -> dict[str, Any]:
    """Every step's CPU per event for each view, on the first whole partitions of ``topic`` holding ``records``."""
    from pipelines.gc_pause import gc_paused

    cores = os.cpu_count() or 1
    with gc_paused():  # as in a replay (engine and workers): no cyclic GC passes over the folded rows
        consume_s, (sample, stops) = _cpu(lambda: read_sample(bootstrap, topic, records))
        if not sample:
            raise ValueError(f"topic {topic!r} has no records")
        partition_count = len(to_end_offsets(bootstrap, topic))
        costs = {view: {"consume": consume_s, **view_costs(view, topic, sample, stops, partition_count=partition_count)} for view in views}
    n = len(sample)
    results: dict[str, Any] = {"topic": topic, "records": n, "partitions": sorted(stops), "cores": cores,
                               "aim_events_per_s": aim, "budget_us": round(cores / aim * 1e6, 2), "views": {}}
    for view, seconds in costs.items():
        per_event = {step: round(seconds[step] / n * 1e6, 2) for step in STEPS}
        total = sum(per_event.values())
        results["views"][view] = {
            "us_per_event": per_event, "total_us": round(total, 2),
            "ceiling_events_per_s": round(cores / total * 1e6),
            "parent_ceiling_events_per_s": round(1e6 / (per_event["parent"] or 0.01)),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table and one ``REWIND_COSTS`` JSON line."""
    from pipelines.settings import RewindSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", required=True, help="An orders topic (e.g. one bench_replay.py --keep-topic produced).")
    parser.add_argument("--records", type=int, default=250_000, help="At least this many records (whole partitions).")
    parser.add_argument("--views", default=",".join(VIEW_NAMES))
    parser.add_argument("--aim", type=int, default=150_000, help="Events/s the budget is computed for.")
    args = parser.parse_args(argv)
    if args.records < 1 or args.aim < 1:
        parser.error("--records and --aim must be positive")
    from state.errors import ReplayError

    views = args.views.split(",")
    unknown = [v for v in views if v not in VIEW_NAMES]
    if unknown:
        parser.error(f"unknown view(s) {', '.join(unknown)}; known: {', '.join(VIEW_NAMES)}")
    try:
        results = measure(RewindSettings().bootstrap(), args.topic, records=args.records, views=views, aim=args.aim)
    except (ValueError, ReplayError) as exc:
        parser.error(str(exc))
    print_costs(results)
    print("REWIND_COSTS " + json.dumps(results, sort_keys=True))


def print_costs(results: dict[str, Any]) -> None:
    """The figures of :func:`measure` as a table: a row per step, a column per view."""
    views = {view: results["views"][view] for view in VIEW_NAMES if view in results["views"]}
    table = Table(title=f"CPU per event, µs ({results['records']:,} records; budget for {results['aim_events_per_s']:,}/s "
                        f"on {results['cores']} cores: {results['budget_us']} µs)")
    table.add_column("step")
    for view in views:
        table.add_column(view, justify="right")
    for step in STEPS:
        table.add_row(step, *(f"{r['us_per_event'][step]:.2f}" for r in views.values()))
    table.add_row("sum", *(f"{r['total_us']:.1f}" for r in views.values()))
    table.add_row("ceiling, all cores busy (events/s)", *(f"{r['ceiling_events_per_s']:,}" for r in views.values()))
    table.add_row("ceiling of the one writer (events/s)", *(f"{r['parent_ceiling_events_per_s']:,}" for r in views.values()))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
