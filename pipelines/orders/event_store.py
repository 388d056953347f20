"""The event store's command path: load an order, decide, and append with optimistic concurrency.

:meth:`EventStore.execute` runs one command in ONE database transaction:

1. The command id: an answer already stored for it is returned as it was (same request hash),
   or the command is refused (another body: :class:`CommandIdReusedError`, 422). Nothing is written.
2. Load the order's events with one SELECT (seq order) and fold them into its aggregate
   (:func:`~pipelines.orders.decide.fold_order`).
3. Decide (:func:`~pipelines.orders.decide.decide`): a refusal rolls the transaction back, so a
   refused command writes nothing at all.
4. Encode the event with the codec (Avro single-object framing) and insert, in the same
   transaction: the ``events`` row, the ``outbox`` row (the *same* bytes, the order's shard,
   timestamp = occurredAt) and the ``commands`` row (request hash, status, the JSON answer).
5. Commit. A unique-key clash means another writer got there first: on (order_id, seq) another
   command on the order won that seq (:class:`ConcurrentCommandError`, 409: retry with the same
   command id, which decides afresh), or the same command id committed meanwhile (its stored
   answer, step 1 again).

A database that does not answer (down, unreachable, locked past its timeout) is an
:class:`EventStoreUnavailableError` (503) within the engine's connect/pool/lock bounds
(:mod:`pipelines.orders.database`). On SQLite, which has one writer at a time, the store also
serialises its own threads with a lock, so they queue in-process instead of polling the
file lock (each waits at most the busy timeout there too); PostgreSQL runs them side by side and lets the primary key pick the winner.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from pipelines.orders.commands import Command, PlaceOrder, request_hash
from pipelines.orders.database import SQLITE_BUSY_TIMEOUT_MS, DatabaseError, is_sqlite, migrate, open_database
from pipelines.orders.decide import Aggregate, Decision, StoredEvent, decide, fold_order
from pipelines.orders.errors import (
    CommandIdReusedError,
    ConcurrentCommandError,
    EventStoreUnavailableError,
    InvalidCommandError,
    OrderNotFoundError,
)
from pipelines.orders.tables import commands, events, outbox, outbox_shard
from schemas.codec import EventCodec
from schemas.errors import CodecError

__all__ = ["CommandAnswer", "EventStore", "open_event_store", "now_ms"]


def now_ms() -> int:
    """Wall-clock time, epoch milliseconds (UTC): an event's occurredAt."""
    return time.time_ns() // 1_000_000


def _uuid4() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """The answer to a command: HTTP ``status`` (201 placed, 200 applied) and the JSON ``body`` text.

    ``body`` is stored with the command id and returned byte for byte to a retry; ``replayed``
    is True for such a retry (nothing was written).
    """

    status: int
    body: str
    replayed: bool = False

    def json(self) -> dict[str, Any]:
        """The body, parsed."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


_LOAD = (
    select(events.c.seq, events.c.event_type, events.c.event_id, events.c.occurred_at, events.c.command_id, events.c.payload)
    .where(events.c.order_id == bindparam("order_id"))
    .order_by(events.c.seq)
)
_STORED = select(commands.c.request_hash, commands.c.status_code, commands.c.response).where(commands.c.command_id == bindparam("command_id"))
_INSERT_EVENT = events.insert()
_INSERT_OUTBOX = outbox.insert()
_INSERT_COMMAND = commands.insert()


class EventStore:
    """Commands decided against, and appended to, the event store behind ``engine`` (migrated; see
    :func:`~pipelines.orders.database.migrate`). Thread-safe: one instance serves every request.

    ``clock_ms`` and ``new_id`` (event ids, generated order and correlation ids) are parameters
    so that tests can fix them.
    """

    def __init__(
        self, engine: Engine, *, codec: EventCodec | None = None, clock_ms: Callable[[], int] = now_ms, new_id: Callable[[], str] = _uuid4
    ) -> None:
        self._engine = engine
        self._codec = codec or EventCodec()
        self._clock_ms = clock_ms
        self._new_id = new_id
        # SQLite: one writer at a time (and BEGIN IMMEDIATE makes every transaction a writer).
        self._sqlite_lock = threading.Lock() if is_sqlite(engine) else None
        self._where = engine.url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        """The database engine (shared, pooled)."""
        return self._engine

    def execute(self, command: Command, *, order_id: str | None = None) -> CommandAnswer:
        """Decide ``command`` on order ``order_id`` and append its event (the steps in the module docstring).

        PlaceOrder names its order in the command (``order_id`` must be None or the same;
        neither: a new UUID); every other command needs ``order_id``. Raises a
        :class:`~pipelines.orders.errors.CommandError` when the command is refused and
        :class:`EventStoreUnavailableError` when the database does not answer; either way
        nothing was written.
        """
        if isinstance(command, PlaceOrder):
            if order_id is not None and command.order_id is not None and order_id != command.order_id:
                raise InvalidCommandError(f"PlaceOrder: orderId {command.order_id!r} in the body is not the order {order_id!r} addressed")
            asked = request_hash(command, order_id=None)
            target = command.order_id or order_id or self._new_id()
        else:
            if order_id is None:
                raise InvalidCommandError(f"{type(command).__name__}: no order id")
            asked = request_hash(command, order_id=order_id)
            target = order_id
        seq = 0
        try:
            with self._unavailable_as_503(), self._turn(), self._engine.begin() as conn:
                # Step 1
                stored = self._stored_answer(conn, command, asked)
                if stored is not None:
                    return stored
                # Step 2
                order = self._load(conn, target)
                # Step 3
                now = self._clock_ms()
                decision = decide(command, order, now_ms=now, new_id=self._new_id)
                seq = decision.seq
                # Step 4
                answer = self._append(conn, command, decision, asked=asked, now=now)
            # Step 5: committed
            return answer
        except IntegrityError:
            pass
        # Step 5: a unique key clashed, the transaction was rolled back. Which writer won what?
        with self._unavailable_as_503(), self._turn(), self._engine.begin() as conn:
            stored = self._stored_answer(conn, command, asked)
        if stored is not None:
            return stored
        raise ConcurrentCommandError(f"concurrent command on order {target} won seq {seq}; retry")

    def load(self, order_id: str) -> Aggregate:
        """The aggregate of ``order_id`` as its stored events make it (``row`` None: no such order)."""
        with self._unavailable_as_503(), self._turn(), self._engine.begin() as conn:
            return self._load(conn, order_id)

    def order(self, order_id: str) -> dict[str, Any]:
        """What the event store says of ``order_id``: its row and its events' seq, type, id, time and command.

        :class:`OrderNotFoundError` when it has no events.
        """
        aggregate = self.load(order_id)
        if aggregate.row is None:
            raise OrderNotFoundError(f"order {order_id} does not exist")
        return {
            "orderId": order_id,
            "order": aggregate.row,
            "events": [
                {"seq": e.seq, "eventType": e.event_type, "eventId": e.event_id, "occurredAt": e.occurred_at, "commandId": e.command_id}
                for e in aggregate.events
            ],
        }

    def ping(self) -> None:
        """Return when the database answers a query; :class:`EventStoreUnavailableError` when it does not."""
        with self._unavailable_as_503(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _stored_answer(self, conn: Connection, command: Command, asked: str) -> CommandAnswer | None:
        stored = conn.execute(_STORED, {"command_id": command.command_id}).first()
        if stored is None:
            return None
        if stored.request_hash != asked:
            raise CommandIdReusedError(
                f"commandId {command.command_id} was already used for another command (a different body or order); a new command needs a new id"
            )
        return CommandAnswer(status=stored.status_code, body=stored.response, replayed=True)

    def _load(self, conn: Connection, order_id: str) -> Aggregate:
        rows = conn.execute(_LOAD, {"order_id": order_id}).all()
        stored = (StoredEvent(r.seq, r.event_type, r.event_id, r.occurred_at, r.command_id, bytes(r.payload)) for r in rows)
        return fold_order(order_id, stored, self._codec)

    def _append(self, conn: Connection, command: Command, decision: Decision, *, asked: str, now: int) -> CommandAnswer:
        envelope = decision.event["envelope"]
        order_id, seq, occurred_at = envelope["orderId"], envelope["seq"], envelope["occurredAt"]
        try:
            payload = self._codec.encode(decision.event)
        except CodecError as exc:  # the fold accepted it, so this is text no Avro string can hold, or the like
            raise InvalidCommandError(f"{type(command).__name__} on order {order_id}: the event does not fit its schema: {exc}") from exc
        status = 201 if isinstance(command, PlaceOrder) else 200
        body = json.dumps(
            {
                "commandId": command.command_id,
                "orderId": order_id,
                "eventType": envelope["eventType"],
                "eventId": envelope["eventId"],
                "seq": seq,
                "occurredAt": occurred_at,
                "status": decision.row["status"],
                "order": decision.row,
            },
            separators=(",", ":"),
        )
        # The events row first: its primary key is the optimistic-concurrency check, so a loser stops here.
        conn.execute(
            _INSERT_EVENT,
            {
                "order_id": order_id, "seq": seq, "event_id": envelope["eventId"], "event_type": envelope["eventType"],
                "occurred_at": occurred_at, "payload": payload, "command_id": command.command_id,
            },
        )
        conn.execute(
            _INSERT_OUTBOX,
            {"order_id": order_id, "seq": seq, "shard": outbox_shard(order_id), "payload": payload, "timestamp_ms": occurred_at, "created_at": now},
        )
        conn.execute(
            _INSERT_COMMAND,
            {"command_id": command.command_id, "order_id": order_id, "request_hash": asked, "status_code": status, "response": body, "created_at": now},
        )
        return CommandAnswer(status=status, body=body)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """On SQLite, this process's turn at the database: waited for at most the busy timeout, like
        the file lock itself, so a queue of requests behind a stuck writer ends in 503s, not a hang."""
        if self._sqlite_lock is None:
            yield
            return
        if not self._sqlite_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise EventStoreUnavailableError(
                f"event store {self._where} unavailable: this service's other commands held it for more than {SQLITE_BUSY_TIMEOUT_MS} ms"
            )
        try:
            yield
        finally:
            self._sqlite_lock.release()

    @contextmanager
    def _unavailable_as_503(self) -> Iterator[None]:
        """Turn "the database did not answer" into :class:`EventStoreUnavailableError` (one line)."""
        try:
            yield
        except IntegrityError:
            raise
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            raise EventStoreUnavailableError(f"event store {self._where} unavailable: {_first_line(exc)}") from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise EventStoreUnavailableError(f"event store {self._where} unavailable: {_first_line(exc)}") from None
            raise


def _first_line(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def open_event_store(url: str, *, pool_size: int = 5) -> EventStore:
    """An :class:`EventStore` over the database at ``url``, migrated to the newest schema.

    The caller closes it with ``store.engine.dispose()``. A database that cannot be reached or
    migrated is an :class:`EventStoreUnavailableError` of one line (the driver's own message
    spans several); a URL that is not SQLite or PostgreSQL a DatabaseError.
    """
    engine = open_database(url, pool_size=pool_size)
    try:
        migrate(engine)
    except DatabaseError as exc:
        engine.dispose()
        raise EventStoreUnavailableError(_first_line(exc)) from None
    return EventStore(engine)

