"""Confluent framing against a real local registry (Apicurio, started by `rewind registry up`): no Kafka needed.

Each test makes its own ConfluentSchemas, so an id is resolved through the registry, not
through the cache of the instance that registered it.
"""

from __future__ import annotations

import copy
import io
import json
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import schemaless_reader, schemaless_writer

from schemas.codec import EventCodec
from schemas.compat import SchemaVersion, load_versions
from schemas.confluent import CONFLUENT_HEADER_LEN, ConfluentSchemas, confluent_schema_id
from schemas.errors import ConfigError, RegistryUnavailableError, UnknownSchemaError
from schemas.registry import EVENT_TYPES, EventSchema, load_registry
from schemas.registry_client import subject_name
from scripts.workload import WorkloadConfig, generate
from tests.integration.registry_support import RegistryCli, avro_record, running_registry

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("REWIND_TEST_CONFLUENT_REGISTRY_PORT", "18381"))
TIMEOUT_S = 1.0
CTX = SerializationContext("orders", MessageField.VALUE)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryCli]:
    """A registry of this module's own (port 18381, fresh database), global level BACKWARD_TRANSITIVE; stopped at the end."""
    with running_registry(tmp_path_factory.mktemp("confluent-registry") / "registry", PORT) as cli:
        yield cli


@pytest.fixture(scope="module")
def client(registry: RegistryCli) -> SchemaRegistryClient:
    """confluent_kafka's own client, for the serializers and for looking at what the registry holds."""
    return SchemaRegistryClient({"url": registry.url, "timeout": 10})


def _version_of(schema: EventSchema) -> SchemaVersion:
    return next(v for v in load_versions()[schema.event_type] if v.version == schema.version)


def _subject(schema: EventSchema) -> str:
    versions = load_versions()[schema.event_type]
    return subject_name(_version_of(schema), versions)


def _samples() -> dict[str, dict[str, Any]]:
    """One decoded workload event per event type (the versions the workload writes today)."""
    codec = EventCodec()
    samples: dict[str, dict[str, Any]] = {}
    for record in generate(WorkloadConfig(seed=1, orders=500)).good():
        event = codec.decode(record.value)
        samples.setdefault(event["envelope"]["eventType"], event)
    assert set(samples) == set(EVENT_TYPES), "the workload no longer emits every type: pick another seed"
    return samples


def _logical(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as a reader that applies the schema's logical types sees it (a datetime and a UUID in the envelope)."""
    out = copy.deepcopy(event)
    envelope = out["envelope"]
    envelope["occurredAt"] = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=envelope["occurredAt"])
    envelope["eventId"] = uuid.UUID(envelope["eventId"])
    return out


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_schema_registers_and_maps_back(registry: RegistryCli, client: SchemaRegistryClient) -> None:
    """Scenario: header_for each of this build's schemas (oldest version first), then schema_for its id from another instance.

    We expect a 5-byte header starting 00 whose id the registry holds under the schema's subject (the full writer
    schema text, one version however often it is asked), and that id mapping back to the same EventSchema.
    """
    local = load_registry()
    writer, reader = ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S), ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S)
    ids = set()
    for schema in sorted(local.all(), key=lambda s: (s.event_type, s.version)):
        header = writer.header_for(schema)
        assert len(header) == CONFLUENT_HEADER_LEN and header[0] == 0
        schema_id = confluent_schema_id(header)
        assert writer.header_for(schema) == header
        assert ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S).header_for(schema) == header  # found, not registered again
        assert reader.schema_for(schema_id) is schema
        subject = _subject(schema)
        held = SchemaRegistryClient({"url": registry.url}).lookup_schema(subject, Schema(_version_of(schema).schema_str(), "AVRO"))
        assert held.schema_id == schema_id
        assert subject.startswith(f"rewind.orders.{schema.event_type}")
        ids.add(schema_id)
    assert len(ids) == len(local.all())
    per_subject = Counter(_subject(s) for s in local.all())
    assert {subject: len(client.get_versions(subject)) for subject in per_subject} == per_subject


def test_avro_serializer_bytes_decode_with_schema_for(registry: RegistryCli, client: SchemaRegistryClient) -> None:
    """Scenario: confluent_kafka's AvroSerializer (full writer schema, auto-register, our subject) writes one event per type.

    We expect our header parse + schema_for + fastavro's schemaless_reader to give back the event, and the body to be
    byte for byte the one our single-object codec writes after its own header.
    """
    local, codec = load_registry(), EventCodec()
    schemas = ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S)
    for event_type, event in _samples().items():
        schema = local.get(event_type, event["envelope"]["schemaVersion"])
        subject = _subject(schema)
        serializer = AvroSerializer(client, _version_of(schema).schema_str(),
                                    conf={"auto.register.schemas": True, "subject.name.strategy": lambda _ctx, _name, s=subject: s})
        data = serializer(event, CTX)
        assert schemas.schema_for(confluent_schema_id(data)) is schema
        body = io.BytesIO(data[CONFLUENT_HEADER_LEN:])
        assert schemaless_reader(body, schema.parsed, None) == event
        assert body.tell() == len(data) - CONFLUENT_HEADER_LEN
        assert data[CONFLUENT_HEADER_LEN:] == codec.encode(event)[10:]  # 10: the single-object header


def test_our_framing_decodes_with_avro_deserializer(registry: RegistryCli, client: SchemaRegistryClient) -> None:
    """Scenario: header_for + fastavro's schemaless_writer frame one event per type.

    We expect confluent_kafka's AvroDeserializer (writer schema fetched by id, no reader schema) to decode each to the
    same event, with the envelope's logical types applied (occurredAt a UTC datetime, eventId a UUID).
    """
    local = load_registry()
    schemas = ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S)
    deserializer = AvroDeserializer(client)
    for event_type, event in _samples().items():
        schema = local.get(event_type, event["envelope"]["schemaVersion"])
        buf = io.BytesIO()
        buf.write(schemas.header_for(schema))
        schemaless_writer(buf, schema.parsed, event)
        assert deserializer(buf.getvalue(), CTX) == _logical(event)


def test_unknown_id(registry: RegistryCli) -> None:
    """Scenario: an id the registry never issued, asked twice. We expect UnknownSchemaError naming the id both times."""
    schemas = ConfluentSchemas(registry.url, load_registry(), timeout_s=TIMEOUT_S)
    unknown = 2**31 - 7
    for _ in range(2):
        with pytest.raises(UnknownSchemaError, match=f"schema id {unknown} is not known to the schema registry {registry.url}$"):
            schemas.schema_for(unknown)


def test_foreign_schemas(registry: RegistryCli, client: SchemaRegistryClient) -> None:
    """Scenario: two schemas registered that are none of this build's: a t.Probe record, and an OrderPlaced with a field more.

    We expect UnknownSchemaError naming the id, the record, the subject it is registered under and, for the
    OrderPlaced, the versions this build has.
    """
    local = load_registry()
    probe_subject, placed_subject = f"t{uuid.uuid4().hex[:8]}.Probe", f"t{uuid.uuid4().hex[:8]}.OrderPlaced"
    probe_id = client.register_schema(probe_subject, avro_record({"name": "n", "type": "long"}))
    placed = copy.deepcopy(load_versions()["OrderPlaced"][-1].writer_schema)
    placed["fields"].append({"name": "giftWrap", "type": "boolean", "default": False})
    placed_id = client.register_schema(placed_subject, Schema(json.dumps(placed), "AVRO"))
    schemas = ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S)

    with pytest.raises(UnknownSchemaError, match=f"^schema id {probe_id} ") as caught:
        schemas.schema_for(probe_id)
    assert "(t.Probe, fingerprint " in str(caught.value) and f"registered as {probe_subject} v1" in str(caught.value)
    assert "is not one of this build's schemas" in str(caught.value)

    with pytest.raises(UnknownSchemaError, match=f"^schema id {placed_id} ") as caught:
        schemas.schema_for(placed_id)
    ours = ", ".join(f"v{v}" for v in sorted(s.version for s in local.all() if s.event_type == "OrderPlaced"))
    assert "(rewind.orders.OrderPlaced, fingerprint " in str(caught.value) and f"registered as {placed_subject} v1" in str(caught.value)
    assert f"this build has OrderPlaced {ours}" in str(caught.value)


def test_incompatible_subject_is_a_config_error(registry: RegistryCli, client: SchemaRegistryClient) -> None:
    """Scenario: RefundIssued's subject holds only an incompatible schema (ours soft-deleted first), then that one is soft-deleted.

    We expect header_for to raise ConfigError naming the subject while the incompatible schema is there, and once
    it is gone to register ours again and return the id it had before (content ids are stable).
    """
    local = load_registry()
    schema = local.get("RefundIssued")
    subject = _subject(schema)
    before = confluent_schema_id(ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S).header_for(schema))
    client.delete_subject(subject)  # soft: ids stay readable, versions leave the compatibility check
    client.register_schema(subject, avro_record({"name": "n", "type": "long"}))
    try:
        with pytest.raises(ConfigError, match=f"RefundIssued v{schema.version} is incompatible with the versions registered there \\(subject {subject}\\)"):
            ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S).header_for(schema)
    finally:
        client.delete_subject(subject)
    assert confluent_schema_id(ConfluentSchemas(registry.url, local, timeout_s=TIMEOUT_S).header_for(schema)) == before


@pytest.mark.parametrize("how", ["closed port", "silent listener"])
def test_registry_down_is_bounded(how: str) -> None:
    """Scenario: the registry URL is a closed loopback port, or a socket that accepts connections and never answers.

    We expect RegistryUnavailableError, one line naming the URL, from schema_for and header_for, each within 3x timeout_s.
    """
    with socket.socket() as listener:
        if how == "silent listener":
            listener.bind(("127.0.0.1", 0))
            listener.listen()  # the kernel completes the handshake; nobody ever reads or answers
            port = int(listener.getsockname()[1])
        else:
            port = _closed_port()
        url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
        local = load_registry()
        calls = {"schema_for": lambda s: s.schema_for(1), "header_for": lambda s: s.header_for(local.get("OrderPlaced"))}
        for name, call in calls.items():
            schemas = ConfluentSchemas(url, local, timeout_s=TIMEOUT_S)
            started = time.monotonic()
            with pytest.raises(RegistryUnavailableError) as caught:
                call(schemas)
            elapsed = time.monotonic() - started
            assert elapsed < 3 * TIMEOUT_S, f"{name} took {elapsed:.1f}s"
            message = str(caught.value)
            assert message.startswith(f"schema registry {url} unreachable (") and "\n" not in message, message


def test_a_url_that_is_not_the_ccompat_api(registry: RegistryCli) -> None:
    """Scenario: the registry's base URL without /apis/ccompat/v7 (it answers 404 with no registry error code).

    We expect RegistryUnavailableError pointing at the URL, not UnknownSchemaError: a wrong setting must not dead-letter
    every record as an unknown schema.
    """
    base = registry.url.removesuffix("/apis/ccompat/v7")
    with pytest.raises(RegistryUnavailableError, match="answered 404 \\(is it the Confluent-compatible API"):
        ConfluentSchemas(base, load_registry(), timeout_s=TIMEOUT_S).schema_for(1)
