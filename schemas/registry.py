"""Loads the Avro event schemas shipped in ``schemas/avro`` and fingerprints them.

File names are ``<RecordName>.v<version>.avsc``. ``Envelope`` is a named type
that every event record embeds as its ``envelope`` field; the event files
refer to it by name, and it lives in a file of its own.

The fingerprint is the one the Avro specification's single-object encoding
puts in the header, so that any Avro library's encoder (Java's
``BinaryMessageEncoder``, fastavro + ``fingerprint``, ...) given the same
schema writes the same bytes: the CRC-64-AVRO (Rabin) fingerprint of the
Parsing Canonical Form of the *full* writer schema, where every named type is
written out in full at its first occurrence (the Envelope included) and only
later occurrences are names. A fingerprint of a form holding the bare name
``rewind.orders.Envelope`` would be a different number (this build's schemas
used to be fingerprinted that way; no other Avro implementation can read those).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from schemas.errors import ConfigError

__all__ = [
    "EventSchema",
    "SchemaRegistry",
    "load_registry",
    "build_registry",
    "parsing_canonical_form",
    "crc64_avro",
    "full_writer_schema",
    "strip_logical_types",
    "SCHEMA_DIR",
    "EVENT_TYPES",
]

SCHEMA_DIR = Path(__file__).with_name("avro")
ENVELOPE = "Envelope"
_FILE_RE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})

#: The order lifecycle's event types, in the order a happy path meets them.
EVENT_TYPES: tuple[str, ...] = (
    "OrderPlaced",
    "PaymentAuthorized",
    "PaymentFailed",
    "InventoryReserved",
    "InventoryReleased",
    "OrderShipped",
    "OrderDelivered",
    "OrderCancelled",
    "RefundIssued",
)


@dataclass(frozen=True)
class EventSchema:
    """One version of one event type.

    ``parsed`` is what the codec reads and writes with: the full writer schema
    (the Envelope written out inline), with logical types stripped so
    timestamps stay integer epoch-millis and ids stay strings (the wire bytes
    and the fingerprint are the same either way, because the Parsing Canonical
    Form ignores logicalType). ``canonical_form`` is that schema's Parsing
    Canonical Form, and ``fingerprint`` its CRC-64-AVRO fingerprint as the 8
    little-endian bytes that follow ``C3 01`` in a single-object header.
    """

    event_type: str
    version: int
    parsed: Any
    canonical_form: str
    fingerprint: bytes
    #: The ``rewind.upcastFrom`` marker: this version starts a new major shape, reached from
    #: version ``upcast_from`` by an explicit upcaster (:mod:`schemas.upcasters`); None: resolvable by Avro rules.
    upcast_from: int | None = None


def strip_logical_types(node: Any) -> Any:
    """``node`` (a schema as JSON) without ``logicalType`` attributes: timestamps stay integer
    epoch-millis and ids strings; resolution and the canonical form ignore logical types anyway."""
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def parsing_canonical_form(schema: Any) -> str:
    """The Avro Parsing Canonical Form of a self-contained schema (a JSON value: str, list or dict).

    Every named type must be defined in ``schema`` itself; an unknown name raises fastavro's
    ``UnknownType``. Names are written as fullnames, attributes other than name, type, fields,
    symbols, items, values and size are dropped (doc, aliases, defaults, logicalType).
    """
    return to_parsing_canonical_form(parse_schema(schema))


def crc64_avro(canonical_form: str) -> bytes:
    """The CRC-64-AVRO (64-bit Rabin) fingerprint of ``canonical_form``'s UTF-8 bytes.

    Returned as the 8 little-endian bytes that the single-object header carries (Java's
    ``SchemaNormalization.parsingFingerprint("CRC-64-AVRO", schema)``); read them with
    ``struct.unpack("<q", ...)`` to get Java's signed ``parsingFingerprint64`` value.
    """
    return bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO"))


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _write_out(node: Any, external: dict[str, Any], defined: set[str], namespace: str) -> Any:
    """``node`` with the first reference to each type of ``external`` replaced by its definition.

    ``external`` maps fullnames to definitions kept in other files (the Envelope); ``defined``
    collects the fullnames defined so far, in the depth-first, field-order walk that the
    Parsing Canonical Form uses, so a later reference stays a name (as Avro requires: a name
    is defined once per schema). ``namespace`` is the enclosing one, for resolving short names.
    """
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = _fullname(node, namespace)
        if full in defined or full not in external:
            return node
        definition = dict(external[full])
        # Pin the definition to its own namespace: inlined elsewhere it must keep its fullname.
        definition["name"], definition["namespace"] = full.rpartition(".")[2], full.rpartition(".")[0]
        return _write_out(definition, external, defined, namespace)
    if isinstance(node, list):
        return [_write_out(branch, external, defined, namespace) for branch in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind in _NAMED_KINDS:
        full = _fullname(node["name"], node.get("namespace", namespace) if "." not in node["name"] else "")
        defined.add(full)
        if kind in ("record", "error"):
            inner = full.rpartition(".")[0]
            return {**node, "fields": [{**f, "type": _write_out(f["type"], external, defined, inner)} for f in node["fields"]]}
        return node
    if kind == "array":
        return {**node, "items": _write_out(node["items"], external, defined, namespace)}
    if kind == "map":
        return {**node, "values": _write_out(node["values"], external, defined, namespace)}
    if isinstance(kind, (list, dict)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        return _write_out(kind, external, defined, namespace)  # {"type": <a name or a schema>}
    return node


def full_writer_schema(doc: Any, external: dict[str, Any]) -> Any:
    """``doc`` made self-contained: each named type of ``external`` written out in full at its first use."""
    return _write_out(doc, external, set(), "")


class SchemaRegistry:
    """Every known (event type, version), looked up by name or by fingerprint."""

    def __init__(self, schemas: list[EventSchema]) -> None:
        self._by_fingerprint = {s.fingerprint: s for s in schemas}
        self._by_type_version = {(s.event_type, s.version): s for s in schemas}
        self._latest: dict[str, EventSchema] = {}
        for s in sorted(schemas, key=lambda s: s.version):
            self._latest[s.event_type] = s

    def by_fingerprint(self, fp: bytes) -> EventSchema | None:
        """The schema whose fingerprint is ``fp``, or None when unknown."""
        return self._by_fingerprint.get(fp)

    def get(self, event_type: str, version: int | None = None) -> EventSchema:
        """A schema by type and version (latest when ``version`` is None); KeyError if unknown."""
        if version is None:
            return self._latest[event_type]
        return self._by_type_version[(event_type, version)]

    def latest(self) -> list[EventSchema]:
        """The newest version of every event type."""
        return list(self._latest.values())

    def all(self) -> list[EventSchema]:
        """Every version of every event type."""
        return list(self._by_type_version.values())

    def versions(self, event_type: str) -> list[EventSchema]:
        """Every version of ``event_type``, oldest first (empty for an unknown type)."""
        return sorted((s for s in self._by_type_version.values() if s.event_type == event_type), key=lambda s: s.version)


def _read_schema_files(schema_dir: Path) -> tuple[dict[str, Any], list[tuple[str, int, dict[str, Any]]]]:
    envelope: dict[str, Any] | None = None
    events: list[tuple[str, int, dict[str, Any]]] = []
    for path in sorted(schema_dir.glob("*.avsc")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise ValueError(f"schema file name must be <Name>.v<N>.avsc: {path}")
        doc = json.loads(path.read_text())
        name, version = match["name"], int(match["version"])
        if doc.get("name") != name:
            raise ValueError(f"{path}: record name {doc.get('name')!r} does not match file name")
        if name == ENVELOPE:
            envelope = doc
        else:
            events.append((name, version, doc))
    if envelope is None:
        raise ValueError(f"no {ENVELOPE}.v1.avsc in {schema_dir}")
    return envelope, events


def build_registry(schema_dir: Path = SCHEMA_DIR) -> SchemaRegistry:
    """Parse every schema file in ``schema_dir`` into a registry."""
    envelope, events = _read_schema_files(schema_dir)
    external = {_fullname(envelope["name"], envelope.get("namespace", "")): strip_logical_types(envelope)}
    schemas = []
    for name, version, doc in events:
        # Step 1: the full writer schema, as any other Avro library would hold it (Envelope inline).
        writer = full_writer_schema(strip_logical_types(doc), external)
        # Step 2: parse it on its own (no named types carried over: it must be self-contained).
        parsed = parse_schema(writer)
        # Step 3: its Parsing Canonical Form and that form's CRC-64-AVRO fingerprint.
        canonical = to_parsing_canonical_form(parsed)
        marker = doc.get("rewind.upcastFrom")
        if marker is not None and (not isinstance(marker, int) or isinstance(marker, bool)):
            raise ConfigError(f"{name} v{version}: rewind.upcastFrom must be an integer version, not {marker!r}")
        schemas.append(EventSchema(name, version, parsed, canonical, crc64_avro(canonical), marker))
    return SchemaRegistry(schemas)


@lru_cache(maxsize=1)
def load_registry() -> SchemaRegistry:
    """The registry of the schemas shipped with this build (parsed once per process)."""
    return build_registry()
