"""The single-object codec: every schema round-trips, and each kind of bad bytes raises its named error."""

from __future__ import annotations

import json
import struct
import uuid

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    EVENT_TYPES,
    BadMagicError,
    CodecError,
    EncodeError,
    EventCodec,
    RewindError,
    TruncatedEventError,
    UnknownSchemaError,
)
from schemas.codec import HEADER_LEN, MAGIC
from schemas.registry import SCHEMA_DIR

CODEC = EventCodec()

ids = st.uuids().map(str)
text = st.text(min_size=0, max_size=20)
long_ = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int_ = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def envelope(event_type: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "eventId": ids,
            "eventType": st.just(event_type),
            "schemaVersion": st.just(1),
            "orderId": text,
            "seq": int_,
            "occurredAt": long_,
            "correlationId": text,
            "causationId": text,
        }
    )


PAYLOADS: dict[str, dict] = {
    "OrderPlaced": {
        "customerId": text,
        "items": st.lists(
            st.fixed_dictionaries({"sku": text, "quantity": int_, "unitPriceMinor": long_}), max_size=5
        ),
        "totalMinor": long_,
        "currency": text,
    },
    "PaymentAuthorized": {"paymentId": text, "amountMinor": long_, "currency": text},
    "PaymentFailed": {"reason": text},
    "InventoryReserved": {"warehouseId": text},
    "InventoryReleased": {"reason": text},
    "OrderShipped": {"carrier": text, "trackingNumber": text},
    "OrderDelivered": {},
    "OrderCancelled": {"reason": text},
    "RefundIssued": {
        "items": st.lists(st.fixed_dictionaries({"sku": text, "quantity": int_}), max_size=5),
        "amountMinor": long_,
        "currency": text,
        "reason": text,
    },
}


def event_strategy(event_type: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"envelope": envelope(event_type), **PAYLOADS[event_type]})


any_event = st.one_of([event_strategy(t) for t in EVENT_TYPES])


def test_every_event_type_has_a_schema_and_a_strategy() -> None:
    assert {s.event_type for s in CODEC.registry.latest()} == set(EVENT_TYPES) == set(PAYLOADS)


@settings(max_examples=300, deadline=None)
@given(any_event)
def test_hypothesis_events_round_trip(event: dict) -> None:
    data = CODEC.encode(event)
    assert data[:2] == MAGIC
    assert CODEC.decode(data) == event


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_header_carries_the_avro_crc64_fingerprint_of_the_canonical_form(event_type: str) -> None:
    """The fingerprint is computed here from the .avsc file independently of the registry."""
    envelope_doc = json.loads((SCHEMA_DIR / "Envelope.v1.avsc").read_text())
    doc = json.loads((SCHEMA_DIR / f"{event_type}.v1.avsc").read_text())
    named: dict = {}
    parse_schema(envelope_doc, named_schemas=named)
    expected = bytes.fromhex(fingerprint(to_parsing_canonical_form(parse_schema(doc, named_schemas=named)), "CRC-64-AVRO"))
    event = {"envelope": {"eventType": event_type}}
    schema = CODEC.registry.get(event_type)
    assert schema.fingerprint == expected
    assert len(expected) == 8
    del event


def _good_bytes() -> bytes:
    event = {
        "envelope": {
            "eventId": str(uuid.UUID(int=1)),
            "eventType": "OrderPlaced",
            "schemaVersion": 1,
            "orderId": "o-1",
            "seq": 1,
            "occurredAt": 1_700_000_000_000,
            "correlationId": "c-1",
            "causationId": "cmd-1",
        },
        "customerId": "c-9",
        "items": [{"sku": "SKU-001", "quantity": 2, "unitPriceMinor": 1999}],
        "totalMinor": 3998,
        "currency": "EUR",
    }
    return CODEC.encode(event)


def test_wrong_magic_raises_bad_magic() -> None:
    data = _good_bytes()
    with pytest.raises(BadMagicError):
        CODEC.decode(b"\x00\x01" + data[2:])
    with pytest.raises(BadMagicError):
        CODEC.decode(b"{}")


@pytest.mark.parametrize("cut", [0, 1, 5, HEADER_LEN - 1])
def test_short_header_raises_truncated(cut: int) -> None:
    with pytest.raises(TruncatedEventError):
        CODEC.decode(_good_bytes()[:cut])


def test_truncated_body_raises_truncated() -> None:
    data = _good_bytes()
    with pytest.raises(TruncatedEventError):
        CODEC.decode(data[: len(data) - 5])


def test_unknown_fingerprint_raises_unknown_schema() -> None:
    data = _good_bytes()
    with pytest.raises(UnknownSchemaError):
        CODEC.decode(MAGIC + struct.pack("<Q", 0xDEADBEEF) + data[HEADER_LEN:])


def test_trailing_garbage_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        CODEC.decode(_good_bytes() + b"\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_escape_the_error_hierarchy(data: bytes) -> None:
    try:
        CODEC.decode(MAGIC + CODEC.registry.get("OrderPlaced").fingerprint + data)
    except CodecError:
        pass


def test_encode_rejects_unknown_type_and_bad_fields() -> None:
    with pytest.raises(EncodeError):
        CODEC.encode({"envelope": {"eventType": "NoSuchEvent"}})
    good = CODEC.decode(_good_bytes())
    bad = {"envelope": good["envelope"] | {"eventType": "PaymentFailed"}, "reason": 42}
    with pytest.raises(EncodeError):
        CODEC.encode(bad)
    assert issubclass(EncodeError, RewindError)
