"""The fast encoder writes exactly the codec's bytes."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro.io.binary_encoder import BinaryEncoder
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import EventCodec
from schemas.registry import EVENT_TYPES
from scripts.workload import FastEncoder
from scripts.workload.encoding import avro_long, avro_string

CODEC = EventCodec()
FAST = FastEncoder(CODEC)


def _fastavro_long(n: int) -> bytes:
    buf = BytesIO()
    BinaryEncoder(buf).write_long(n)
    return buf.getvalue()


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_avro_long_matches_fastavro(n: int) -> None:
    assert avro_long(n) == _fastavro_long(n)


def test_avro_long_at_every_group_boundary() -> None:
    for bits in range(64):
        for n in (2**bits - 1, 2**bits, -(2**bits), -(2**bits) - 1):
            if -(2**63) <= n < 2**63:
                assert avro_long(n) == _fastavro_long(n), n


@given(st.text())
def test_avro_string_is_length_then_utf8(s: str) -> None:
    raw = s.encode()
    assert avro_string(s) == _fastavro_long(len(raw)) + raw


def test_no_type_falls_back_to_the_codec() -> None:
    """Scenario: the shipped v1 schemas. We expect a fast layout for every type (else generation slows 3x)."""
    assert FAST.fallback_types == ()


_text = st.text(max_size=40)
_long = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_int = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_items = st.lists(st.fixed_dictionaries({"sku": _text, "quantity": _int, "unitPriceMinor": _long}), max_size=5)
_refund_items = st.lists(st.fixed_dictionaries({"sku": _text, "quantity": _int}), max_size=5)
_PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "OrderPlaced": st.fixed_dictionaries({"customerId": _text, "items": _items, "totalMinor": _long, "currency": _text}),
    "PaymentAuthorized": st.fixed_dictionaries({"paymentId": _text, "amountMinor": _long, "currency": _text}),
    "PaymentFailed": st.fixed_dictionaries({"reason": _text}),
    "InventoryReserved": st.fixed_dictionaries({"warehouseId": _text}),
    "InventoryReleased": st.fixed_dictionaries({"reason": _text}),
    "OrderShipped": st.fixed_dictionaries({"carrier": _text, "trackingNumber": _text}),
    "OrderDelivered": st.just({}),
    "OrderCancelled": st.fixed_dictionaries({"reason": _text}),
    "RefundIssued": st.fixed_dictionaries(
        {"items": _refund_items, "amountMinor": _long, "currency": _text, "reason": _text}
    ),
}


@st.composite
def events(draw: st.DrawFn) -> dict:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    envelope = {
        "eventId": draw(_text),
        "eventType": event_type,
        "schemaVersion": 1,
        "orderId": draw(_text),
        "seq": draw(_int),
        "occurredAt": draw(_long),
        "correlationId": draw(_text),
        "causationId": draw(_text),
    }
    return {"envelope": envelope, **draw(_PAYLOADS[event_type])}


@settings(max_examples=400)
@given(events())
def test_fast_bytes_are_the_codec_bytes(event: dict) -> None:
    assert FAST.encode(event) == CODEC.encode(event)


def test_order_writer_reuses_the_previous_event_id_correctly() -> None:
    """Scenario: three events of one order, each caused by the one before. We expect the codec's bytes each time."""
    write = FAST.order_writer("ord-9", correlation_id="corr-9")
    cause = "cmd-9"
    for seq, event_id in enumerate(["e-1", "e-22", "e-333"], start=1):
        value = write("OrderDelivered", event_id, seq, 1_704_067_200_000 + seq, cause, {})
        expected = CODEC.encode({"envelope": {
            "eventId": event_id, "eventType": "OrderDelivered", "schemaVersion": 1, "orderId": "ord-9",
            "seq": seq, "occurredAt": 1_704_067_200_000 + seq, "correlationId": "corr-9", "causationId": cause,
        }})
        assert value == expected
        cause = event_id
