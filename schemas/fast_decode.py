"""A fast reader of the codec's Avro single-object bytes, for the hot loops of replay and the live pipeline.

``EventCodec.decode`` costs ~5.5 µs per event, most of it fastavro's generic walk of
the schema dict (and a BytesIO per call); a replay spends more time decoding than
folding. This module generates, once per known schema, a straight-line Python
function that reads exactly that schema's fields (strings, ints, longs, nested
records, arrays of records), and so decodes in ~3.5 µs.

It can never disagree with the codec, by construction:

* a schema with any other type (union, map, enum, ...) gets no fast reader;
* a fast reader that meets anything unusual (a negative length, a varint longer
  than 64 bits, an int outside 32 bits, bytes left over, a short body, bad UTF-8,
  an ``envelope.eventType`` or ``schemaVersion`` other than its schema's)
  stops, and the record is decoded by ``EventCodec.decode``, which returns the
  event or raises the named :class:`CodecError` the live pipeline dead-letters with;
* at construction each fast reader is checked against the codec on a sample event
  of its schema, and dropped if the two differ (listed in ``fallback_fingerprints``).
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from schemas.codec import CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, HEADER_LEN, MAGIC, Event, EventCodec, confluent_schema_id

__all__ = ["FastDecoder", "event_decoder"]

_INT32 = (-(2**31), 2**31 - 1)


class _Unsure(Exception):
    """The fast reader met something it does not decide on; the codec decides."""


def _long(b: bytes, i: int) -> tuple[int, int]:
    """A zig-zag varint of any length up to 10 bytes starting at ``b[i]``; (value, next index)."""
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            value = (n >> 1) ^ -(n & 1)
            if not -(2**63) <= value < 2**63:
                raise _Unsure
            return value, i
        shift += 7
        if shift > 63:
            raise _Unsure


class _Unsupported(Exception):
    """The schema has a type the generator does not write a reader for."""


class _Generator:
    """Writes the source of one reader function: locals only, no call per field except long varints."""

    def __init__(self, named: dict[str, Any], expect: dict[str, object]) -> None:
        self._named = named
        self._expect = expect  # field path -> the only value the reader accepts there (else _Unsure)
        self._lines: list[str] = []
        self._n = 0

    def _var(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def _emit(self, depth: int, line: str) -> None:
        self._lines.append("    " * depth + line)

    def _read_long(self, depth: int, var: str, *, int32: bool) -> None:
        # One byte (small ints, lengths, counts) is the common case; a multi-byte varint
        # (timestamps, money) is decoded inline too: a function call per field costs ~10%.
        self._emit(depth, "c = b[i]")
        self._emit(depth, "i += 1")
        self._emit(depth, "if c < 128:")
        self._emit(depth + 1, f"{var} = (c >> 1) ^ -(c & 1)")
        self._emit(depth, "else:")
        self._emit(depth + 1, "acc = c & 127")
        self._emit(depth + 1, "shift = 7")
        self._emit(depth + 1, "while True:")
        self._emit(depth + 2, "c = b[i]")
        self._emit(depth + 2, "i += 1")
        self._emit(depth + 2, "acc |= (c & 127) << shift")
        self._emit(depth + 2, "if c < 128: break")
        self._emit(depth + 2, "shift += 7")
        self._emit(depth + 2, "if shift > 63: raise _Unsure")
        self._emit(depth + 1, f"{var} = (acc >> 1) ^ -(acc & 1)")
        low, high = _INT32 if int32 else (-(2**63), 2**63 - 1)
        self._emit(depth + 1, f"if not {low} <= {var} <= {high}: raise _Unsure")

    def _read_string(self, depth: int, var: str) -> None:
        self._emit(depth, "c = b[i]")
        self._emit(depth, "if c < 128:")
        self._emit(depth + 1, "if c & 1: raise _Unsure")
        self._emit(depth + 1, "i += 1")
        self._emit(depth + 1, "j = i + (c >> 1)")
        self._emit(depth, "else:")
        self._emit(depth + 1, "j, i = _long(b, i)  # a string of 64 bytes or more: rare")
        self._emit(depth + 1, "if j < 0: raise _Unsure")
        self._emit(depth + 1, "j += i")
        self._emit(depth, "if j > n: raise _Unsure")
        self._emit(depth, f"{var} = b[i:j].decode()")
        self._emit(depth, "i = j")

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self._named:
            return self._named[schema]
        return schema

    def read(self, schema: Any, depth: int, path: str = "") -> str:
        """Emit code reading one value of ``schema`` at field ``path``; return the variable that holds it."""
        schema = self._resolve(schema)
        kind = schema if isinstance(schema, str) else schema.get("type")
        var = self._var("v")
        if kind == "string":
            self._read_string(depth, var)
        elif kind in ("int", "long"):
            self._read_long(depth, var, int32=kind == "int")
        elif kind == "record":
            parts = []
            for field in schema["fields"]:
                name = field["name"]
                parts.append(f"{name!r}: {self.read(field['type'], depth, f'{path}.{name}' if path else name)}")
            self._emit(depth, f"{var} = {{{', '.join(parts)}}}")
        elif kind == "array":
            count = self._var("k")
            self._emit(depth, f"{var} = []")
            self._emit(depth, "while True:")
            self._read_long(depth + 1, count, int32=False)
            self._emit(depth + 1, f"if {count} == 0: break")
            self._emit(depth + 1, f"if {count} < 0:")
            self._emit(depth + 2, f"{count} = -{count}")
            self._read_long(depth + 2, "_size", int32=False)
            self._emit(depth + 1, f"for _ in range({count}):")
            item = self.read(schema["items"], depth + 2)
            self._emit(depth + 2, f"{var}.append({item})")
        else:
            raise _Unsupported(str(kind))
        if path in self._expect:
            self._emit(depth, f"if {var} != {self._expect[path]!r}: raise _Unsure  # the codec names the mismatch")
        return var

    def function_source(self, schema: Any) -> str:
        """Source of ``def read(b, i)``: the record whose body starts at ``b[i]`` (after either header), or _Unsure."""
        self._emit(1, "n = len(b)")
        result = self.read(schema, 1)
        self._emit(1, "if i != n: raise _Unsure")
        self._emit(1, f"return {result}")
        return "def read(b, i):\n" + "\n".join(self._lines) + "\n"


def _compile(schema: Any, *, expect: dict[str, object]) -> Callable[[bytes, int], Event]:
    source = _Generator(dict(schema.get("__named_schemas", {})), expect).function_source(schema)
    namespace: dict[str, Any] = {"_long": _long, "_Unsure": _Unsure}
    exec(compile(source, f"<fast reader {schema.get('name')}>", "exec"), namespace)  # generated from our own schemas, never from input
    read: Callable[[bytes, int], Event] = namespace["read"]  # the function the generated source defines
    return read


def _sample_value(schema: Any, named: dict[str, Any], depth: int = 0) -> Any:
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    kind = schema if isinstance(schema, str) else schema.get("type")
    if kind == "string":
        return "é-sample-" + "x" * 70 * (depth % 2)  # non-ASCII, and once longer than a 1-byte length
    if kind in ("int", "long"):
        return 300 if kind == "int" else 1_700_000_123_456
    if kind == "record":
        return {f["name"]: _sample_value(f["type"], named, depth + 1) for f in schema["fields"]}
    if kind == "array":
        return [_sample_value(schema["items"], named, depth + 1) for _ in range(2)]
    raise _Unsupported(str(kind))


class FastDecoder:
    """``decode(bytes) -> event`` with exactly ``EventCodec.decode``'s results and errors, faster."""

    def __init__(self, codec: EventCodec | None = None) -> None:
        self._codec = codec or EventCodec()
        #: fingerprint -> (its reader, its upcast chain or None for a type's newest version): one lookup per record.
        self._fast: dict[bytes, tuple[Callable[[bytes, int], Event], Callable[[Event], Event] | None]] = {}
        self._schema_ids = self._codec.schema_ids
        chain_of = self._codec.upcasts.chain
        fallback = []
        for schema in self._codec.registry.all():
            try:
                # The envelope must name the schema the fingerprint names, as the codec checks.
                reader = _compile(schema.parsed, expect={"envelope.eventType": schema.event_type, "envelope.schemaVersion": schema.version})
                named = dict(schema.parsed.get("__named_schemas", {}))
                buf = BytesIO()
                buf.write(MAGIC + schema.fingerprint)
                sample_event = _sample_value(schema.parsed, named)
                sample_event["envelope"] |= {"eventType": schema.event_type, "schemaVersion": schema.version}
                schemaless_writer(buf, schema.parsed, sample_event)
                sample = buf.getvalue()
                agrees = reader(sample, HEADER_LEN) == self._codec.decode_written(sample)[1]
            except (_Unsupported, _Unsure):
                agrees = False
            if agrees:
                self._fast[schema.fingerprint] = (reader, chain_of(schema.fingerprint))
            else:
                fallback.append(schema.fingerprint.hex())
        #: Schemas read through the codec (a type the generator does not handle, or a disagreement).
        self.fallback_fingerprints: tuple[str, ...] = tuple(sorted(fallback))

    def decode(self, data: bytes) -> Event:
        """The event in ``data`` in the newest shape of its type, as ``EventCodec.decode``; raises its errors."""
        if data is None or len(data) < CONFLUENT_HEADER_LEN:
            return self._codec.decode(data)
        if data[:2] == MAGIC and len(data) >= HEADER_LEN:
            fingerprint, start = data[2:HEADER_LEN], HEADER_LEN
        elif data[0] == CONFLUENT_MAGIC and self._schema_ids is not None:
            # The lookup is cached; an unknown id or a registry that does not answer raises here, as in the codec.
            fingerprint, start = self._schema_ids.schema_for(confluent_schema_id(data)).fingerprint, CONFLUENT_HEADER_LEN
        else:
            return self._codec.decode(data)
        fast = self._fast.get(fingerprint)
        if fast is not None:
            reader, chain = fast
            try:
                event = reader(data, start)
            except (_Unsure, IndexError, UnicodeDecodeError):
                return self._codec.decode(data)  # the codec decides, and names the error
            return event if chain is None else chain(event)
        return self._codec.decode(data)


def event_decoder(schema_registry_url: str | None = None, *, timeout_s: float = 5.0) -> Callable[[bytes], Event]:
    """The decode function of every consumer (live, replay, log facts): both framings, newest shape.

    With ``schema_registry_url`` (a Confluent-compatible API, e.g. Apicurio's ``/apis/ccompat/v7``)
    Confluent-framed records are read through :class:`schemas.confluent.ConfluentSchemas`, each
    registry lookup bounded by ``timeout_s`` seconds; without it they are dead-lettered as
    :class:`~schemas.errors.UnknownSchemaError`. Single-object records never need the registry.
    """
    if not schema_registry_url:
        return FastDecoder().decode
    from schemas.confluent import ConfluentSchemas  # the registry client is imported only when a registry is used
    from schemas.registry import load_registry

    registry = load_registry()
    return FastDecoder(EventCodec(registry, schema_ids=ConfluentSchemas(schema_registry_url, registry, timeout_s=timeout_s))).decode
