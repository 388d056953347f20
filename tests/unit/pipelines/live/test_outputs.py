"""A live step's outputs, produced by the step itself: which topic, key, value, headers and timestamp."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from quixstreams.internal_producer import InternalProducer

from pipelines.dlq import DLQ_HEADERS, DeadLetter, headers_to_dict
from pipelines.live.outputs import Outputs, ProducingStep
from state.contracts import SourcePosition, ViewUpdate
from state.view_records import decode_view_update


class RecordingKafkaProducer:
    """Stands in for the confluent-kafka producer inside Quix's InternalProducer: records each
    produce as a dict; raises BufferError for the first ``full`` calls (a full local queue)."""

    def __init__(self, *, full: int = 0) -> None:
        self.records: list[dict[str, Any]] = []
        self._full = full

    def produce(self, topic: str, value: bytes, key: bytes | None, **kwargs: Any) -> None:
        if self._full:
            self._full -= 1
            raise BufferError("Local: Queue full")
        self.records.append({"topic": topic, "value": value, "key": key, **kwargs})

    def poll(self, timeout: float = 0) -> int:
        return 0


def quix_producer(kafka: RecordingKafkaProducer) -> InternalProducer:
    """A real InternalProducer of the pinned quixstreams whose confluent producer is ``kafka``
    (Quix creates that one lazily, so none is made here)."""
    producer = InternalProducer(broker_address="127.0.0.1:1")
    producer._producer._inner_producer = kafka  # the stand-in replaces the lazily created client
    return producer


LETTER = DeadLetter(key=b"o-1", value=b"\x00junk", reason_class="Undecodable", reason="bad magic", source_topic="orders",
                    source_partition=3, source_offset=41, pipeline="customer-summary", timestamp_ms=1_700_000_000_123)
UPDATE = ViewUpdate(view="customer-summary", key="c-é", row={"ordersPlaced": 1}, row_valid_from_ms=1000, change_valid_from_ms=1000,
                    delta={"ordersPlaced": 1}, order_id="o-1", seq=1, source=SourcePosition("orders", 3, 40))
CHANGE = {"key": "c-é", "pk": "c-é"}  # stands for RekeyedChange.to_json(): anything that is neither type


def step_returning(*items: Any, kafka: RecordingKafkaProducer) -> ProducingStep:
    """A ProducingStep over a step that returns ``items``, producing into ``kafka``."""
    return ProducingStep(lambda *_: list(items), Outputs(quix_producer(kafka), dlq_topic="orders.dlq", view_topic="view.customer-summary"))


def test_dead_letters_and_view_updates_are_produced_and_changes_forwarded() -> None:
    """Scenario: a step returns a dead letter, a change and a view update. We expect the dead letter on the DLQ
    with its original key, bytes, source timestamp and the DLQ headers; the update on the view topic keyed by
    the UTF-8 view key in the view-record format; and only the change forwarded."""
    kafka = RecordingKafkaProducer()
    forwarded = step_returning(LETTER, CHANGE, UPDATE, kafka=kafka).forwarding(b"raw", b"o-1", 1_700_000_000_123, [], None)
    assert forwarded == [CHANGE]
    dead, view = kafka.records
    assert (dead["topic"], dead["key"], dead["value"], dead["timestamp"]) == ("orders.dlq", b"o-1", b"\x00junk", 1_700_000_000_123)
    assert [name for name, _ in dead["headers"]] == list(DLQ_HEADERS)
    headers = headers_to_dict(dead["headers"])
    assert (headers["rewind.reason.class"], headers["rewind.source.partition"], headers["rewind.source.offset"]) == ("Undecodable", "3", "41")
    assert (view["topic"], view["key"], view["headers"]) == ("view.customer-summary", "c-é".encode(), None)
    assert decode_view_update(view["value"], view="customer-summary", record_position=SourcePosition("view.customer-summary", 0, 0)) == \
        UPDATE._replace(record_position=SourcePosition("view.customer-summary", 0, 0))
    assert orjson.loads(view["value"])["source"] == {"topic": "orders", "partition": 3, "offset": 40}


def test_a_dead_letter_with_a_null_value_keeps_its_null_key_and_gets_empty_bytes() -> None:
    """Scenario: a tombstone with no key is dead-lettered. We expect key None and value b"" (as Quix's serializers wrote it)."""
    kafka = RecordingKafkaProducer()
    step_returning(dataclasses.replace(LETTER, key=None, value=None), kafka=kafka)(b"", None, 5, [], None)
    (dead,) = kafka.records
    assert (dead["key"], dead["value"]) == (None, b"")


def test_delivery_reports_reach_quix_and_a_full_queue_falls_back_to_quix_produce() -> None:
    """Scenario: the local queue is full once, then a record is delivered. We expect the record produced once
    (through Quix's retrying produce), and every record to carry Quix's own delivery callback, which
    records the offsets and latches delivery errors for the checkpoint."""
    kafka = RecordingKafkaProducer(full=1)
    producer = quix_producer(kafka)
    ProducingStep(lambda *_: [UPDATE, UPDATE], Outputs(producer, dlq_topic="d", view_topic="v"))(b"raw", b"o-1", 7, [], None)
    assert len(kafka.records) == 2
    assert all(r["on_delivery"].__func__ is InternalProducer._on_delivery for r in kafka.records)


def test_a_step_that_forwards_nothing_refuses_an_item_with_nowhere_to_go() -> None:
    """Scenario: the produce-only form meets a change. We expect a TypeError, not a silently dropped record."""
    with pytest.raises(TypeError):
        step_returning(CHANGE, kafka=RecordingKafkaProducer())(b"raw", b"o-1", 0, [], None)
