"""Shard leases of the outbox relays: which relay publishes which outbox shard, until when.

An order's outbox rows all carry the same shard (:func:`~pipelines.orders.tables.outbox_shard`),
so a relay that holds a shard's lease holds every order of that shard: only it publishes them,
in id order, and no other relay can reorder or repeat them. The ``relay_leases`` table holds:

* **shard leases**, ``shard`` 0 .. OUTBOX_SHARDS-1 (one row each, created by
  :meth:`ShardLeases.prepare`): ``owner`` is the relay that holds the shard ('' when free),
  ``expires_at`` when the lease lapses (0 when free).
* **membership rows**, ``shard`` < 0: "relay ``owner`` is alive until ``expires_at``", one per
  running relay, under a random negative number. They let every relay count the relays that
  share the shards, a new one that holds no shard yet included, and so compute its fair share.

Times are epoch ms of the database's clock (PostgreSQL's ``clock_timestamp()``; on SQLite,
whose relays share one machine, this machine's clock), so relays on several machines agree
on when a lease lapses whatever their own clocks say.

The protocol: :meth:`ShardLeases.tick`, one transaction, every ``ttl/4`` (sooner while under
the fair share):

1. Heartbeat: extend this relay's membership row (insert one the first time, or after it was
   reaped because this relay stalled for longer than a ttl; it replaces a row left under the
   same owner id by a previous process).
2. Reap membership rows lapsed for a ttl; count the live ones; the fair share is
   ``ceil(OUTBOX_SHARDS / relays)``.
3. Renew every shard lease this relay owns (a lapsed one too, when nobody took it over: nobody
   published its rows meanwhile).
4. Shed the leases over the fair share (the highest shards): ``owner`` '', ``expires_at`` 0.
   Ticks run between batches, so a shed shard's rows are acknowledged and marked: the next
   owner starts exactly where this one stopped.
5. Claim free or lapsed shards up to the fair share, lowest first. On PostgreSQL the candidates
   are locked with ``FOR UPDATE SKIP LOCKED``, so relays claiming at the same time never wait
   for each other nor take the same shard; on SQLite the write lock (``BEGIN IMMEDIATE``)
   serialises whole ticks.

A relay publishes a shard only while it knows its lease valid (:meth:`ShardLeases.valid_shards`):
until ``started + ttl - margin`` on its own monotonic clock, ``started`` being taken before the
transaction that renewed the lease read the database's clock. Another relay may claim the shard
only once the database's clock passes ``expires_at``: later, so two live relays never publish
one shard at once. :meth:`ShardLeases.release` (a clean stop) frees this relay's shards and
deletes its membership row, so the others take them over at their next tick, not after a ttl.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from pipelines.orders.tables import OUTBOX_SHARDS, relay_leases

__all__ = ["FREE_OWNER", "LeaseState", "LeaseHolders", "ShardLeases", "database_now_ms", "lease_holders", "shard_ranges"]

#: ``owner`` of a shard lease that nobody holds.
FREE_OWNER = ""
#: A relay stops publishing its shards this long (as a fraction of the ttl) before its lease could lapse.
_SAFETY_MARGIN = 0.2

_c = relay_leases.c
_PG_NOW_MS = text("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint")


def database_now_ms(conn: Connection) -> int:
    """Now, in epoch ms, by the database's clock (PostgreSQL's; SQLite has none of its own: this machine's)."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(_PG_NOW_MS).scalar_one())
    return time.time_ns() // 1_000_000


def _insert_ignoring_conflicts(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """INSERT ``rows`` into relay_leases, skipping those whose shard exists; the number inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    result = conn.execute(dialect.insert(relay_leases).on_conflict_do_nothing(index_elements=["shard"]), rows)
    return result.rowcount


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What one :meth:`ShardLeases.tick` left this relay with."""

    #: The shards this relay holds now, ascending.
    shards: tuple[int, ...]
    #: Live relays, this one included.
    relays: int
    #: ``ceil(OUTBOX_SHARDS / relays)``: at most this many shards per relay.
    fair_share: int
    #: Shards claimed and shed by this tick.
    claimed: tuple[int, ...]
    shed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LeaseHolders:
    """Who holds the outbox shards now (for `rewind outbox status`)."""

    #: Live relay -> how many shards it holds (a live relay that holds none yet is listed with 0).
    shards_by_relay: dict[str, int]
    #: Shards nobody holds (free, or their holder's lease lapsed).
    unheld: int


class ShardLeases:
    """One relay's shard leases (module docstring). Not thread-safe: one relay loop calls it."""

    def __init__(self, engine: Engine, *, owner: str, ttl_s: float) -> None:
        if not owner or owner == FREE_OWNER:
            raise ValueError("a relay's owner id must not be empty")
        if ttl_s <= 0:
            raise ValueError(f"lease ttl must be > 0 s, got {ttl_s}")
        self._engine = engine
        self.owner = owner
        self.ttl_s = ttl_s
        self._ttl_ms = math.ceil(ttl_s * 1000)
        self._member_slot: int | None = None
        self._shards: tuple[int, ...] = ()
        self._valid_until = 0.0  # monotonic

    def prepare(self) -> None:
        """Create the shard lease rows that are missing (free). Idempotent; every relay calls it at start."""
        with self._engine.begin() as conn:
            _insert_ignoring_conflicts(conn, [{"shard": s, "owner": FREE_OWNER, "expires_at": 0} for s in range(OUTBOX_SHARDS)])

    def tick(self) -> LeaseState:
        """Heartbeat, renew, shed the excess, claim up to the fair share (module docstring, steps 1-5).

        Raises the database's errors (SQLAlchemy's); the leases held before stay valid until
        their local deadline, so a caller retries the tick until then and publishes meanwhile.
        """
        started = time.monotonic()
        with self._engine.begin() as conn:
            now = database_now_ms(conn)
            expires = now + self._ttl_ms
            # Step 1
            self._heartbeat(conn, now=now, expires=expires)
            # Step 2
            conn.execute(delete(relay_leases).where(_c.shard < 0, _c.expires_at < now - self._ttl_ms))
            relays = max(1, conn.execute(select(func.count()).select_from(relay_leases).where(_c.shard < 0, _c.expires_at > now)).scalar_one())
            fair = math.ceil(OUTBOX_SHARDS / relays)
            # Step 3
            renewed = conn.execute(
                update(relay_leases).where(_c.shard >= 0, _c.owner == self.owner).values(expires_at=expires).returning(_c.shard)
            )
            held: list[int] = sorted(renewed.scalars())
            claimed: list[int] = []
            shed: list[int] = []
            if len(held) > fair:
                # Step 4
                held, shed = held[:fair], held[fair:]
                conn.execute(
                    update(relay_leases).where(_c.shard.in_(shed), _c.owner == self.owner).values(owner=FREE_OWNER, expires_at=0)
                )
            elif len(held) < fair:
                # Step 5
                candidates = (
                    select(_c.shard)
                    .where(_c.shard >= 0, _c.shard < OUTBOX_SHARDS, _c.expires_at <= now)
                    .order_by(_c.shard)
                    .limit(fair - len(held))
                    .with_for_update(skip_locked=True)
                )
                claimed = list(conn.execute(candidates).scalars())
                if claimed:
                    conn.execute(
                        update(relay_leases).where(_c.shard.in_(claimed), _c.expires_at <= now).values(owner=self.owner, expires_at=expires)
                    )
                    held = sorted(held + claimed)
        self._shards = tuple(held)
        self._valid_until = started + self.ttl_s * (1 - _SAFETY_MARGIN)
        return LeaseState(self._shards, relays, fair, tuple(claimed), tuple(shed))

    def _heartbeat(self, conn: Connection, *, now: int, expires: int) -> None:
        if self._member_slot is not None:
            mine = (_c.shard == self._member_slot) & (_c.owner == self.owner)
            if conn.execute(update(relay_leases).where(mine).values(expires_at=expires)).rowcount:
                return
        # First tick, or the row was reaped while this relay stalled: join under a fresh number, replacing the
        # row of a previous process under the same owner id (a restart), which would count as a second relay.
        conn.execute(delete(relay_leases).where(_c.shard < 0, _c.owner == self.owner))
        while True:
            slot = -1 - secrets.randbelow(2**31 - 1)
            if _insert_ignoring_conflicts(conn, [{"shard": slot, "owner": self.owner, "expires_at": expires}]):
                self._member_slot = slot
                return

    def valid_shards(self) -> tuple[int, ...]:
        """The shards this relay may publish now: those of the last tick, while its lease is surely valid; else none."""
        return self._shards if time.monotonic() < self._valid_until else ()

    def held_shards(self) -> tuple[int, ...]:
        """The shards of the last successful tick, valid or not (for progress lines)."""
        return self._shards

    def seconds_left(self) -> float:
        """Seconds until this relay must stop publishing unless a tick renews its leases (negative: already)."""
        return self._valid_until - time.monotonic()

    def release(self) -> None:
        """Free this relay's shards and leave (clean stop): the others claim the shards at their next tick."""
        with self._engine.begin() as conn:
            conn.execute(update(relay_leases).where(_c.shard >= 0, _c.owner == self.owner).values(owner=FREE_OWNER, expires_at=0))
            if self._member_slot is not None:
                conn.execute(delete(relay_leases).where(_c.shard == self._member_slot, _c.owner == self.owner))
        self._shards, self._valid_until, self._member_slot = (), 0.0, None


def lease_holders(engine: Engine) -> LeaseHolders:
    """Who holds which share of the outbox shards now (live leases and membership rows only)."""
    with engine.begin() as conn:
        now = database_now_ms(conn)
        rows = [(int(row[0]), str(row[1])) for row in conn.execute(select(_c.shard, _c.owner).where(_c.expires_at > now))]
    members = {owner for shard, owner in rows if shard < 0}
    held = Counter(owner for shard, owner in rows if 0 <= shard < OUTBOX_SHARDS)
    by_relay = {owner: held.get(owner, 0) for owner in sorted(members | set(held))}
    return LeaseHolders(by_relay, OUTBOX_SHARDS - sum(held.values()))


def shard_ranges(shards: Sequence[int]) -> str:
    """``0-31,40`` for shards 0..31 and 40; ``-`` for none."""
    if not shards:
        return "-"
    out: list[str] = []
    start = prev = shards[0]
    for s in [*shards[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ",".join(out)
