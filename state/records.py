"""Stored value formats of the read replica (the keys are in :mod:`state.keys`).

Values are compact JSON (orjson when present: exact for ints, several times faster than
the standard library on the read path):

* version record: ``{"r": row, "s": [topic, partition, offset] | null, "q": seq | null}``;
* latest record: ``t(valid_from)`` followed by a version record;
* change record: ``{"d": delta, "s": [topic, partition, offset] | null}``;
* versioned index entry: ``t(valid_to)``, or empty when the version is current.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from state.contracts import SourcePosition
from state.keys import INT_BYTES, dec_int, enc_int

try:  # orjson ships with Quix Streams; fall back to json so the store never depends on it.
    import orjson

    _dumps: Callable[[Any], bytes] = orjson.dumps
    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson
    _dumps = lambda value: json.dumps(value, separators=(",", ":")).encode()  # noqa: E731
    _loads = json.loads

__all__ = [
    "StoredVersion",
    "StoredChange",
    "dumps",
    "loads",
    "encode_version",
    "decode_version",
    "decode_latest",
    "encode_change",
    "decode_change",
    "encode_valid_to",
    "decode_valid_to",
]

dumps = _dumps
loads = _loads


class StoredVersion(NamedTuple):
    """One stored row version (valid_to is not stored: it is the next version's valid_from).

    NamedTuples here: built once per update on the store's write path (see SourcePosition)."""

    valid_from_ms: int
    row: Mapping[str, Any]
    source: SourcePosition | None
    seq: int | None


class StoredChange(NamedTuple):
    """One counter change: visible from ``valid_from_ms``; identified by (order_id, seq)."""

    valid_from_ms: int
    order_id: str
    seq: int
    delta: Mapping[str, int]
    source: SourcePosition | None


def _source_to_json(source: SourcePosition | None) -> list[Any] | None:
    return None if source is None else [source.topic, source.partition, source.offset]


def _source_from_json(raw: list[Any] | None) -> SourcePosition | None:
    return None if raw is None else SourcePosition(raw[0], raw[1], raw[2])


def encode_version(version: StoredVersion) -> bytes:
    """Value of a ``V`` key."""
    return _dumps({"r": version.row, "s": _source_to_json(version.source), "q": version.seq})


def encode_version_fields(row: Mapping[str, Any], topic: str, partition: int, offset: int, seq: int | None) -> bytes:
    """:func:`encode_version` of a version with this row, seq and source, without building one."""
    return _dumps({"r": row, "s": [topic, partition, offset], "q": seq})


def decode_version(valid_from_ms: int, data: bytes) -> StoredVersion:
    """Inverse of :func:`encode_version` (valid_from comes from the key)."""
    obj = _loads(data)
    return StoredVersion(valid_from_ms, obj["r"], _source_from_json(obj["s"]), obj["q"])


def decode_latest(data: bytes) -> StoredVersion:
    """A version from the value of an ``L`` key: ``t(valid_from)`` then its :func:`encode_version` record."""
    return decode_version(dec_int(data[:INT_BYTES]), data[INT_BYTES:])


def encode_change(change: StoredChange) -> bytes:
    """Value of a ``C`` key (valid_from, orderId and seq are in the key)."""
    return _dumps({"d": change.delta, "s": _source_to_json(change.source)})


def decode_change(valid_from_ms: int, order_id: str, seq: int, data: bytes) -> StoredChange:
    """Inverse of :func:`encode_change`."""
    obj = _loads(data)
    return StoredChange(valid_from_ms, order_id, seq, obj["d"], _source_from_json(obj["s"]))


def encode_valid_to(valid_to_ms: int | None) -> bytes:
    """Value of a versioned index entry: the version's valid_to, empty while it is current."""
    return b"" if valid_to_ms is None else enc_int(valid_to_ms)


def decode_valid_to(data: bytes) -> int | None:
    """Inverse of :func:`encode_valid_to`."""
    return dec_int(data) if data else None
