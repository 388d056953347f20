"""Decode benchmark: what upcasting old schema versions costs per event, no Kafka.

    .venv/bin/python -m scripts.bench_decode [--orders 5000] [--rounds 64] [--chunk 2000] [--seed 1]

Cases, each a list of encoded records decoded one by one:

a. **newest**: the OrderPlaced (v3) and PaymentAuthorized (v2) events of a workload, with the
   fast decoder (:class:`schemas.fast_decode.FastDecoder`): the hot path, no chain;
b. **old**: the same events written as OrderPlaced v2 and v1 and PaymentAuthorized v1 (converted
   from the newest by hand), so each decode runs its upcast chain;
c. **mixed**: a whole workload as :func:`scripts.workload.generate` writes it with
   ``old_version_rate`` R, for R in 0 and 0.3 (the same events both times: only their versions differ);
d. every case again with ``EventCodec.decode``, for comparison.

Before timing, every case is checked to decode to the same events with both decoders (and
an old record to its newest counterpart), so the cases compare equal work.

Timing: the CPU time of this thread (``time.thread_time``: steadier than wall time on shared
cores), the cyclic GC paused as in a replay. Each round decodes ``--chunk`` records of every
(case, decoder), interleaved, in an order rotated each round, so that a noisy neighbour hits
every case alike; round k takes the same records (the k-th chunk) of a case and of its
baseline. The table gives the median µs/event over the rounds, the spread (min-max), and
the overhead against the row's baseline, decoded by the same decoder: the newest version of
the same type (b), the workload written with R = 0 (c); it is the median over the rounds of
the difference paired by round. The load average is printed before and after, and all
figures as one JSON line (``REWIND_BENCH_DECODE {...}``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python scripts/bench_decode.py`
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines.gc_pause import gc_paused  # noqa: E402
from schemas.codec import Event, EventCodec  # noqa: E402
from schemas.fast_decode import FastDecoder  # noqa: E402
from scripts.workload import WorkloadConfig, generate  # noqa: E402

console = Console(stderr=True)
OLD_VERSION_RATES = (0.0, 0.3)
Decode = Callable[[bytes], Event]


@dataclass(frozen=True)
class Case:
    """One list of records to decode, and the case whose time is its baseline (None: it is one)."""

    name: str
    records: tuple[bytes, ...]
    baseline: str | None = None


@dataclass(frozen=True)
class Figures:
    """The µs/event of one (case, decoder) over the rounds, and its overhead against its baseline."""

    case: str
    decoder: str
    records: int
    median_us: float
    min_us: float
    max_us: float
    #: Medians over the rounds of (this - baseline) and (this / baseline - 1) * 100, paired by round; None for a baseline.
    delta_us: float | None
    overhead_pct: float | None


def _as_old(event: Event, version: int) -> Event:
    """``event`` (the newest version of its type) as an old producer wrote it with ``version``."""
    event_type = event["envelope"]["eventType"]
    envelope = event["envelope"] | {"schemaVersion": version}
    if event_type == "OrderPlaced":  # v3 -> v2 (v1: without salesChannel), OrderPlaced.v1..v3.avsc
        old = {"envelope": envelope, "customerId": event["customerId"], "items": event["items"],
               "totalMinor": event["total"]["amountMinor"], "currency": event["total"]["currency"]}
        return old | {"salesChannel": event["salesChannel"]} if version == 2 else old
    if event_type == "PaymentAuthorized" and version == 1:  # authorizedMinor was amountMinor
        return {"envelope": envelope, "paymentId": event["paymentId"], "amountMinor": event["authorizedMinor"], "currency": event["currency"]}
    raise ValueError(f"no conversion of {event_type} to v{version}")


def build_cases(codec: EventCodec, *, orders: int, seed: int) -> list[Case]:
    """The cases of the module docstring, from workloads of ``orders`` orders (same seed, so the same events)."""
    cases: list[Case] = []
    mixed: dict[float, tuple[bytes, ...]] = {}
    for rate in OLD_VERSION_RATES:
        workload = generate(WorkloadConfig(seed=seed, orders=orders, days=3.0, poison_rate=0.0, old_version_rate=rate))
        mixed[rate] = tuple(r.value for r in workload.records)
    newest = {s.event_type: s.version for s in codec.registry.latest()}
    base = mixed[0.0]
    for event_type, old_versions in (("OrderPlaced", (2, 1)), ("PaymentAuthorized", (1,))):
        records = tuple(v for v in base if codec.decode_written(v)[0].event_type == event_type)
        name = f"{event_type} v{newest[event_type]}"
        cases.append(Case(name, records))
        for version in old_versions:
            old = tuple(codec.encode(_as_old(codec.decode(v), version)) for v in records)
            cases.append(Case(f"{event_type} v{version} -> v{newest[event_type]}", old, baseline=name))
    for rate in OLD_VERSION_RATES:
        cases.append(Case(f"workload, old_version_rate {rate:g}", mixed[rate], baseline=None if rate == 0 else "workload, old_version_rate 0"))
    return cases


def check_cases(cases: Sequence[Case], decoders: dict[str, Decode], codec: EventCodec) -> None:
    """Every decoder gives the same events for every case, and an old record its baseline's event
    (an OrderPlaced written as v1 with salesChannel "unknown"): the cases compare equal work."""
    by_name = {case.name: case for case in cases}
    for case in cases:
        results = [[decode(v) for v in case.records] for decode in decoders.values()]
        if any(r != results[0] for r in results[1:]):
            raise SystemExit(f"{case.name}: the decoders disagree")
        if case.baseline is None or case.baseline.startswith("workload"):
            continue  # a workload with old versions: the decoders agree; test_upcast checks what they return
        for old, got, newest in zip(case.records, results[0], by_name[case.baseline].records, strict=True):
            want = codec.decode(newest)
            if codec.decode_written(old)[0].version == 1 and want["envelope"]["eventType"] == "OrderPlaced":
                want["salesChannel"] = "unknown"
            if got != want:
                raise SystemExit(f"{case.name}: {got} does not decode to the event of {case.baseline}: {want}")


def _time_once(decode: Decode, records: Sequence[bytes]) -> float:
    """µs of this thread's CPU per record to decode ``records`` once."""
    with gc_paused():
        started = time.thread_time()
        for value in records:
            decode(value)
        elapsed = time.thread_time() - started
    return elapsed / len(records) * 1e6


def _chunk(records: tuple[bytes, ...], k: int, size: int) -> tuple[bytes, ...]:
    """The ``k``-th run of ``size`` records, wrapping around: every round decodes other events, a case and its baseline the same ones."""
    start = k * size % len(records)
    part = records[start : start + size]
    return part + records[: size - len(part)] if len(part) < size else part


def measure(cases: Sequence[Case], decoders: dict[str, Decode], *, rounds: int, chunk: int) -> list[Figures]:
    """Every (case, decoder) timed on ``chunk`` records once per round, interleaved, in an order rotated each round."""
    runs = [(case, name) for case in cases for name in decoders]
    samples: dict[tuple[str, str], list[float]] = {(case.name, name): [] for case, name in runs}
    for case, name in runs:  # warm-up: caches, the allocator's free lists
        _time_once(decoders[name], _chunk(case.records, 0, chunk))
    started = time.perf_counter()
    for k in range(rounds):
        shift = k % len(runs)
        for case, name in runs[shift:] + runs[:shift]:
            samples[(case.name, name)].append(_time_once(decoders[name], _chunk(case.records, k, chunk)))
        if (k + 1) % max(1, rounds // 6) == 0 or k + 1 == rounds:
            console.print(f"round {k + 1}/{rounds}: {time.perf_counter() - started:.1f} s, load average {os.getloadavg()[0]:.2f}")
    figures = []
    for case, name in runs:
        values = samples[(case.name, name)]
        delta = overhead = None
        if case.baseline is not None:  # paired by round: the same events, moments apart, so noise hits both alike
            pairs = list(zip(values, samples[(case.baseline, name)], strict=True))
            delta = statistics.median(v - b for v, b in pairs)
            overhead = statistics.median((v / b - 1) * 100 for v, b in pairs)
        figures.append(Figures(case.name, name, len(case.records), statistics.median(values), min(values), max(values), delta, overhead))
    return figures


def print_table(figures: Sequence[Figures], *, rounds: int, chunk: int) -> None:
    """One row per case: µs/event of each decoder (median, min-max) and the overhead against the row's baseline."""
    table = Table(title=f"decode cost per event (CPU µs; median of {rounds} interleaved rounds of {chunk:,} records per case)")
    for column in ("case", "records", "fast µs", "(min-max)", "fast vs baseline", "codec µs", "(min-max)", "codec vs baseline", "codec/fast"):
        table.add_column(column, justify="left" if column == "case" else "right")
    by_key = {(f.case, f.decoder): f for f in figures}
    for case in dict.fromkeys(f.case for f in figures):
        fast, codec = by_key[(case, "fast")], by_key[(case, "codec")]
        table.add_row(
            case, f"{fast.records:,}", f"{fast.median_us:.2f}", f"{fast.min_us:.2f}-{fast.max_us:.2f}", _versus(fast),
            f"{codec.median_us:.2f}", f"{codec.min_us:.2f}-{codec.max_us:.2f}", _versus(codec), f"{codec.median_us / fast.median_us:.2f}x",
        )
    Console(width=180).print(table)


def _versus(figures: Figures) -> str:
    if figures.delta_us is None or figures.overhead_pct is None:
        return "baseline"
    return f"{figures.delta_us:+.2f} µs {figures.overhead_pct:+.0f} %"


def main(argv: Sequence[str] | None = None) -> None:
    """Build the cases, check them, time them interleaved, print the table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5_000, help="Orders per workload (about 4 records each).")
    parser.add_argument("--rounds", type=int, default=64, help="Interleaved rounds; the table gives the median over them.")
    parser.add_argument("--chunk", type=int, default=2_000, help="Records of each case decoded per round.")
    parser.add_argument("--seed", type=int, default=1, help="Workload seed.")
    args = parser.parse_args(argv)
    if args.orders < 100 or args.rounds < 1 or args.chunk < 1:
        parser.error("--orders must be >= 100, --rounds and --chunk >= 1")
    load_start = os.getloadavg()
    console.print(f"load average {load_start}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    started = time.perf_counter()
    codec = EventCodec()
    decoders: dict[str, Decode] = {"fast": FastDecoder(codec).decode, "codec": codec.decode}
    cases = build_cases(codec, orders=args.orders, seed=args.seed)
    check_cases(cases, decoders, codec)
    console.print(f"{len(cases)} cases built and checked in {time.perf_counter() - started:.1f} s: "
                  + ", ".join(f"{c.name} ({len(c.records):,})" for c in cases))
    figures = measure(cases, decoders, rounds=args.rounds, chunk=args.chunk)
    load_end = os.getloadavg()
    print_table(figures, rounds=args.rounds, chunk=args.chunk)
    print(f"load average before {load_start[0]:.2f}, after {load_end[0]:.2f}; {os.cpu_count()} cores; "
          f"total {time.perf_counter() - started:.0f} s")
    result: dict[str, Any] = {"orders": args.orders, "rounds": args.rounds, "chunk": args.chunk, "seed": args.seed, "cores": os.cpu_count(),
                              "load_average_start": load_start, "load_average_end": load_end,
                              "cases": [{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(f).items()} for f in figures]}
    print("REWIND_BENCH_DECODE " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
