"""Avro single-object encoding of order events.

Framing (Avro spec, "Single object encoding"): two marker bytes ``C3 01``, the
8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form, then the Avro binary body. The fingerprint finds the writer
schema without any server.

Events are plain dicts shaped like their Avro record: ``event["envelope"]``
holds eventId, eventType, schemaVersion, orderId, seq, occurredAt (epoch
millis, int), correlationId, causationId; the other keys are the payload.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer

from schemas.errors import BadMagicError, CodecError, EncodeError, TruncatedEventError, UnknownSchemaError
from schemas.registry import SchemaRegistry, load_registry

__all__ = ["EventCodec", "MAGIC", "HEADER_LEN", "Event"]

MAGIC = b"\xc3\x01"
HEADER_LEN = 10  # 2 marker bytes + 8 fingerprint bytes

Event = dict[str, Any]


class EventCodec:
    """Encodes events to single-object bytes and back; stateless apart from the registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self._registry = registry or load_registry()
        # Per-type writer state, resolved once: the header and the parsed schema.
        self._writers = {
            s.event_type: (MAGIC + s.fingerprint, s.parsed) for s in self._registry.latest()
        }
        self._readers = {s.fingerprint: s for s in self._registry.all()}

    @property
    def registry(self) -> SchemaRegistry:
        """The schemas this codec reads and writes."""
        return self._registry

    def encode(self, event: Event) -> bytes:
        """Encode ``event`` with the latest schema of its ``envelope.eventType``.

        Raises :class:`EncodeError` if the type is unknown or the event does not fit the schema.
        """
        try:
            event_type = event["envelope"]["eventType"]
            header, schema = self._writers[event_type]
        except (KeyError, TypeError) as exc:
            raise EncodeError(f"cannot encode event without a known envelope.eventType: {exc!r}") from exc
        buf = BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, schema, event)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{event_type} does not match its schema: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> Event:
        """Decode single-object bytes into an event dict.

        Raises :class:`BadMagicError`, :class:`TruncatedEventError`,
        :class:`UnknownSchemaError`, or :class:`CodecError` for a corrupt body.
        """
        if data is None or len(data) < HEADER_LEN:
            if data is not None and len(data) >= 2 and data[:2] != MAGIC:
                raise BadMagicError(f"bad magic {bytes(data[:2]).hex()}, expected c301")
            raise TruncatedEventError(f"{0 if data is None else len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
        if data[:2] != MAGIC:
            raise BadMagicError(f"bad magic {bytes(data[:2]).hex()}, expected c301")
        schema = self._readers.get(bytes(data[2:HEADER_LEN]))
        if schema is None:
            raise UnknownSchemaError(f"unknown schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}")
        body = BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            event = schemaless_reader(body, schema.parsed, None)
        except (EOFError, IndexError) as exc:
            # fastavro reports a body that ends early as EOFError or, for a cut string, IndexError.
            raise TruncatedEventError(f"{schema.event_type} body ends early: {exc}") from exc
        except Exception as exc:  # fastavro raises many types on garbage; all mean "corrupt"
            raise CodecError(f"corrupt {schema.event_type} body: {type(exc).__name__}: {exc}") from exc
        if body.tell() != len(data):
            raise CodecError(f"{len(data) - body.tell()} trailing bytes after the {schema.event_type} body")
        return cast(dict[str, Any], event)  # every Rewind event schema is an Avro record: it decodes to a dict
