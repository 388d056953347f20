"""Avro single-object encoding of order events.

Framing (Avro spec, "Single object encoding"): two marker bytes ``C3 01``, the
8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form, then the Avro binary body. The writer schema is the full one,
the Envelope written out inline (see :mod:`schemas.registry`), so these are
the bytes Apache Avro's ``BinaryMessageEncoder`` writes for the same schema and
event, and any spec-conforming decoder reads ours. The fingerprint finds the
writer schema without any server.

A body that does not fit the schema its fingerprint names (cut short, written
with another schema, corrupted) raises a :class:`CodecError` whose message
names the first field that does not fit, e.g. ``corrupt OrderPlaced v1 body at
items[0].sku: invalid UTF-8 (...)``: the live pipeline dead-letters it with that reason.

Events are plain dicts shaped like their Avro record: ``event["envelope"]``
holds eventId, eventType, schemaVersion, orderId, seq, occurredAt (epoch
millis, int), correlationId, causationId; the other keys are the payload.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any, Protocol, cast

from fastavro import schemaless_reader, schemaless_writer

from schemas.errors import BadMagicError, CodecError, EncodeError, TruncatedEventError, UnknownSchemaError
from schemas.registry import EventSchema, SchemaRegistry, load_registry
from schemas.upcast import UpcastChains

__all__ = ["EventCodec", "SchemaIds", "MAGIC", "HEADER_LEN", "CONFLUENT_MAGIC", "CONFLUENT_HEADER_LEN", "Event", "confluent_schema_id", "confluent_header"]

MAGIC = b"\xc3\x01"
HEADER_LEN = 10  # 2 marker bytes + 8 fingerprint bytes
CONFLUENT_MAGIC = 0  # Confluent wire format: one zero byte, then the schema id as 4 big-endian bytes
CONFLUENT_HEADER_LEN = 5
#: Unsigned, as confluent_kafka reads it; registries hand out positive ids only.
_CONFLUENT_HEADER = struct.Struct(">BI")


def confluent_schema_id(data: bytes) -> int:
    """The schema id in the Confluent header that starts ``data`` (the body may be empty).

    The one reader of that header: the codec, the fast decoder and the registry client call it.
    Raises :class:`TruncatedEventError` for fewer than :data:`CONFLUENT_HEADER_LEN` bytes and
    :class:`BadMagicError` when the first byte is not :data:`CONFLUENT_MAGIC`.
    """
    if len(data) < CONFLUENT_HEADER_LEN:
        raise TruncatedEventError(f"{len(data)} bytes is shorter than the {CONFLUENT_HEADER_LEN}-byte Confluent header")
    magic, schema_id = _CONFLUENT_HEADER.unpack_from(data)
    if magic != CONFLUENT_MAGIC:
        raise BadMagicError(f"bad magic {magic:02x}, expected {CONFLUENT_MAGIC:02x} (Confluent framing)")
    return int(schema_id)


def confluent_header(schema_id: int) -> bytes:
    """The 5-byte Confluent header naming ``schema_id`` (0 <= schema_id < 2**32; struct.error outside)."""
    return _CONFLUENT_HEADER.pack(CONFLUENT_MAGIC, schema_id)

Event = dict[str, Any]


class SchemaIds(Protocol):
    """Confluent schema ids to this build's schemas (a registry client, :class:`schemas.confluent.ConfluentSchemas`)."""

    def schema_for(self, schema_id: int) -> EventSchema:
        """The schema of ``schema_id``; UnknownSchemaError (naming the id) or RegistryUnavailableError."""
        ...


class EventCodec:
    """Encodes events to single-object bytes and back; stateless apart from the registry.

    ``decode`` reads both framings (single-object ``C3 01``, and Confluent's ``00`` + schema
    id when ``schema_ids`` is given) and returns the event in the newest shape of its type
    (:mod:`schemas.upcast`); ``decode_written`` returns it as written, with its writer schema.
    """

    def __init__(self, registry: SchemaRegistry | None = None, *, schema_ids: SchemaIds | None = None) -> None:
        self._registry = registry or load_registry()
        # Per-(type, version) writer state, resolved once: the header and the parsed schema.
        self._writers = {(s.event_type, s.version): (MAGIC + s.fingerprint, s.parsed) for s in self._registry.all()}
        self._readers = {s.fingerprint: s for s in self._registry.all()}
        self._schema_ids = schema_ids
        self.upcasts = UpcastChains(self._registry)

    @property
    def registry(self) -> SchemaRegistry:
        """The schemas this codec reads and writes."""
        return self._registry

    @property
    def schema_ids(self) -> SchemaIds | None:
        """Where Confluent schema ids are looked up; None: Confluent-framed records are refused."""
        return self._schema_ids

    def encode(self, event: Event) -> bytes:
        """Single-object bytes of ``event`` with the schema its envelope names (eventType, schemaVersion).

        Raises :class:`EncodeError` if the type or the version is unknown or the event does not fit the schema.
        """
        try:
            env = event["envelope"]
            event_type, version = env["eventType"], env.get("schemaVersion")
        except (KeyError, TypeError) as exc:
            raise EncodeError(f"cannot encode event without a known envelope.eventType: {exc!r}") from exc
        writer = self._writers.get((event_type, version))
        if writer is None:
            known = [s.version for s in self._registry.versions(event_type)]
            if not known:
                raise EncodeError(f"cannot encode event without a known envelope.eventType: {event_type!r}")
            # The header names the writer schema; an envelope naming another version would contradict it.
            raise EncodeError(f"{event_type} has schema versions {known}, but envelope.schemaVersion is {version!r}")
        header, schema = writer
        buf = BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, schema, event)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{event_type} v{version} does not match its schema: {exc}") from exc
        return buf.getvalue()

    def writer_schema(self, data: bytes) -> tuple[EventSchema, int]:
        """The writer schema ``data``'s header names, and where its body starts.

        Raises :class:`BadMagicError` (neither framing), :class:`TruncatedEventError` (a short
        header), :class:`UnknownSchemaError` (a fingerprint or schema id this build does not
        know; a Confluent id when no registry is configured); the registry lookup may raise
        :class:`~schemas.errors.RegistryUnavailableError`.
        """
        if data is not None and len(data) >= 1 and data[0] == CONFLUENT_MAGIC:
            schema_id = confluent_schema_id(data)
            if self._schema_ids is None:
                raise UnknownSchemaError(
                    f"Confluent-framed record with schema id {schema_id}, but no schema registry is configured (REWIND_SCHEMA_REGISTRY_URL)"
                )
            return self._schema_ids.schema_for(schema_id), CONFLUENT_HEADER_LEN
        if data is None or len(data) < HEADER_LEN:
            if data is not None and len(data) >= 2 and data[:2] != MAGIC:
                raise BadMagicError(f"bad magic {bytes(data[:2]).hex()}, expected c301 (or 00 + a Confluent schema id)")
            raise TruncatedEventError(f"{0 if data is None else len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
        if data[:2] != MAGIC:
            raise BadMagicError(f"bad magic {bytes(data[:2]).hex()}, expected c301 (or 00 + a Confluent schema id)")
        schema = self._readers.get(bytes(data[2:HEADER_LEN]))
        if schema is None:
            raise UnknownSchemaError(f"unknown schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}")
        return schema, HEADER_LEN

    def decode(self, data: bytes) -> Event:
        """The event in ``data``, in the newest shape of its type (``envelope.schemaVersion`` = the newest version).

        Raises what :meth:`decode_written` raises, and :class:`~schemas.errors.UpcastError`
        when an upcaster refuses the event (the message names the field).
        """
        schema, event = self.decode_written(data)
        chain = self.upcasts.chain(schema.fingerprint)
        return event if chain is None else chain(event)

    def decode_written(self, data: bytes) -> tuple[EventSchema, Event]:
        """The writer schema and the event exactly as written (no upcasting), from either framing.

        Raises :class:`BadMagicError`, :class:`TruncatedEventError`,
        :class:`UnknownSchemaError`, or :class:`CodecError` for a body that does not fit the schema
        its header names: corrupt, too long, or with an ``envelope.eventType``/``schemaVersion``
        other than that schema's (a body of a type with the same shape decodes, but is refused).
        """
        schema, start = self.writer_schema(data)
        body = BytesIO(data)
        body.seek(start)
        try:
            event = schemaless_reader(body, schema.parsed, None)
        except (EOFError, IndexError) as exc:
            # fastavro reports a body that ends early as EOFError or, for a cut string, IndexError.
            misfit = _misfit(schema, data, start)
            raise TruncatedEventError(f"{_name(schema)} body ends early" + (f" at {misfit}" if misfit else f": {exc}")) from exc
        except Exception as exc:  # fastavro raises many types on garbage; all mean "corrupt"
            misfit = _misfit(schema, data, start)
            raise CodecError(f"corrupt {_name(schema)} body" + (f" at {misfit}" if misfit else f": {type(exc).__name__}: {exc}")) from exc
        if body.tell() != len(data):
            misfit = _misfit(schema, data, start)
            raise CodecError(
                f"{len(data) - body.tell()} trailing bytes after the {_name(schema)} body"
                + (f", first misfit at {misfit}" if misfit else f": longer than the schema of fingerprint {schema.fingerprint.hex()} (written with another)")
            )
        record = cast(dict[str, Any], event)  # every Rewind event schema is an Avro record: it decodes to a dict
        envelope = record["envelope"]  # ... and has an envelope
        if envelope["eventType"] != schema.event_type or envelope["schemaVersion"] != schema.version:
            # The body fits the schema's shape (several types share one), but it is another event.
            raise CodecError(
                f"{_name(schema)} body (fingerprint {schema.fingerprint.hex()}) carries envelope.eventType "
                f"{envelope['eventType']!r} v{envelope['schemaVersion']}: written with another schema"
            )
        return schema, record


def _name(schema: EventSchema) -> str:
    return f"{schema.event_type} v{schema.version}"


class _Misfit(Exception):
    """Where a body stops fitting its schema: ``path`` names the field, the message says why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or '<record>'}: {problem}")


class _BodyWalker:
    """Reads a body along its schema as the Avro spec defines it, strictly, only to explain an error.

    Stricter than fastavro, which accepts an ``int`` beyond 32 bits and a varint beyond 10 bytes,
    so it names the first field that does not fit even when fastavro only notices later (or at
    the end, as trailing bytes). Never on the success path: it costs about as much as decoding.
    """

    def __init__(self, data: bytes, named: dict[str, Any], start: int) -> None:
        self._b, self._i, self._named = data, start, named

    def _take(self, path: str, n: int, what: str) -> bytes:
        if self._i + n > len(self._b):
            raise _Misfit(path, f"ends inside {what}" + (f" ({n} bytes needed, {len(self._b) - self._i} left)" if n > 1 else ""))
        self._i += n
        return self._b[self._i - n : self._i]

    def _long(self, path: str, bits: int = 64) -> int:
        acc = shift = 0
        while True:
            (c,) = self._take(path, 1, "a varint")
            acc |= (c & 0x7F) << shift
            if c < 0x80:
                break
            shift += 7
            if shift >= bits + 7:
                raise _Misfit(path, f"varint longer than an Avro {'int' if bits == 32 else 'long'} ({shift // 7 + 1}+ bytes)")
        value = (acc >> 1) ^ -(acc & 1)
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise _Misfit(path, f"{value} does not fit an Avro {'int' if bits == 32 else 'long'}")
        return value

    def _count(self, path: str, what: str) -> int:
        n = self._long(path)
        if n < 0:
            raise _Misfit(path, f"negative {what} {n}")
        return n

    def walk(self, schema: Any, path: str) -> None:
        schema = self._named.get(schema, schema) if isinstance(schema, str) else schema
        kind = schema if isinstance(schema, str) else schema.get("type") if isinstance(schema, dict) else "union"
        if kind == "null":
            return
        if kind == "boolean":
            if self._take(path, 1, "a boolean")[0] > 1:
                raise _Misfit(path, "boolean byte is neither 0 nor 1")
        elif kind in ("int", "long"):
            self._long(path, 32 if kind == "int" else 64)
        elif kind in ("float", "double"):
            self._take(path, 4 if kind == "float" else 8, f"a {kind}")
        elif kind in ("bytes", "string"):
            raw = self._take(path, self._count(path, f"{kind} length"), f"a {kind}")
            if kind == "string":
                try:
                    raw.decode()
                except UnicodeDecodeError as exc:
                    raise _Misfit(path, f"invalid UTF-8 ({exc.reason} at byte {exc.start} of {len(raw)})") from exc
        elif kind in ("record", "error"):
            for field in schema["fields"]:
                self.walk(field["type"], f"{path}.{field['name']}" if path else field["name"])
        elif kind == "enum":
            index = self._long(path, 32)
            if not 0 <= index < len(schema["symbols"]):
                raise _Misfit(path, f"enum index {index} outside 0..{len(schema['symbols']) - 1}")
        elif kind == "fixed":
            self._take(path, schema["size"], f"a fixed of {schema['size']} bytes")
        elif kind in ("array", "map"):
            self._blocks(schema, kind, path)
        elif kind == "union":
            index = self._long(path)
            if not 0 <= index < len(schema):
                raise _Misfit(path, f"union branch {index} outside 0..{len(schema) - 1}")
            self.walk(schema[index], path)

    def _blocks(self, schema: Any, kind: str, path: str) -> None:
        seen = 0
        while (n := self._long(path)) != 0:
            if n < 0:
                n = -n
                self._count(path, "block size")
            for _ in range(n):
                if kind == "map":
                    key = self._take(path, self._count(path, "key length"), "a map key").decode(errors="replace")
                    self.walk(schema["values"], f"{path}[{key!r}]")
                else:
                    self.walk(schema["items"], f"{path}[{seen}]")
                seen += 1

    def misfit(self, schema: Any) -> str | None:
        """The first field of the body that does not fit ``schema``, as "path: problem", or None."""
        try:
            self.walk(schema, "")
        except _Misfit as exc:
            return str(exc)
        except (KeyError, TypeError, IndexError):  # a schema shape this walker does not know: no explanation
            return None
        return None


def _misfit(schema: EventSchema, data: bytes, start: int) -> str | None:
    """``<field path>: <problem>`` for an error message (the body starts at ``data[start]``), or None when the walk finds no misfit."""
    return _BodyWalker(bytes(data), dict(schema.parsed.get("__named_schemas", {})), start).misfit(schema.parsed)
