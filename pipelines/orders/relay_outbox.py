"""The relay's reads and writes of the ``outbox`` table: the next rows to publish, marking them published, the lag.

Rows are published per shard in id order. Ids grow with insertion, and an order's seq n+1 is
inserted only after its seq n committed, so per order id order is seq order; between orders,
ids may commit out of order (PostgreSQL hands out ids at insert, not at commit), which is why
the next rows are always "the lowest unpublished ids", never "ids above the last one seen".
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from typing import NamedTuple

from sqlalchemy import Connection, Engine, func, select, union_all, update

from pipelines.orders.tables import outbox

__all__ = ["OutboxRow", "OutboxLag", "unpublished_rows", "mark_published", "outbox_lag"]

_c = outbox.c


class OutboxRow(NamedTuple):
    """One outbox row as the relay publishes it: key ``order_id``, value ``payload``, timestamp ``timestamp_ms``.

    A NamedTuple: thousands are built per second, and a tuple is the cheapest record to build.
    """

    id: int
    order_id: str
    seq: int
    payload: bytes
    timestamp_ms: int


class OutboxLag(NamedTuple):
    """What is waiting to be published: ``rows`` unpublished, and the age of the oldest (ms since it
    was committed, by this machine's clock; None when nothing waits). Unpacks as ``(rows, oldest_age_ms)``."""

    rows: int
    oldest_age_ms: int | None


def unpublished_rows(conn: Connection, shards: Sequence[int], *, limit: int, skip_orders: Collection[str] = ()) -> list[OutboxRow]:
    """At most ``limit`` unpublished rows of ``shards``, by ascending id: the lowest ids of each shard.

    Each shard gives at most ``ceil(limit / len(shards))`` rows (one index range scan each, on
    ``outbox_unpublished``), so every order's rows here are its lowest unpublished ones, in seq
    order. Orders in ``skip_orders`` (parked by the relay) are left out, with all their rows.
    """
    if not shards or limit <= 0:
        return []
    per_shard = math.ceil(limit / len(shards))
    columns = (_c.id, _c.order_id, _c.seq, _c.payload, _c.timestamp_ms)
    parts = []
    for shard in shards:
        query = select(*columns).where(_c.shard == shard, _c.published_at.is_(None))
        if skip_orders:
            query = query.where(_c.order_id.not_in(list(skip_orders)))
        # Each part as a subquery: SQLite allows no ORDER BY/LIMIT on the members of a compound SELECT.
        part = query.order_by(_c.id).limit(per_shard).subquery()
        parts.append(select(part))
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    rows = [OutboxRow(int(r[0]), str(r[1]), int(r[2]), bytes(r[3]), int(r[4])) for r in conn.execute(statement)]
    rows.sort()
    # The lowest ids overall: whatever is cut off of an order comes after everything kept of it.
    return rows[:limit]


def mark_published(conn: Connection, ids: Sequence[int], *, published_at_ms: int) -> int:
    """Set ``published_at`` of rows ``ids`` (one UPDATE); the number of rows changed."""
    if not ids:
        return 0
    return conn.execute(update(outbox).where(_c.id.in_(ids)).values(published_at=published_at_ms)).rowcount


def outbox_lag(engine: Engine) -> OutboxLag:
    """Unpublished rows, and the age in ms of the oldest one (by its ``created_at``); ``(0, None)`` when all are published.

    One query over the unpublished rows (the partial index ``outbox_unpublished``). Raises the
    database's errors (SQLAlchemy's) when it cannot be reached.
    """
    with engine.connect() as conn:
        row = conn.execute(select(func.count(), func.min(_c.created_at)).where(_c.published_at.is_(None))).one()
    count, oldest = row[0], row[1]
    if not count or oldest is None:
        return OutboxLag(0, None)
    return OutboxLag(int(count), max(0, time.time_ns() // 1_000_000 - int(oldest)))
