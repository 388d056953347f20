"""The ``view.<name>`` record format, in one place: the live pipeline encodes a
:class:`~state.contracts.ViewUpdate`, the replica decodes the same type back.

A record's value is JSON (orjson: exact for integers, money is integer minor units)::

    {"view": NAME, "key": KEY, "row": {...}, "validFrom": ROW_VALID_FROM_MS,
     "change": {"orderId": ..., "seq": ..., "validFrom": CHANGE_VALID_FROM_MS, "delta": {...} | null},
     "source": {"topic": ..., "partition": ..., "offset": ...}}

``source`` is the orders record the change came from (its own offset, not a next_offset);
``delta`` is null for a per-order view (the row is the version). A record's own position on
the view topic is not in it: the reader knows it (``record_position``).
"""

from __future__ import annotations

from typing import Any

import orjson

from state.contracts import SourcePosition, ViewUpdate

__all__ = ["MalformedRecord", "encode_view_update", "encode_view_record", "source_json", "decode_view_update"]


class MalformedRecord(ValueError):
    """A view-topic record that is not in this format (internal: the replica counts and skips it)."""


def encode_view_update(update: ViewUpdate) -> bytes:
    """The value of ``update`` on its view topic (``record_position`` is not encoded)."""
    source = update.source
    return encode_view_record(
        update.view, update.key, update.row, update.row_valid_from_ms, update.change_valid_from_ms, update.delta, update.order_id,
        update.seq, None if source is None else source_json(source.topic, source.partition, source.offset),
    )


def source_json(topic: str, partition: int, offset: int) -> dict[str, Any]:
    """A view record's ``source``: the orders record a change came from (its own offset)."""
    return {"topic": topic, "partition": partition, "offset": offset}


def encode_view_record(view: str, key: str, row: Any, row_valid_from_ms: int, change_valid_from_ms: int, delta: Any, order_id: str,
                       seq: int, source: dict[str, Any] | None) -> bytes:
    """:func:`encode_view_update` of the update with these fields, without building it (a live engine's
    per-record path); ``source``: :func:`source_json` of the orders record, or None."""
    return orjson.dumps({
        "view": view,
        "key": key,
        "row": row,
        "validFrom": row_valid_from_ms,
        "change": {"orderId": order_id, "seq": seq, "validFrom": change_valid_from_ms, "delta": delta},
        "source": source,
    })


def decode_view_update(value: bytes | None, *, view: str, record_position: SourcePosition) -> ViewUpdate:
    """The :class:`ViewUpdate` of one record read from ``view``'s topic at ``record_position``;
    :class:`MalformedRecord` when it is a tombstone, another view's record or not this format."""
    if value is None:
        raise MalformedRecord("tombstone: views never delete rows")
    try:
        record = orjson.loads(value)
        change = record["change"]
        source = record.get("source")
        if record["view"] != view:
            raise MalformedRecord(f"record of view {record['view']!r} on the topic of {view!r}")
        return ViewUpdate(
            view=view,
            key=str(record["key"]),
            row=record["row"],
            row_valid_from_ms=int(record["validFrom"]),
            change_valid_from_ms=int(change["validFrom"]),
            delta=change.get("delta"),
            order_id=str(change["orderId"]),
            seq=int(change["seq"]),
            source=None if not source else SourcePosition(source["topic"], int(source["partition"]), int(source["offset"])),
            record_position=record_position,
        )
    except MalformedRecord:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedRecord(f"{type(exc).__name__}: {exc}") from exc
