"""The event store's tables, as SQLAlchemy Core metadata (the migrations in ``migrations/`` create them).

* ``events``: every event the service decided, one row per (order_id, seq). The primary key
  is the optimistic-concurrency check: two writers racing to append the same seq of one
  order cannot both commit.
* ``outbox``: the same events, waiting to be published, written in the same transaction as
  ``events``. ``payload`` is the event's exact bytes in the codec's framing (Avro
  single-object encoding), which is what the relay sends as the record value. ``id`` grows
  with insertion, so per order it follows seq (seq n+1 is decided only after seq n
  committed). ``shard`` (a hash of the order id, :func:`outbox_shard`) lets several relays
  split the rows without ever splitting an order. ``published_at`` is None until a relay has
  had the record acknowledged by the broker.
* ``commands``: the answer given to each command id, so that a retried command gets the
  first answer and writes nothing new.
* ``relay_leases``: which relay owns which outbox shard until when.

Times are epoch milliseconds (UTC) in BIGINT columns: the same unit as the events' occurredAt.
"""

from __future__ import annotations

import zlib

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text

__all__ = ["metadata", "events", "outbox", "commands", "relay_leases", "OUTBOX_SHARDS", "outbox_shard"]

#: How many shards the outbox is split into for relays (fixed: it is in the rows). More shards
#: than relays will ever run, so that each relay gets several.
OUTBOX_SHARDS = 64

metadata = MetaData()

# SQLite gives an autoincrementing rowid only to a column declared INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("order_id", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("command_id", String(128), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("order_id", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=True),
)
Index("outbox_unpublished", outbox.c.shard, outbox.c.id, postgresql_where=outbox.c.published_at.is_(None), sqlite_where=outbox.c.published_at.is_(None))

commands = Table(
    "commands",
    metadata,
    Column("command_id", String(128), primary_key=True),
    Column("order_id", String(128), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

relay_leases = Table(
    "relay_leases",
    metadata,
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)


def outbox_shard(order_id: str) -> int:
    """The outbox shard of an order: CRC-32 of its id, modulo :data:`OUTBOX_SHARDS` (stable across processes)."""
    return zlib.crc32(order_id.encode()) % OUTBOX_SHARDS
