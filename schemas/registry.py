"""Loads the Avro event schemas shipped in ``schemas/avro`` and fingerprints them.

File names are ``<RecordName>.v<version>.avsc``. ``Envelope`` is a named type
that every event record embeds as its ``envelope`` field; it is registered
first so the event schemas can refer to it by name.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

__all__ = ["EventSchema", "SchemaRegistry", "load_registry", "SCHEMA_DIR", "EVENT_TYPES"]

SCHEMA_DIR = Path(__file__).with_name("avro")
ENVELOPE = "Envelope"
_FILE_RE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")

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

    ``parsed`` is what the codec reads and writes with: logical types are
    stripped so timestamps stay integer epoch-millis and ids stay strings
    (the wire bytes and the fingerprint are the same either way, because the
    Parsing Canonical Form ignores logicalType).
    """

    event_type: str
    version: int
    parsed: Any
    canonical_form: str
    fingerprint: bytes  # CRC-64-AVRO, little-endian, as in the single-object header


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


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
    schemas = []
    for name, version, doc in events:
        named: dict[str, Any] = {}
        parse_schema(_strip_logical_types(copy.deepcopy(envelope)), named_schemas=named)
        parsed = parse_schema(_strip_logical_types(doc), named_schemas=named)
        canonical = to_parsing_canonical_form(parsed)
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        schemas.append(EventSchema(name, version, parsed, canonical, fp))
    return SchemaRegistry(schemas)


@lru_cache(maxsize=1)
def load_registry() -> SchemaRegistry:
    """The registry of the schemas shipped with this build (parsed once per process)."""
    return build_registry()
