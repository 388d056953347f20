"""A live step's outputs, produced by the step itself: which topic, key, value, headers and timestamp."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from pipelines.dlq import DLQ_HEADERS, DeadLetter, headers_to_dict
from pipelines.live.outputs import Outputs, ProducingStep
from state.contracts import SourcePosition, ViewUpdate
from state.view_records import decode_view_update


class RecordingProducer:
    """Quix's InternalProducer.produce, recording each call's keyword arguments."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, **kwargs: Any) -> None:
        self.records.append(kwargs)


LETTER = DeadLetter(key=b"o-1", value=b"\x00junk", reason_class="Undecodable", reason="bad magic", source_topic="orders",
                    source_partition=3, source_offset=41, pipeline="customer-summary", timestamp_ms=1_700_000_000_123)
UPDATE = ViewUpdate(view="customer-summary", key="c-é", row={"ordersPlaced": 1}, row_valid_from_ms=1000, change_valid_from_ms=1000,
                    delta={"ordersPlaced": 1}, order_id="o-1", seq=1, source=SourcePosition("orders", 3, 40))
CHANGE = {"key": "c-é", "pk": "c-é"}  # stands for RekeyedChange.to_json(): anything that is neither type


def step_returning(*items: Any) -> ProducingStep:
    producer = RecordingProducer()
    step = ProducingStep(lambda *_: list(items), Outputs(producer, dlq_topic="orders.dlq", view_topic="view.customer-summary"))  # type: ignore[arg-type]  # a recording stand-in for InternalProducer
    step.producer = producer  # type: ignore[attr-defined]  # kept for the assertions
    return step


def test_dead_letters_and_view_updates_are_produced_and_changes_forwarded() -> None:
    """Scenario: a step returns a dead letter, a change and a view update. We expect the dead letter on the DLQ
    with its original key, bytes, source timestamp and the DLQ headers; the update on the view topic keyed by
    the UTF-8 view key in the view-record format; and only the change forwarded."""
    step = step_returning(LETTER, CHANGE, UPDATE)
    forwarded = step.forwarding(b"raw", b"o-1", 1_700_000_000_123, [], None)
    assert forwarded == [CHANGE]
    dead, view = step.producer.records  # type: ignore[attr-defined]
    assert (dead["topic"], dead["key"], dead["value"], dead["timestamp"]) == ("orders.dlq", b"o-1", b"\x00junk", 1_700_000_000_123)
    assert [name for name, _ in dead["headers"]] == list(DLQ_HEADERS)
    headers = headers_to_dict(dead["headers"])
    assert (headers["rewind.reason.class"], headers["rewind.source.partition"], headers["rewind.source.offset"]) == ("Undecodable", "3", "41")
    assert (view["topic"], view["key"], "headers" in view) == ("view.customer-summary", "c-é".encode(), False)
    assert decode_view_update(view["value"], view="customer-summary", record_position=SourcePosition("view.customer-summary", 0, 0)) == \
        UPDATE._replace(record_position=SourcePosition("view.customer-summary", 0, 0))
    assert orjson.loads(view["value"])["source"] == {"topic": "orders", "partition": 3, "offset": 40}


def test_a_dead_letter_with_a_null_value_keeps_its_null_key_and_gets_empty_bytes() -> None:
    """Scenario: a tombstone with no key is dead-lettered. We expect key None and value b"" (as Quix's serializers wrote it)."""
    step = step_returning(dataclasses.replace(LETTER, key=None, value=None))
    step(b"", None, 5, [], None)
    (dead,) = step.producer.records  # type: ignore[attr-defined]
    assert (dead["key"], dead["value"]) == (None, b"")


def test_a_step_that_forwards_nothing_refuses_an_item_with_nowhere_to_go() -> None:
    """Scenario: the produce-only form meets a change. We expect a TypeError, not a silently dropped record."""
    with pytest.raises(TypeError):
        step_returning(CHANGE)(b"raw", b"o-1", 0, [], None)
