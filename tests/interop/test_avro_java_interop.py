"""Rewind's single-object bytes against Apache Avro's Java library (BinaryMessageEncoder/BinaryMessageDecoder), both ways.

The Java side parses the .avsc files itself and knows nothing of Rewind's Python code: same
schema fingerprints and canonical forms, byte-identical encodings of the same events, and each
side decodes the other's bytes to the same event. The jars come from Maven Central on the first
run and are cached under .run/avro-java (tests/interop/avro_java.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas import EVENT_TYPES, CodecError, EventCodec
from schemas.fast_decode import FastDecoder
from schemas.registry import SCHEMA_DIR, load_registry
from scripts.workload import WorkloadConfig, generate
from scripts.workload.encoding import FastEncoder
from tests.interop.avro_java import AVRO_VERSION, AvroJavaError, fetch_jars, run_tool

pytestmark = pytest.mark.interop

CODEC = EventCodec()
FAST_DECODER = FastDecoder(CODEC)
FAST_ENCODER = FastEncoder(CODEC)


def _edge_value(schema: Any, named: dict[str, Any], flavour: int, depth: int = 0) -> Any:
    """A value of ``schema`` at the edges of its type: extreme numbers, long and non-ASCII strings, empty and multi-block arrays."""
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "string":
        return ["", "é✓ 𝄞 ünïcode-" + "x" * 80, "ascii"][(flavour + depth) % 3]
    if kind == "int":
        return [-(2**31), 2**31 - 1, 0, 63, 64][(flavour + depth) % 5]
    if kind == "long":
        return [-(2**63), 2**63 - 1, 1_700_000_123_456, -1][(flavour + depth) % 4]
    if kind == "record":
        return {f["name"]: _edge_value(f["type"], named, flavour, depth + 1) for f in schema["fields"]}
    if kind == "array":
        return [_edge_value(schema["items"], named, flavour + i, depth + 1) for i in range([0, 1, 70][flavour % 3])]
    raise AssertionError(f"no edge values for {kind!r}")


SCHEMAS = sorted(load_registry().all(), key=lambda s: (s.event_type, s.version))


def _java_name(event: dict[str, Any]) -> str:
    """The Java tool's key of the schema an event is written with: ``<Type>.v<N>`` (its .avsc file)."""
    return f"{event['envelope']['eventType']}.v{event['envelope']['schemaVersion']}"


def _events() -> list[dict[str, Any]]:
    """Per schema version: three workload events (as written) and three edge-case events."""
    events: list[dict[str, Any]] = []
    mixed = generate(WorkloadConfig(seed=11, orders=600, days=7, old_version_rate=0.6)).records
    workload = [CODEC.decode_written(r.value)[1] for r in mixed]
    for schema in SCHEMAS:
        events += [e for e in workload if (e["envelope"]["eventType"], e["envelope"]["schemaVersion"]) == (schema.event_type, schema.version)][:3]
        named = dict(schema.parsed.get("__named_schemas", {}))
        for flavour in range(3):
            event = _edge_value(schema.parsed, named, flavour)
            event["envelope"] |= {"eventType": schema.event_type, "schemaVersion": schema.version}
            events.append(event)
    return events


EVENTS = _events()


@pytest.fixture(scope="module")
def java() -> dict[str, list[dict[str, Any]]]:
    """Apache Avro (Java)'s answers: schema facts per type, its encodings of EVENTS, its decodings of our bytes."""
    try:
        jars = fetch_jars()
        schema_requests = [{"op": "schema", "type": f"{s.event_type}.v{s.version}"} for s in SCHEMAS]
        encode_requests = [{"op": "encode", "type": _java_name(e), "event": e} for e in EVENTS]
        decode_requests = [{"op": "decode", "type": _java_name(e), "hex": CODEC.encode(e).hex()} for e in EVENTS]
        # Our bytes with one fingerprint bit flipped: Java must refuse them, or the decode checks would prove nothing.
        flipped = bytearray(CODEC.encode(EVENTS[0]))
        flipped[9] ^= 0x01
        refused_requests = [{"op": "decode", "type": _java_name(EVENTS[0]), "hex": flipped.hex()}]
        answers = run_tool(SCHEMA_DIR, schema_requests + encode_requests + decode_requests + refused_requests, jars=jars)
    except AvroJavaError as exc:
        pytest.fail(f"Apache Avro {AVRO_VERSION} (Java) could not run: {exc}")
    n, m = len(schema_requests), len(EVENTS)
    return {"schema": answers[:n], "encode": answers[n : n + m], "decode": answers[n + m : n + 2 * m], "refused": answers[n + 2 * m :]}


def test_every_type_is_exercised() -> None:
    """Scenario: the events sent to Java. We expect all nine types in every version, workload and edge cases alike."""
    assert {e["envelope"]["eventType"] for e in EVENTS} == set(EVENT_TYPES)
    assert {_java_name(e) for e in EVENTS} == {f"{s.event_type}.v{s.version}" for s in SCHEMAS}
    assert len(EVENTS) == 6 * len(SCHEMAS)


def test_java_computes_our_canonical_forms_and_fingerprints(java: dict[str, list[dict[str, Any]]]) -> None:
    """Scenario: Java parses each .avsc (after Envelope's). We expect our Parsing Canonical Form and fingerprint, for every version of all nine types."""
    for schema, answer in zip(SCHEMAS, java["schema"], strict=True):
        assert answer["ok"], answer
        assert answer["canonical"] == schema.canonical_form, (schema.event_type, schema.version)
        assert answer["fingerprint"] == schema.fingerprint.hex(), (schema.event_type, schema.version)


def test_java_encoder_writes_our_bytes(java: dict[str, list[dict[str, Any]]]) -> None:
    """Scenario: Java's BinaryMessageEncoder encodes each event. We expect exactly the codec's and the fast encoder's bytes."""
    for event, answer in zip(EVENTS, java["encode"], strict=True):
        assert answer["ok"], (answer, event)
        ours = CODEC.encode(event)
        assert answer["hex"] == ours.hex(), event
        assert FAST_ENCODER.encode(event) == ours


def test_we_decode_javas_bytes(java: dict[str, list[dict[str, Any]]]) -> None:
    """Scenario: Java's single-object bytes. We expect the codec to read back the event Java was given, and the fast
    decoder to agree with the codec (both upcast an old version to the newest shape)."""
    for event, answer in zip(EVENTS, java["encode"], strict=True):
        data = bytes.fromhex(answer["hex"])
        assert CODEC.decode_written(data)[1] == event
        assert _outcome(FAST_DECODER.decode, data) == _outcome(CODEC.decode, data)


def _outcome(decode: Any, data: bytes) -> Any:
    """The decoded event, or the error's type and message (an edge-case currency is refused by the v2 -> v3 upcaster)."""
    try:
        return decode(data)
    except CodecError as exc:
        return type(exc).__name__, str(exc)


def test_java_decoder_reads_our_bytes(java: dict[str, list[dict[str, Any]]]) -> None:
    """Scenario: Java's BinaryMessageDecoder reads the codec's bytes. We expect the event we encoded."""
    for event, answer in zip(EVENTS, java["decode"], strict=True):
        assert answer["ok"], (answer, event)
        assert answer["event"] == event


def test_java_decoder_checks_the_fingerprint(java: dict[str, list[dict[str, Any]]]) -> None:
    """Scenario: our bytes with one fingerprint bit flipped. We expect Java to refuse them (so the checks above mean something)."""
    (answer,) = java["refused"]
    assert not answer["ok"]
    assert "MissingSchemaException" in answer["error"]
