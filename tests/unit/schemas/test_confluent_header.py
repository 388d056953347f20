"""The Confluent wire-format header: magic byte 0, then the schema id as 4 big-endian bytes. No registry needed."""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry.common.serde import SchemaId
from hypothesis import given
from hypothesis import strategies as st

from schemas.confluent import CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, confluent_schema_id
from schemas.errors import BadMagicError, CodecError, TruncatedEventError


def test_constants() -> None:
    """Scenario: the public constants. We expect Confluent's: magic 0, and a 5-byte header."""
    assert CONFLUENT_MAGIC == 0
    assert CONFLUENT_HEADER_LEN == 5


@pytest.mark.parametrize(
    ("data", "schema_id"),
    [
        (b"\x00\x00\x00\x00\x01", 1),  # a header alone: an empty body is still a header
        (b"\x00\x00\x00\x00\x07\x02\x06abc", 7),  # the body is not read
        (b"\x00\x01\x02\x03\x04", 0x01020304),  # big-endian
        (b"\x00\x00\x00\x01\x00", 256),
        (b"\x00\xff\xff\xff\xff", 4294967295),  # unsigned, as confluent_kafka reads it
    ],
)
def test_schema_id(data: bytes, schema_id: int) -> None:
    """Scenario: well-formed headers. We expect the id the four bytes after the magic spell, big-endian."""
    assert confluent_schema_id(data) == schema_id


@given(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=16))
def test_reads_what_confluent_kafka_writes(schema_id: int, body: bytes) -> None:
    """Scenario: confluent_kafka frames an id (its SchemaId.id_to_bytes) before any body. We expect that id back."""
    header = SchemaId("AVRO", schema_id).id_to_bytes()
    assert len(header) == CONFLUENT_HEADER_LEN
    assert confluent_schema_id(header + body) == schema_id


@pytest.mark.parametrize("length", range(CONFLUENT_HEADER_LEN))
def test_truncated_header(length: int) -> None:
    """Scenario: 0 to 4 bytes. We expect TruncatedEventError (a CodecError: dead-lettered) naming the length."""
    with pytest.raises(TruncatedEventError, match=f"^{length} bytes is shorter than the 5-byte Confluent header$") as caught:
        confluent_schema_id(b"\x00\x00\x00\x00\x2a"[:length])
    assert isinstance(caught.value, CodecError)


@pytest.mark.parametrize("data", [b"\xc3\x01\x00\x00\x00\x00\x00\x00\x00\x00", b"\x01\x00\x00\x00\x07", b"\xff\xff\xff\xff\xff"])
def test_bad_magic(data: bytes) -> None:
    """Scenario: a single-object header (C3 01), Confluent's GUID framing (magic 1), garbage. We expect BadMagicError naming the byte."""
    with pytest.raises(BadMagicError, match=f"bad magic {data[0]:02x}, expected 00"):
        confluent_schema_id(data)
