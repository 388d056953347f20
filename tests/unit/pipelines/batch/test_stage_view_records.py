"""The batch stages encode view records field by field (their hot path); the bytes must be the reference encoding's.

The reference is the object path every other adapter uses: the kernel's verdict, ``verdict.changes()``,
``view_update(...)`` and :func:`state.view_records.encode_view_update`.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipelines.batch.stages import OrderStage, RekeyStage
from pipelines.kernel import process_record
from pipelines.live.stats import PipelineStats
from pipelines.live.steps import RekeyedChange, view_update
from pipelines.partitioning import partition_for
from pipelines.projections import get_projection
from schemas.fast_decode import event_decoder
from scripts.workload import WorkloadConfig, generate
from state.contracts import SourcePosition
from state.replay.fold import RawRecord
from state.view_records import encode_view_update
from tests.unit.pipelines.batch_fakes import DictStore

PARTITIONS = 4
DECODE = event_decoder()

Sent = tuple[str, bytes | None, bytes, int | None]


def _log() -> list[RawRecord]:
    """A poisoned workload, placed as the producer places it (offsets per partition)."""
    workload = generate(WorkloadConfig(seed=5, orders=300, days=2, poison_rate=0.05))
    offsets: dict[int, int] = {}
    out = []
    for r in workload.records:
        p = partition_for(r.key, PARTITIONS)
        out.append(RawRecord(p, offsets.get(p, 0), r.key, r.value, r.timestamp_ms))
        offsets[p] = offsets.get(p, 0) + 1
    return out


def _run_stage(stage: Any, records: list[RawRecord]) -> list[Sent]:
    sent: list[Sent] = []

    def send(topic: str, key: bytes | None, value: bytes, headers: Any, timestamp_ms: int, partition: int | None) -> None:
        sent.append((topic, key, value, partition))

    stores: dict[int, DictStore] = {}
    for r in records:
        stage.fold(r, stores.setdefault(r.partition(), DictStore()), send)
    return sent


def test_order_stage_view_records_are_the_reference_encoding() -> None:
    """Scenario: order-status over a poisoned log. We expect each view record's key and bytes to be the reference's, in order."""
    projection = get_projection("order-status")
    records = _log()
    stage = OrderStage(projection, PipelineStats("order-status"), orders_topic="orders", view_topic="view", dlq_topic="dlq",
                       partition_count=PARTITIONS, decode=DECODE, repartition_topic=None, repartition_partitions=PARTITIONS)
    got = [(key, value) for topic, key, value, _ in _run_stage(stage, records) if topic == "view"]

    rows: dict[bytes, Any] = {}
    expected = []
    for r in records:
        key = r.key()

        def row_of(_order_id: str, key: bytes | None = key) -> Any:
            return rows.get(key)  # type: ignore[arg-type]  # a row is looked up only for a key that is the orderId

        verdict = process_record(projection, key, r.value(), decode=DECODE, row_of=row_of,
                                 stream_time_ms=None, partition=r.partition(), partition_count=PARTITIONS, offset=r.offset())
        if verdict.after is None:
            continue
        rows[key] = verdict.after  # type: ignore[index]  # applied: the key is the orderId
        for change in verdict.changes():
            update = view_update(projection.name, change, projection.apply(None, change), SourcePosition("orders", r.partition(), r.offset()),
                                 rekeyed=False)
            expected.append((change.key.encode(), encode_view_update(update)))
    assert len(expected) > 500
    assert got == expected


def test_rekey_stage_view_records_are_the_reference_encoding() -> None:
    """Scenario: customer-summary, stage 1's repartition records fed to stage 2. We expect each view record to be the reference's."""
    view = "customer-summary"
    projection = get_projection(view)
    first = OrderStage(projection, PipelineStats(view), orders_topic="orders", view_topic="view", dlq_topic="dlq",
                       partition_count=PARTITIONS, decode=DECODE, repartition_topic="hop", repartition_partitions=PARTITIONS)
    hops = [(key, value, partition) for topic, key, value, partition in _run_stage(first, _log()) if topic == "hop"]
    offsets: dict[int, int] = {}
    routed_records = []
    for key, value, partition in hops:
        assert partition is not None
        routed_records.append(RawRecord(partition, offsets.get(partition, 0), key, value, 1_700_000_000_000))
        offsets[partition] = offsets.get(partition, 0) + 1
    second = RekeyStage(projection, PipelineStats(view), view_topic="view")
    got = [(key, value) for topic, key, value, _ in _run_stage(second, routed_records) if topic == "view"]

    view_rows: dict[str, Any] = {}
    expected = []
    for record in routed_records:
        routed = RekeyedChange.from_json(orjson.loads(record.value() or b""))
        change = routed.change
        view_rows[change.key] = row = projection.apply(view_rows.get(change.key), change)
        expected.append((change.key.encode(), encode_view_update(view_update(view, change, row, routed.source, rekeyed=True))))
    assert len(expected) > 100
    assert got == expected
