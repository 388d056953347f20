"""Replay benchmark: one topic of N events, every figure the replay engine is judged by.

    python scripts/bench_replay.py [--events 1000000] [--topic EXISTING] [--workers 2]

1. Produce N events (the workload generator and producer) to a fresh topic, unless --topic is given.
2. Raw consume + decode, one process: the codec (what a naive replay pays) and the fast decoder.
3. Replay from offset zero, per view, into each store of ``--stores``: ``rocks``, the replay's
   own RocksDB view store; ``counting``, a store that only counts (the engine alone: consume,
   decode, fold, merge, build every ViewUpdate); ``rocks-parent``, the RocksDB store with
   every update applied by the parent (no per-order writes encoded by the workers). A fast
   path stays only where it beats the plain store by 15 % on the view it serves.
4. Replay as of T: from offset zero vs from a snapshot taken at T - 6 h.
5. Peak RSS (parent + workers, sampled from /proc) of order-status replays into the RocksDB
   store, up to 25/50/75/100 % of the log (``up-to`` mode): how memory grows with the events.
6. Where an event's CPU goes (:mod:`scripts.replay_costs`): each replay step measured alone on
   the first whole partitions, against the budget ``cores / 150k`` (``--skip-costs``: not run).

Every replay of step 3 also reports the CPU it used (this process and its workers) per event:
``cores / that`` is the most it could reach with every core busy.

Figures are printed as a table and as one JSON line (``REWIND_BENCH {...}``). The machine's
load average is printed first: other processes on the same cores skew every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)
HOUR_MS = 3_600_000


def counting_store(path: Path) -> Any:
    """A WritableProjectionStore that only counts (its rows are dropped): the replay engine without store cost."""
    from state.contracts import Position, ViewUpdate
    from state.memory_store import MemoryStore

    class CountingStore(MemoryStore):
        def apply(self, updates: Sequence[ViewUpdate], *, position: Position) -> int:
            """Keep the position only."""
            for topic, parts in position.items():
                self.data.position.setdefault(topic, {}).update(parts)
            return len(updates)

    return CountingStore()


#: ``--stores`` names -> (store opener (None: the replay's own), ReplayRequest overrides).
#: ``rocks-parent``: the replay's own store with every update applied by the parent, i.e.
#: without the workers encoding a per-order view's writes (state.encoded_writes): the
#: figure that fast path must beat by 15 % to stay.
STORES: dict[str, tuple[Any, dict[str, Any]]] = {
    "counting": (counting_store, {}),
    "rocks": (None, {}),
    "rocks-parent": (None, {"encode_in_workers": False}),
}


def produce(bootstrap: str, events: int) -> tuple[str, Any]:
    """Step 1: a workload of about ``events`` records (poison 0.5 %) on a fresh 12-partition topic."""
    from pipelines.settings import RewindSettings
    from scripts.workload import WorkloadConfig, generate, produce_workload

    sample = generate(WorkloadConfig(seed=1, orders=2000, days=3.0, poison_rate=0.005))
    per_order = len(sample.records) / 2000
    config = WorkloadConfig(seed=1, orders=max(1, int(events / per_order)), days=3.0, poison_rate=0.005)
    started = time.perf_counter()
    workload = generate(config)
    console.print(f"generated {len(workload.records):,} records in {time.perf_counter() - started:.1f}s")
    topic = f"bench-replay-{uuid.uuid4().hex[:8]}"
    report = produce_workload(RewindSettings(kafka_bootstrap_servers=bootstrap), workload, topic=topic, progress=True)
    console.print(f"produced to {topic}: {report.delivered:,} records, {report.events_per_s:,.0f}/s")
    return topic, config


def raw_consume_decode(bootstrap: str, topic: str, *, fast: bool) -> dict[str, float]:
    """Step 2: read every record and decode it, one process, nothing else."""
    from schemas.codec import EventCodec
    from schemas.errors import CodecError
    from schemas.fast_decode import FastDecoder
    from scripts.replay_costs import to_end_offsets
    from state.replay.reader import BoundedReader, PartitionRange

    decode = FastDecoder().decode if fast else EventCodec().decode
    reader = BoundedReader(bootstrap, topic, [PartitionRange(p, 0, stop) for p, stop in to_end_offsets(bootstrap, topic).items()])
    n = 0
    started = time.perf_counter()
    for batch in reader.batches():
        for message in batch:
            try:
                decode(message.value())
            except CodecError:
                pass
        n += len(batch)
    elapsed = time.perf_counter() - started
    return {"records": n, "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}


def replay_once(
    bootstrap: str, topic: str, view: str, *, workers: int, store: str, work: Path, into: Path | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Steps 3-4: one replay into a fresh directory; its figures."""
    from state.replay.engine import ReplayRequest, run_replay
    from state.replay.progress import NullProgress

    opener, overrides = STORES[store]
    into = into or work / f"{view}-{store}-{uuid.uuid4().hex[:6]}"
    request = ReplayRequest(view=view, bootstrap=bootstrap, topic=topic, into=into, workers=workers, **{**overrides, **kwargs})
    cpu_before = _tree_cpu_s()
    started = time.perf_counter()
    result = run_replay(request, progress=NullProgress(), **({"open_store": opener} if opener else {}))
    total = time.perf_counter() - started
    cpu_us = (_tree_cpu_s() - cpu_before) / max(1, result.records_read) * 1e6
    return {
        "view": view, "store": store, "mode": request.mode, "records": result.records_read, "updates": result.updates_written,
        "fold_s": round(result.fold_s, 3), "total_s": round(total, 3), "events_per_s": round(result.events_per_s),
        "snapshot": result.snapshot, "output": str(result.output), "cpu_us_per_event": round(cpu_us, 2),
    }


def step_costs(topic: str, views: str) -> dict[str, Any]:
    """Step 6, in a fresh process: after the replays above, this one's heap made allocation-heavy
    steps (encode, transfer) measure two to three times their cost."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "replay_costs.py"), "--topic", topic, "--views", views],
                          capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("REWIND_COSTS "))
    return json.loads(line.removeprefix("REWIND_COSTS "))


def _tree_cpu_s() -> float:
    """CPU seconds used so far by this process and its waited-for children (the replay workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


_MEMORY_CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from state.replay.engine import ReplayRequest, run_replay
from state.replay.progress import NullProgress
r = run_replay(ReplayRequest(view={view!r}, bootstrap={bootstrap!r}, topic={topic!r}, into=Path({into!r}), mode="up-to",
               as_of_ms={t}, workers={workers}), progress=NullProgress())
print(json.dumps({{"records": r.records_read}}))
"""


def _tree_rss_kb(pid: int) -> int:
    """Resident set of ``pid`` and all its descendants, from /proc (kB)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def peak_rss(bootstrap: str, topic: str, view: str, *, t_ms: int, workers: int, work: Path) -> dict[str, Any]:
    """Step 5: run one up-to-T replay in a child process; sample the RSS of its process tree."""
    code = _MEMORY_CHILD.format(root=str(ROOT), view=view, bootstrap=bootstrap, topic=topic,
                                into=str(work / f"mem-{uuid.uuid4().hex[:6]}"), t=t_ms, workers=workers)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _tree_rss_kb(child.pid))
        time.sleep(0.05)
    out, _ = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"memory run failed with exit code {child.returncode}")
    records = json.loads(out.strip().splitlines()[-1])["records"]
    return {"view": view, "up_to_ms": t_ms, "records": records, "peak_rss_mb": round(peak / 1024, 1)}


def main(argv: list[str] | None = None) -> None:
    """Run every step and print the figures."""
    from pipelines.settings import RewindSettings
    from pipelines.topics import admin_client
    from scripts.workload import WorkloadConfig
    from state.snapshots import new_snapshot_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="Records to produce (ignored with --topic).")
    parser.add_argument("--topic", help="Reuse this topic (a workload of seed 1 over 3 days) instead of producing one.")
    parser.add_argument("--keep-topic", action="store_true", help="Do not delete the topic this run produced.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="Replay worker processes.")
    parser.add_argument("--views", default="order-status,customer-summary,product-sales,revenue-hourly", help="Views to replay from zero.")
    parser.add_argument("--stores", default="counting,rocks", help=f"Stores to replay into from zero (of {', '.join(STORES)}).")
    parser.add_argument("--skip-as-of", action="store_true", help="Skip the as-of replays (step 4).")
    parser.add_argument("--skip-memory", action="store_true", help="Skip the peak-RSS runs.")
    parser.add_argument("--skip-costs", action="store_true", help="Skip the per-step CPU costs.")
    args = parser.parse_args(argv)
    stores = args.stores.split(",")
    if any(store not in STORES for store in stores):
        parser.error(f"--stores: each of {', '.join(STORES)}")
    bootstrap = RewindSettings().bootstrap()
    console.print(f"load average {os.getloadavg()}, {os.cpu_count()} cores, broker {bootstrap}")
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    results: dict[str, Any] = {"load_average_start": os.getloadavg(), "cores": os.cpu_count(), "workers": args.workers}
    produced = None
    try:
        # Step 1
        if args.topic:
            topic, config = args.topic, WorkloadConfig(seed=1, days=3.0)
        else:
            topic, config = produce(bootstrap, args.events)
            produced = topic
        results["topic"] = topic
        # Step 2
        results["raw_codec"] = raw_consume_decode(bootstrap, topic, fast=False)
        results["raw_fast"] = raw_consume_decode(bootstrap, topic, fast=True)
        console.print(f"raw consume+decode, 1 process: codec {results['raw_codec']['events_per_s']:,}/s, "
                      f"fast decoder {results['raw_fast']['events_per_s']:,}/s")
        # Step 3
        results["from_zero"] = []
        for view in args.views.split(","):
            for store in stores:
                figures = replay_once(bootstrap, topic, view, workers=args.workers, store=store, work=work)
                shutil.rmtree(figures.pop("output"), ignore_errors=True)
                results["from_zero"].append(figures)
                console.print(f"from zero {view} -> {store} store: {figures['events_per_s']:,}/s ({figures['fold_s']}s)")
        # Step 4
        if not args.skip_as_of:
            t = config.start_ms + int((config.end_ms - config.start_ms) * 2 / 3)
            snapshots = work / "snapshots"
            built = replay_once(bootstrap, topic, "order-status", workers=args.workers, store="rocks", work=work,
                                into=new_snapshot_dir(snapshots, "order-status"), mode="up-to", as_of_ms=t - 6 * HOUR_MS)
            as_of: dict[str, Any] = {"mode": "as-of", "as_of_ms": t}
            facts: dict[str, Any] = {"facts_dir": work / "log-facts"}
            zero = replay_once(bootstrap, topic, "order-status", workers=args.workers, store="rocks", work=work, **as_of)
            # The log's range facts (state.replay.logfacts) prove where an as-of replay may stop:
            # the first run brings them up to date (one scan of the log), later ones reuse them.
            facts_cold = replay_once(bootstrap, topic, "order-status", workers=args.workers, store="rocks", work=work, **as_of, **facts)
            facts_warm = replay_once(bootstrap, topic, "order-status", workers=args.workers, store="rocks", work=work, **as_of, **facts)
            seeded = replay_once(bootstrap, topic, "order-status", workers=args.workers, store="rocks", work=work, **as_of, **facts,
                                 snapshots_root=snapshots)
            results["as_of"] = {"t_ms": t, "snapshot_build": built, "from_zero": zero, "from_zero_facts_cold": facts_cold,
                                "from_zero_facts": facts_warm, "from_snapshot": seeded}
            console.print(f"as of T: from zero {zero['total_s']}s ({zero['records']:,} records), with the log's facts "
                          f"{facts_warm['total_s']}s ({facts_warm['records']:,}; first run building them {facts_cold['total_s']}s), "
                          f"from snapshot {seeded['total_s']}s ({seeded['records']:,} records)")
        # Step 5
        results["memory"] = []
        if not args.skip_memory:
            for fraction in (0.25, 0.5, 0.75, 1.0):
                t_mem = config.start_ms + int((config.end_ms - config.start_ms) * fraction)
                figures = peak_rss(bootstrap, topic, "order-status", t_ms=t_mem, workers=args.workers, work=work)
                results["memory"].append(figures)
                console.print(f"memory up to {fraction:.0%}: {figures['records']:,} records, peak RSS {figures['peak_rss_mb']} MB")
        # Step 6
        if not args.skip_costs:
            results["costs"] = step_costs(topic, args.views)
        results["load_average_end"] = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if produced and not args.keep_topic:
            admin = admin_client(bootstrap)  # held while the futures run: a dropped client cancels them
            for future in admin.delete_topics([produced], operation_timeout=30).values():
                future.result()
    _print_table(results)
    if "costs" in results:
        from scripts.replay_costs import print_costs

        print_costs(results["costs"])
    print("REWIND_BENCH " + json.dumps(results, sort_keys=True))


def _print_table(results: dict[str, Any]) -> None:
    table = Table(title=f"replay benchmark ({results['workers']} workers, {results['cores']} cores)")
    for column in ("what", "records", "seconds", "events/s", "note"):
        table.add_column(column)
    raw = results["raw_codec"]["events_per_s"]
    for key, label in (("raw_codec", "raw consume+decode (codec)"), ("raw_fast", "raw consume+decode (fast decoder)")):
        r = results[key]
        table.add_row(label, f"{r['records']:,}", str(r["seconds"]), f"{r['events_per_s']:,}", "1 process")
    for r in results["from_zero"]:
        ceiling = round((results["cores"] or 1) / r["cpu_us_per_event"] * 1e6) if r["cpu_us_per_event"] else 0
        table.add_row(f"replay {r['view']} -> {r['store']}", f"{r['records']:,}", str(r["fold_s"]), f"{r['events_per_s']:,}",
                      f"{r['events_per_s'] / raw:.2f}x raw; {r['updates']:,} versions; "
                      f"{r['cpu_us_per_event']} µs CPU/event (all cores busy: {ceiling:,}/s)")
    as_of = results.get("as_of", {})
    for key in ("snapshot_build", "from_zero", "from_zero_facts_cold", "from_zero_facts", "from_snapshot"):
        if key in as_of:
            r = as_of[key]
            table.add_row(f"as-of T: {key}", f"{r['records']:,}", str(r["total_s"]), f"{r['events_per_s']:,}", f"{r['mode']}")
    for r in results.get("memory", []):
        table.add_row(f"peak RSS up to {r['up_to_ms']}", f"{r['records']:,}", "", "", f"{r['peak_rss_mb']} MB")
    Console().print(table)


if __name__ == "__main__":
    main()
