"""Re-frames a share of a workload's records in the Confluent wire format, for a log that holds both framings.

The Avro body of an event is the same in both framings; only the header differs
(single-object ``C3 01`` + 8-byte fingerprint, Confluent ``00`` + 4-byte schema id). So a
record is re-framed by swapping its header for the one the schema registry gives its
writer schema, and every consumer must decode it to the same event.

Which records are re-framed is drawn from a ``Random`` of its own seeded from the
workload's seed: the same workload and share give the same log. Poison whose header
names no known schema (``unknown_schema``, garbage) keeps its bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from random import Random

from schemas.codec import HEADER_LEN, MAGIC
from schemas.confluent import ConfluentSchemas
from schemas.errors import ConfigError
from schemas.registry import SchemaRegistry
from scripts.workload.events import Emitted

__all__ = ["register_all", "confluent_framed"]


def register_all(schema_ids: ConfluentSchemas, registry: SchemaRegistry) -> dict[bytes, bytes]:
    """Every schema of ``registry`` registered (or found) under its subject; fingerprint -> Confluent header.

    Each type's versions are registered oldest first, the order in which a transitive
    compatibility level accepts them (a v1 registered after v2 could be refused).
    """
    headers: dict[bytes, bytes] = {}
    for schema in sorted(registry.all(), key=lambda s: (s.event_type, s.version)):
        headers[schema.fingerprint] = schema_ids.header_for(schema)
    return headers


def confluent_framed(records: Sequence[Emitted], *, share: float, seed: int, headers: dict[bytes, bytes]) -> list[Emitted]:
    """``records`` with a share ``share`` (0..1) of those with a known single-object header re-framed by ``headers``."""
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"the Confluent-framed share must be within [0, 1], got {share}")
    draw = Random(f"framing:{seed}").random
    out: list[Emitted] = []
    for record in records:
        value = record.value
        header = headers.get(value[2:HEADER_LEN]) if value[:2] == MAGIC and len(value) >= HEADER_LEN else None
        if header is not None and draw() < share:
            record = record._replace(value=header + value[HEADER_LEN:])
        out.append(record)
    return out
