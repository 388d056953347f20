"""The schema fingerprint is the Avro specification's: CRC-64-AVRO of the full writer schema's Parsing Canonical Form."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas import EVENT_TYPES
from schemas.registry import SCHEMA_DIR, crc64_avro, full_writer_schema, load_registry, parsing_canonical_form

# Apache Avro's shared test data, share/test/data/schema-tests.txt (apache/avro, commit 0ea74a36),
# cases 000, 002, 004, 006, 012, 014, 018, 020, 021, 022, 025, 027, 028, 031, 032 and 033: the input
# schema, its Parsing Canonical Form and its fingerprint as Java's signed `SchemaNormalization.fingerprint64`.
# The file says the Java unit tests cross-check these values, "so other languages can just assume
# they are correct". (Case 026 is left out: its boolean field's default is the string "true", which
# fastavro's parser rightly refuses.)
SPEC_CASES: list[tuple[str, str, int]] = [
    ('"null"', '"null"', 7195948357588979594),
    ('"boolean"', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"bytes"', '"bytes"', 5746618253357095269),
    ('"string"', '"string"', -8142146995180207161),
    ('[ "int" , {"type":"boolean"} ]', '["int","boolean"]', 5392556393470105090),
    ('{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}', '{"name":"x.y.foo","type":"record","fields":[]}', 5916914534497305771),
    ('{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}', '{"name":"a.b.foo","type":"record","fields":[]}', -4616218487480524110),
    ('{"fields":[], "type":"record", "name":"foo", "doc":"Useful info"}', '{"name":"foo","type":"record","fields":[]}', -4824392279771201922),
    (
        '{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
        7843277075252814651,
    ),
    ('{"type":"enum", "name":"foo", "symbols":["A1"]}', '{"name":"foo","type":"enum","symbols":["A1"]}', -6342190197741309591),
    (
        '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    ('{ "items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}', -589620603366471059),
    ('{ "values":"string", "type":"map"}', '{"type":"map","values":"string"}', -8732877298790414990),
    (
        '{"name":"PigValue","type":"record","fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]

# The nine v1 event types as Apache Avro 1.12.1 (Java) fingerprints them, parsing the .avsc files
# itself (SchemaNormalization.parsingFingerprint("CRC-64-AVRO", schema), the bytes its
# BinaryMessageEncoder writes after C3 01); tests/interop checks this live against the Java library.
# OrderPlaced's value is also the one fastavro gives for the full schema (issue 11).
JAVA_FINGERPRINTS: dict[str, str] = {
    "OrderPlaced": "110a0d2c47d1587a",
    "PaymentAuthorized": "50b167a4f6b475f4",
    "PaymentFailed": "334ac98e963c6092",
    "InventoryReserved": "5021b74b5d61d32b",
    "InventoryReleased": "db1c68f8abe4ff2d",
    "OrderShipped": "4de8082d908ecbce",
    "OrderDelivered": "9ab23958ffb83cda",
    "OrderCancelled": "0fd31857ec2dfe54",
    "RefundIssued": "91d359a00f26477d",
}


@pytest.mark.parametrize(("schema", "canonical", "fingerprint64"), SPEC_CASES, ids=[c[1][:40] for c in SPEC_CASES])
def test_spec_test_values(schema: str, canonical: str, fingerprint64: int) -> None:
    """Scenario: the Avro project's own canonical-form and fingerprint cases. We expect the same form and number."""
    assert parsing_canonical_form(json.loads(schema)) == canonical
    fp = crc64_avro(canonical)
    assert fp == struct.pack("<q", fingerprint64)  # the header carries the 64-bit value little-endian
    assert struct.unpack("<q", fp)[0] == fingerprint64


def test_registry_fingerprints_are_java_avros() -> None:
    """Scenario: the shipped schemas. We expect the fingerprints Apache Avro's Java library computes for them."""
    registry = load_registry()
    assert {t: registry.get(t, 1).fingerprint.hex() for t in EVENT_TYPES} == JAVA_FINGERPRINTS


def _spliced_writer_schema(event_type: str) -> Any:
    """The full writer schema built by hand: the Envelope file's record pasted where the event names it."""
    envelope = json.loads((SCHEMA_DIR / "Envelope.v1.avsc").read_text())
    doc = json.loads((SCHEMA_DIR / f"{event_type}.v1.avsc").read_text())
    (field,) = [f for f in doc["fields"] if f["name"] == "envelope"]
    assert field["type"] == "rewind.orders.Envelope"
    field["type"] = envelope
    return doc


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_fastavro_on_the_full_schema_agrees(event_type: str) -> None:
    """Scenario: fastavro, the way its docs fingerprint a schema, given the full schema. We expect the registry's form and bytes."""
    canonical = to_parsing_canonical_form(parse_schema(_spliced_writer_schema(event_type)))
    schema = load_registry().get(event_type, 1)
    assert '"type":{"name":"rewind.orders.Envelope","type":"record","fields":[{"name":"eventId"' in canonical
    assert schema.canonical_form == canonical
    assert schema.fingerprint == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_a_named_type_is_written_out_once_then_named() -> None:
    """Scenario: a schema that uses an external type twice. We expect its definition at the first use, its name at the second."""
    external = {"a.Money": {"type": "record", "name": "Money", "namespace": "a", "fields": [{"name": "minor", "type": "long"}]}}
    doc = {
        "type": "record", "name": "Refund", "namespace": "b",
        "fields": [{"name": "paid", "type": "a.Money"}, {"name": "refunded", "type": {"type": "array", "items": "a.Money"}}],
    }
    assert parsing_canonical_form(full_writer_schema(doc, external)) == (
        '{"name":"b.Refund","type":"record","fields":[{"name":"paid","type":{"name":"a.Money","type":"record",'
        '"fields":[{"name":"minor","type":"long"}]}},{"name":"refunded","type":{"type":"array","items":"a.Money"}}]}'
    )
