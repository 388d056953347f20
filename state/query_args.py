"""Parsing and formatting of query arguments: timestamps and minimum positions.

Timestamps
----------
Accepted: ISO-8601 *with a zone* (``2026-11-21T15:00:00Z``, ``...+01:00``, fractions allowed)
or epoch milliseconds (``1795273200000``, may be negative). A time without a zone is
refused: guessing the zone would silently move the as-of bound. Sub-millisecond digits
are truncated (floor), which keeps the bound inclusive: nothing at ms resolution lies
between the floor and the given instant. Answers show both forms (:func:`time_fields`).

Minimum positions (read-your-writes)
------------------------------------
``min_position`` names, per topic-partition, the ``next_offset`` the replica must have
reached (i.e. every record *below* it applied), as either

* ``topic:partition:next_offset[,topic:partition:next_offset...]``, e.g.
  ``view.order-status:3:1200,view.order-status:4:88``; or
* JSON ``{"topic": {"partition": next_offset}}``.

A topic the store consumes (a ``view.<name>`` topic of the replica) is checked exactly
against :meth:`~state.contracts.ReadOnlyView.position`. Any other topic (normally the
orders topic: ``orders:3:1200`` after producing an event at offset 1199) is checked
against the queried view's :meth:`~state.contracts.ReadOnlyView.source_position`:
satisfied once that view applied a change derived from an orders record at or past
offset 1199 in partition 3. That is a lower bound, not a barrier: re-keyed views spread
one orders partition over several view partitions, and an event that changes nothing
in the view produces no record to wait for. Use view-topic positions for an exact bound.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from state.errors import InvalidPositionError, InvalidTimestampError

__all__ = ["parse_timestamp", "format_iso", "time_fields", "parse_min_position", "format_position", "missing"]

_EPOCH_MS = re.compile(r"-?\d{1,19}")


def parse_timestamp(text: str | int) -> int:
    """Epoch milliseconds of ``text`` (ISO-8601 with zone, or epoch ms); :class:`InvalidTimestampError` otherwise."""
    if isinstance(text, int):
        return text
    raw = text.strip()
    if _EPOCH_MS.fullmatch(raw):
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidTimestampError(
            f"bad timestamp {text!r}: use ISO-8601 with a zone (2026-11-21T15:00:00Z) or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        raise InvalidTimestampError(f"timestamp {text!r} has no zone: add Z or an offset such as +01:00")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    # Integer arithmetic: floats would round 15:00:00.001 to the wrong millisecond.
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000


def format_iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. ``2026-11-21T15:00:00.000Z``."""
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def time_fields(name: str, ms: int | None) -> dict[str, Any]:
    """``{name_ms: ms, name: iso}`` (both None when ``ms`` is None): how answers show a time."""
    return {f"{name}_ms": ms, name: None if ms is None else format_iso(ms)}


def parse_min_position(text: str | None) -> dict[str, dict[int, int]]:
    """Parse a min_position (see the module docstring); empty or None means no requirement."""
    if text is None or not text.strip():
        return {}
    raw = text.strip()
    out: dict[str, dict[int, int]] = {}
    try:
        if raw.startswith("{"):
            for topic, parts in json.loads(raw).items():
                for partition, offset in parts.items():
                    out.setdefault(str(topic), {})[int(partition)] = _offset(offset)
            return out
        for item in raw.split(","):
            topic, partition, offset = item.strip().rsplit(":", 2)
            if not topic:
                raise ValueError("empty topic")
            out.setdefault(topic, {})[int(partition)] = _offset(offset)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidPositionError(
            f"bad min_position {text!r} ({exc}): use topic:partition:next_offset[,...] or JSON {{\"topic\": {{\"0\": 42}}}}"
        ) from None
    return out


def _offset(value: Any) -> int:
    offset = int(value)
    if offset < 0 or isinstance(value, bool):
        raise ValueError(f"offset {value!r} is not a non-negative integer")
    return offset


def format_position(position: dict[str, dict[int, int]]) -> str:
    """The ``topic:partition:next_offset,...`` form of a position (sorted), accepted back by :func:`parse_min_position`."""
    return ",".join(f"{t}:{p}:{o}" for t in sorted(position) for p, o in sorted(position[t].items()))


def missing(required: dict[str, dict[int, int]], reached: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
    """Per topic-partition, how many offsets ``reached`` is short of ``required`` (only the short ones)."""
    out: dict[str, dict[int, int]] = {}
    for topic, parts in required.items():
        for partition, next_offset in parts.items():
            have = reached.get(topic, {}).get(partition, 0)
            if have < next_offset:
                out.setdefault(topic, {})[partition] = next_offset - have
    return out
