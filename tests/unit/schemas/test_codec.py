"""The single-object codec: every schema round-trips, and each kind of bad bytes raises its named error."""

from __future__ import annotations

import struct
import uuid

import pytest
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
from tests.unit.schemas.test_fingerprint import JAVA_FINGERPRINTS

CODEC = EventCodec()

ids = st.uuids().map(str)
text = st.text(min_size=0, max_size=20)
long_ = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int_ = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def envelope(event_type: str, version: int = 1) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "eventId": ids,
            "eventType": st.just(event_type),
            "schemaVersion": st.just(version),
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


_ORDER_PLACED_V2 = {**PAYLOADS["OrderPlaced"], "salesChannel": text}
#: Payloads of the versions after v1, by (type, version), written from the .avsc files.
LATER_PAYLOADS: dict[tuple[str, int], dict] = {
    ("OrderPlaced", 2): _ORDER_PLACED_V2,
    ("OrderPlaced", 3): {
        **{k: v for k, v in _ORDER_PLACED_V2.items() if k not in ("totalMinor", "currency")},
        "total": st.fixed_dictionaries({"amountMinor": long_, "currency": text}),
    },
    ("PaymentAuthorized", 2): {"paymentId": text, "authorizedMinor": long_, "currency": text},
}


def event_strategy(event_type: str, version: int = 1) -> st.SearchStrategy[dict]:
    payload = PAYLOADS[event_type] if version == 1 else LATER_PAYLOADS[(event_type, version)]
    return st.fixed_dictionaries({"envelope": envelope(event_type, version), **payload})


any_event = st.one_of([event_strategy(t) for t in EVENT_TYPES])
any_version_event = st.one_of([event_strategy(s.event_type, s.version) for s in CODEC.registry.all()])


def test_every_event_type_has_a_schema_and_a_strategy() -> None:
    assert {s.event_type for s in CODEC.registry.latest()} == set(EVENT_TYPES) == set(PAYLOADS)
    assert {(s.event_type, s.version) for s in CODEC.registry.all() if s.version > 1} == set(LATER_PAYLOADS)


@settings(max_examples=300, deadline=None)
@given(any_version_event)
def test_hypothesis_events_round_trip(event: dict) -> None:
    """Scenario: any event of any version. We expect decode_written to give it back exactly, with the schema it names."""
    data = CODEC.encode(event)
    assert data[:2] == MAGIC
    schema, decoded = CODEC.decode_written(data)
    assert decoded == event
    assert (schema.event_type, schema.version) == (event["envelope"]["eventType"], event["envelope"]["schemaVersion"])


@settings(max_examples=100, deadline=None)
@given(st.one_of([event_strategy(s.event_type, s.version) for s in CODEC.registry.latest()]))
def test_newest_version_decodes_unchanged(event: dict) -> None:
    """Scenario: an event of its type's newest version. We expect decode (which upcasts) to return it as written."""
    assert CODEC.decode(CODEC.encode(event)) == event


@settings(max_examples=50, deadline=None)
@given(any_event)
def test_header_is_the_marker_and_the_specs_fingerprint(event: dict) -> None:
    """Scenario: any event. We expect C3 01 and the fingerprint Apache Avro (Java) computes for its schema (test_fingerprint.py)."""
    data = CODEC.encode(event)
    assert data[:HEADER_LEN] == MAGIC + bytes.fromhex(JAVA_FINGERPRINTS[event["envelope"]["eventType"]])


def _good_event() -> dict:
    return {
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


def _good_bytes() -> bytes:
    return CODEC.encode(_good_event())


def _bytes_of(event_type: str, **payload: object) -> bytes:
    return CODEC.encode({"envelope": _good_event()["envelope"] | {"eventType": event_type}, **payload})


def test_body_of_another_type_under_a_valid_fingerprint_names_the_misfit() -> None:
    """Scenario: a PaymentFailed body behind OrderPlaced's fingerprint, and the reverse. We expect a named CodecError, never an event."""
    placed, failed = _good_bytes(), _bytes_of("PaymentFailed", reason="card declined")
    with pytest.raises(TruncatedEventError, match=r"^OrderPlaced v1 body ends early at items: ends inside a varint$"):
        CODEC.decode(placed[:HEADER_LEN] + failed[HEADER_LEN:])
    with pytest.raises(CodecError, match=r"^\d+ trailing bytes after the PaymentFailed v1 body: longer than the schema of fingerprint 334ac98e963c6092"):
        CODEC.decode(failed[:HEADER_LEN] + placed[HEADER_LEN:])


def test_body_of_a_type_with_the_same_shape_is_refused() -> None:
    """Scenario: an InventoryReserved body (envelope + one string) behind PaymentFailed's fingerprint. We expect the envelope mismatch named."""
    reserved, failed = _bytes_of("InventoryReserved", warehouseId="wh-1"), _bytes_of("PaymentFailed", reason="x")
    with pytest.raises(CodecError, match=r"PaymentFailed v1 body \(fingerprint 334ac98e963c6092\) carries envelope.eventType 'InventoryReserved' v1"):
        CODEC.decode(failed[:HEADER_LEN] + reserved[HEADER_LEN:])


def test_corrupt_field_is_named_by_its_path() -> None:
    """Scenario: bad UTF-8 in a line item's sku, an int beyond 32 bits in seq (then a body too long). We expect each field's path."""
    event = _good_event()
    event["items"] = [{"sku": "A", "quantity": 1, "unitPriceMinor": 5}, {"sku": "SKU-2", "quantity": 1, "unitPriceMinor": 5}]
    data = bytearray(CODEC.encode(event))
    at = bytes(data).index(b"SKU-2")
    data[at + 1] = 0xFF
    with pytest.raises(CodecError, match=r"^corrupt OrderPlaced v1 body at items\[1\]\.sku: invalid UTF-8"):
        CODEC.decode(bytes(data))
    # seq = 1 is the byte 02 after orderId "o-1"; a 5-byte varint of 2**33 there is a long, not an int.
    # fastavro reads it as an int all the same, so only a later misfit (a byte too many) makes it
    # fail; the message then names the first field that does not fit, not just the trailing byte.
    good = _good_bytes()
    at = good.index(b"\x06o-1\x02") + 4
    too_big = good[:at] + bytes([0x80, 0x80, 0x80, 0x80, 0x40]) + good[at + 1 :] + b"\x00"
    expected = r"^1 trailing bytes after the OrderPlaced v1 body, first misfit at envelope\.seq: 8589934592 does not fit an Avro int$"
    with pytest.raises(CodecError, match=expected):
        CODEC.decode(too_big)


def test_encode_refuses_an_envelope_naming_another_schema_version() -> None:
    """Scenario: schemaVersion 7 where only v1..v3 exist. We expect EncodeError, not bytes whose header contradicts their envelope."""
    event = _good_event()
    event["envelope"]["schemaVersion"] = 7
    with pytest.raises(EncodeError, match=r"OrderPlaced has schema versions \[1, 2, 3\], but envelope.schemaVersion is 7"):
        CODEC.encode(event)


def test_wrong_magic_raises_bad_magic() -> None:
    data = _good_bytes()
    with pytest.raises(BadMagicError):
        CODEC.decode(b"\x07\x01" + data[2:])
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
