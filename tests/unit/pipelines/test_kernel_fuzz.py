"""No event can crash a pipeline: random mutations of valid events, thrown at the kernel and at both adapters.

The base log is a small generated workload (every type, old schema versions among them), each
record on its key's partition of three. Hypothesis mutates it: bit flips, byte inserts and
deletes, a field of the decoded event given another event's value (or a value at a domain's
edge) and re-encoded with the record's own writer schema (so a body can contradict its
envelope), a key swapped, a record moved to another partition, copied elsewhere, or dropped.
For every view we expect each record to be exactly one of applied / duplicate / dead letter with
a reason class, never an exception, anywhere downstream either (the re-keyed fold, the JSON the
live step writes, the DLQ headers); and the live step (Quix fakes) and the replay fold to agree
record by record.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from typing import Any

import orjson
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.batch.stages import OrderStage
from pipelines.dlq import DeadLetter, headers_to_dict
from pipelines.kernel import LATE_EVENT, PARKED, Park, process_record
from pipelines.live import steps as live_steps
from pipelines.live.stats import PipelineStats
from pipelines.partitioning import partition_for
from pipelines.projections import VIEW_NAMES, Change, Row, get_projection, view_spec
from schemas.codec import MAGIC, EventCodec
from schemas.errors import CodecError
from schemas.fast_decode import FastDecoder
from scripts.workload import WorkloadConfig, generate
from state.replay.fold import OrderFolder, RawRecord
from tests.quix_fakes import drive_live_step
from tests.unit.pipelines.batch_fakes import DictStore

CODEC = EventCodec()
DECODE = FastDecoder(CODEC).decode
PARTITIONS = 3
GRACE_MS = 600_000

_WORKLOAD = generate(WorkloadConfig(seed=9, orders=300, days=10.0, old_version_rate=0.3))
#: (key, value) of every record of a workload with old versions, in log order.
BASE: list[tuple[bytes, bytes]] = [(r.key, r.value) for r in _WORKLOAD.records]
#: Order ids to draw logs from: those that were refunded, cancelled or failed a payment first (the rare paths,
#: and where hypothesis shrinks to), then the rest.
_RARE = ("RefundIssued", "InventoryReleased", "PaymentFailed", "OrderCancelled")
ORDERS: list[bytes] = sorted({r.key for r in _WORKLOAD.records},
                             key=lambda k: (not any(r.key == k and r.event_type in _RARE for r in _WORKLOAD.records), k))

Path = tuple[str | int, ...]


def _leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) of a decoded event: scalars, and the lists and records that hold them."""
    if path:
        yield path, node
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _leaves(value, (*path, name))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))


def _pool_key(path: Path, value: Any) -> tuple[str, str]:
    """Values are swapped among their kind: scalars by type, lists and records by field name too (same shape)."""
    kind = type(value).__name__
    return (kind, str(path[-1])) if isinstance(value, (list, dict)) else (kind, "")


POOL: dict[tuple[str, str], list[Any]] = {
    ("int", ""): [0, -1, 1, 2, 2**31 - 1, -(2**31), 2**62, -(2**62), 10**15 + 1, 4_102_444_800_000],
    ("str", ""): ["", "E:U", "eur", "EUR", "USD", "Z", "\x00", "OrderPlaced", "RefundIssued", "PaymentAuthorized", "x" * 100],
}
for _key, _value in BASE:
    for _path, _leaf in _leaves(CODEC.decode_written(_value)[1]):
        _pool = POOL.setdefault(_pool_key(_path, _leaf), [])
        if len(_pool) < 60 and _leaf not in _pool:
            _pool.append(_leaf)


def swapped(value: bytes, pick: int, choice: int) -> bytes:
    """``value`` with one field of its event replaced by a value of the same kind, re-encoded with its writer
    schema and header whatever the new value says (unchanged when the new value does not fit the schema)."""
    try:
        schema, event = CODEC.decode_written(value)
    except CodecError:
        return value
    leaves = list(_leaves(event))
    path, old = leaves[pick % len(leaves)]
    pool = POOL.get(_pool_key(path, old), [])
    if not pool:
        return value
    parent: Any = event
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = pool[choice % len(pool)]
    buf = BytesIO()
    buf.write(MAGIC + schema.fingerprint)
    try:
        schemaless_writer(buf, schema.parsed, event)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return value
    return buf.getvalue()


MUTATIONS = ("flip", "insert", "delete", "swap", "swap", "swap", "key", "move", "copy", "drop")
mutation = st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 2**16), st.integers(0, 2**16), st.integers(0, 255))


def mutated_log(picks: list[int], mutations: list[tuple[str, int, int, int]]) -> list[RawRecord]:
    """The records of the orders ``picks`` (indexes into :data:`ORDERS`) in log order, with ``mutations`` applied,
    then placed: each record on its key's partition (unless moved), offsets counted per partition."""
    keys = {ORDERS[i % len(ORDERS)] for i in picks}
    log: list[list[Any]] = [[None, key, value] for key, value in BASE if key in keys]
    for kind, a, b, c in mutations:
        if not log:
            break
        record = log[a % len(log)]
        value: bytes = record[2]
        if kind == "flip":
            bit = b % (8 * len(value))
            record[2] = value[:bit // 8] + bytes([value[bit // 8] ^ (1 << bit % 8)]) + value[bit // 8 + 1:]
        elif kind == "insert":
            at = b % (len(value) + 1)
            record[2] = value[:at] + bytes([c]) + value[at:]
        elif kind == "delete":
            at = b % len(value)
            record[2] = value[:at] + value[at + 1:]
        elif kind == "swap":
            record[2] = swapped(value, b, c)
        elif kind == "key":
            record[1] = log[b % len(log)][1]
        elif kind == "move":
            record[0] = b % PARTITIONS
        elif kind == "copy":
            log.insert(b % (len(log) + 1), list(record))
        else:
            log.remove(record)
    offsets: dict[int, int] = {}
    out = []
    for partition, key, value in log:
        p = partition_for(key, PARTITIONS) if partition is None else partition
        offsets[p] = offsets.get(p, -1) + 1
        out.append(RawRecord(p, offsets[p], key, value, 0))
    return out


Letter = tuple[int, int, str, str]


def judge_with_kernel(view: str, recs: list[RawRecord]) -> tuple[list[Letter], int, int]:
    """The kernel alone over ``recs``, with rows kept per (partition, orderId) as the stores keep them; checks each
    verdict's shape and that every downstream step takes its output. Returns (dead letters, applied, duplicates)."""
    projection = get_projection(view, grace_ms=GRACE_MS)
    rows: dict[tuple[int, str], Row] = {}
    view_rows: dict[str, Row] = {}
    parks: dict[tuple[int, str], Park] = {}
    stream_times: dict[int, int | None] = {}
    letters: list[Letter] = []
    applied = duplicates = 0
    p = 0

    def row_of(order_id: str) -> Row | None:
        return rows.get((p, order_id))

    def park_of(order_id: str) -> Park | None:
        return parks.get((p, order_id))

    for r in recs:
        p = r.partition()
        verdict = process_record(projection, r.key(), r.value(), decode=DECODE, row_of=row_of,
                                 stream_time_ms=stream_times.get(p), partition=p, partition_count=PARTITIONS,
                                 offset=r.offset(), park_of=park_of)
        stream_times[p] = verdict.stream_time_ms
        if verdict.new_park is not None:
            assert verdict.outcome == "dead" and verdict.reason_class != PARKED
            key = r.key()
            assert key is not None and partition_for(key, PARTITIONS) == p  # only this partition's order is parked
            parks[(p, key.decode())] = verdict.new_park
        assert (verdict.parked_behind is not None) == (verdict.reason_class == PARKED)
        assert verdict.outcome in ("applied", "duplicate", "dead")
        if verdict.reason_class is not None:
            assert isinstance(verdict.reason_class, str) and verdict.reason_class and isinstance(verdict.reason, str)
            letter = DeadLetter(r.key(), r.value(), verdict.reason_class, verdict.reason, "orders", p, r.offset(), view, 0)
            assert len(letter.headers(now_ms=0)) == 7  # the headers encode
            letters.append((p, r.offset(), verdict.reason_class, verdict.reason))
        if verdict.outcome == "dead":
            assert verdict.after is None and verdict.reason_class is not None
            continue
        if verdict.outcome == "duplicate":
            assert verdict.after is None and verdict.reason_class is None
            duplicates += 1
            continue
        after = verdict.after
        assert after is not None and after["orderId"] == verdict.order_id and verdict.reason_class in (None, LATE_EVENT)
        assert bool(verdict.late) == (verdict.reason_class == LATE_EVENT)
        applied += 1
        rows[(p, after["orderId"])] = after
        orjson.dumps(after)  # the live step stores the row as JSON (64-bit integers at most)
        for change in verdict.changes():
            new = projection.apply(view_rows.get(change.key), change)
            orjson.dumps(new)
            view_rows[change.key] = new
            partition_key = getattr(projection, "partition_key", None)
            if partition_key is not None:
                partition_key(change)
    return letters, applied, duplicates


def judge_live(view: str, recs: list[RawRecord]) -> tuple[list[Letter], PipelineStats, list[tuple[str, str, int]]]:
    """The live step 1 over ``recs``: one process (one row cache), a Quix state per partition and key."""
    stats = PipelineStats(view)
    step = live_steps.OrderStep(get_projection(view, grace_ms=GRACE_MS), stats, rekeyed=view_spec(view).rekeyed,
                                partition_count=PARTITIONS)
    letters: list[Letter] = []
    changes: list[tuple[str, str, int]] = []
    for item in drive_live_step(step, recs):
        if isinstance(item, DeadLetter):
            letters.append((item.source_partition, item.source_offset, item.reason_class, item.reason))
        elif isinstance(item, dict):
            changes.append((item["key"], item["orderId"], item["seq"]))
        else:
            changes.append((item.key, item.order_id, item.seq))
    return letters, stats, changes


def judge_batch(view: str, recs: list[RawRecord]) -> tuple[list[Letter], PipelineStats, list[tuple[str, str, int]]]:
    """The batch engine's stage 1 over ``recs`` (a store per partition): its dead letters, counters, and changes."""
    stats = PipelineStats(view)
    projection = get_projection(view, grace_ms=GRACE_MS)
    rekeyed = view_spec(view).rekeyed
    stage = OrderStage(projection, stats, orders_topic="orders", view_topic="view", dlq_topic="dlq", partition_count=PARTITIONS,
                       decode=DECODE, repartition_topic="hop" if rekeyed else None, repartition_partitions=PARTITIONS)
    letters: list[Letter] = []
    changes: list[tuple[str, str, int]] = []

    def send(topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None, timestamp_ms: int,
             partition: int | None) -> None:
        if topic == "dlq":
            h = headers_to_dict(headers)
            letters.append((int(h["rewind.source.partition"]), int(h["rewind.source.offset"]), h["rewind.reason.class"],
                            h["rewind.reason.message"]))
        else:
            body = orjson.loads(value)
            change = body if rekeyed else body["change"]
            changes.append((body["key"], change["orderId"], change["seq"]))

    stores: dict[int, DictStore] = {}
    for r in recs:
        stage.fold(r, stores.setdefault(r.partition(), DictStore()), send)
    return letters, stats, changes


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.integers(0, len(ORDERS) - 1), min_size=1, max_size=12), mutations=st.lists(mutation, min_size=1, max_size=8))
def test_no_mutated_event_crashes_any_view_and_live_agrees_with_replay(picks: list[int], mutations: list[tuple[str, int, int, int]]) -> None:
    """Scenario: a window of valid events, mutated (bits, bytes, field values, keys, partitions, copies, drops).
    We expect, for every view, no exception; every record applied, a duplicate or a dead letter with a reason
    class; and the kernel alone, the live step, the replay fold and the batch engine's stage giving the same
    dead letters, changes and counts."""
    recs = mutated_log(picks, mutations)
    for view in VIEW_NAMES:
        kernel_letters, applied, duplicates = judge_with_kernel(view, recs)
        live_letters, stats, live_changes = judge_live(view, recs)
        replay_letters: list[DeadLetter] = []
        folder = OrderFolder(get_projection(view, grace_ms=GRACE_MS), topic="orders", decode=DECODE,
                             on_dead_letter=replay_letters.append, partition_count=PARTITIONS)
        out: list[tuple[Any, ...]] = []
        folder.fold(recs, out)
        replayed = [(d.source_partition, d.source_offset, d.reason_class, d.reason) for d in replay_letters]
        batch_letters, batch_stats, batch_changes = judge_batch(view, recs)
        assert kernel_letters == live_letters == replayed == batch_letters, view
        c = folder.counters
        assert c.events_in == len(recs) == c.applied + c.duplicates + c.dead_lettered
        assert (applied, duplicates) == (stats.applied, stats.duplicates) == (c.applied, c.duplicates), view
        assert sorted(live_changes) == sorted((t[0], t[2], t[3]) for t in out) == sorted(batch_changes), view
        assert (batch_stats.applied, batch_stats.duplicates, batch_stats.dead_lettered) == (stats.applied, stats.duplicates, stats.dead_lettered)


def test_the_fuzzer_reaches_every_kind_of_verdict() -> None:
    """Scenario: a fixed sample of mutations (the property above only checks what it meets).
    We expect applied events and dead letters of several classes among them, so the property is not vacuous."""
    seen: set[str] = set()
    for n in range(60):
        recs = mutated_log([n % 30, n + 30, n * 3 + 31], [("swap", n * 13 + i, n * 31 + i, i) for i in range(6)]
                           + [("flip", n, n * 17, 0), ("move", n * 3, n, 0), ("copy", n * 5, n * 11, 0)])
        letters, applied, duplicates = judge_with_kernel("product-sales", recs)
        seen |= {letter[2] for letter in letters} | ({"applied"} if applied else set()) | ({"duplicate"} if duplicates else set())
    assert {"applied", "duplicate", "CodecError", "WrongPartition"} <= seen, seen
    assert len(seen) >= 7, seen


def test_a_swapped_change_is_applied_to_rows_without_error() -> None:
    """Scenario: the Change a swap can yield, folded by every view's apply. We expect a row (a guard for the fold path)."""
    for view in VIEW_NAMES:
        projection = get_projection(view)
        if view == "order-status":
            continue
        key = {"customer-summary": "c-1", "product-sales": "sku-1", "revenue-hourly": "EUR:0", "payments-daily": "EUR:0"}[view]
        assert projection.apply(None, Change(key, {}, "o-1", 1, 0))["validFrom"] == 0
