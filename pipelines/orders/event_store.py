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

:meth:`EventStore.execute_many` runs a batch of commands the same way in ONE transaction: one
SELECT for the stored answers of all their command ids, one for the events of all their orders,
then each command decided in the order given against its order as the batch's earlier commands
left it, and the new rows inserted with one multi-row INSERT per table. Each command gets the
answer it would get if the batch's commands were sent one after another; a unique-key clash
(another writer on one of the orders) rolls the batch back and runs its commands one by one.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from pipelines.orders.commands import Command, PlaceOrder, request_hash
from pipelines.orders.database import SQLITE_BUSY_TIMEOUT_MS, DatabaseError, is_sqlite, migrate, open_database
from pipelines.orders.decide import Aggregate, Decision, StoredEvent, advance, decide, fold_order
from pipelines.orders.errors import (
    CommandError,
    CommandIdReusedError,
    ConcurrentCommandError,
    EventStoreUnavailableError,
    InvalidCommandError,
    OrderNotFoundError,
)
from pipelines.orders.tables import commands, events, outbox, outbox_shard
from schemas.codec import EventCodec
from schemas.errors import CodecError

__all__ = ["CommandAnswer", "EventStore", "open_event_store", "now_ms", "MAX_BATCH"]


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
_LOAD_MANY = (
    select(events.c.order_id, events.c.seq, events.c.event_type, events.c.event_id, events.c.occurred_at, events.c.command_id, events.c.payload)
    .where(events.c.order_id.in_(bindparam("order_ids", expanding=True)))
    .order_by(events.c.order_id, events.c.seq)
)
_STORED_MANY = select(commands.c.command_id, commands.c.request_hash, commands.c.status_code, commands.c.response).where(
    commands.c.command_id.in_(bindparam("command_ids", expanding=True))
)
#: Most commands :meth:`EventStore.execute_many` takes at once (one transaction; the IN lists stay small).
MAX_BATCH = 1_000
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
        target, asked = self._target(command, order_id)
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

    def execute_many(self, requests: Sequence[tuple[Command, str | None]]) -> list[CommandAnswer | CommandError]:
        """Decide ``requests`` (command, order id as for :meth:`execute`), in the order given, in one transaction.

        Returns one result per request, in order: its answer, or the CommandError that refused it
        (a refused command writes nothing; the others still commit). Each result is what
        :meth:`execute` would give if the requests were executed one after another, so a later
        command of an order sees the events its earlier ones in the batch appended, and a command
        id seen earlier in the batch is answered like a retry. Raises
        :class:`EventStoreUnavailableError` when the database does not answer (nothing written),
        :class:`CorruptEventStoreError` when a stored history does not fold, ValueError for more
        than :data:`MAX_BATCH` requests.
        """
        if len(requests) > MAX_BATCH:
            raise ValueError(f"{len(requests)} commands in one batch; at most {MAX_BATCH}")
        try:
            with self._unavailable_as_503(), self._turn(), self._engine.begin() as conn:
                results = self._decide_many(conn, requests)
            return results
        except IntegrityError:
            pass
        # Another writer took a seq or a command id of the batch: the batch was rolled back as a whole.
        # One by one, each command gets what a lone send gets (a retry's stored answer, or a 409 race).
        out: list[CommandAnswer | CommandError] = []
        for command, order_id in requests:
            try:
                out.append(self.execute(command, order_id=order_id))
            except CommandError as exc:
                out.append(exc)
        return out

    def _decide_many(self, conn: Connection, requests: Sequence[tuple[Command, str | None]]) -> list[CommandAnswer | CommandError]:
        """:meth:`execute_many` inside its transaction: steps 1-4 of the module docstring for each request, batched."""
        targets: list[tuple[str, str] | CommandError] = []
        for command, order_id in requests:
            try:
                targets.append(self._target(command, order_id))
            except CommandError as exc:
                targets.append(exc)
        # Step 1, for the whole batch
        ids = sorted({command.command_id for command, _ in requests})
        stored = {r.command_id: r for r in conn.execute(_STORED_MANY, {"command_ids": ids})} if ids else {}
        # Step 2, for the whole batch
        order_ids = sorted({t[0] for t in targets if not isinstance(t, CommandError)})
        loaded: dict[str, list[StoredEvent]] = {order_id: [] for order_id in order_ids}
        if order_ids:
            for r in conn.execute(_LOAD_MANY, {"order_ids": order_ids}):
                loaded[r.order_id].append(StoredEvent(r.seq, r.event_type, r.event_id, r.occurred_at, r.command_id, bytes(r.payload)))
        orders = {order_id: fold_order(order_id, history, self._codec) for order_id, history in loaded.items()}
        # Steps 3 and 4, one request after the other
        results: list[CommandAnswer | CommandError] = []
        answered: dict[str, tuple[str, CommandAnswer]] = {}  # accepted earlier in this batch: command id -> (hash, answer)
        rows: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]] = ([], [], [])
        for (command, _), target in zip(requests, targets, strict=True):
            if isinstance(target, CommandError):
                results.append(target)
                continue
            order_id, asked = target
            try:
                earlier = answered.get(command.command_id)
                if earlier is not None or command.command_id in stored:
                    hashed, answer = earlier if earlier is not None else self._stored_row(stored[command.command_id])
                    if hashed != asked:
                        raise CommandIdReusedError(
                            f"commandId {command.command_id} was already used for another command (a different body or order); "
                            "a new command needs a new id"
                        )
                    results.append(CommandAnswer(status=answer.status, body=answer.body, replayed=True))
                    continue
                order = orders.get(order_id) or Aggregate(order_id=order_id, row=None, correlation_id=None, paid_minor=0, events=())
                now = self._clock_ms()
                decision = decide(command, order, now_ms=now, new_id=self._new_id)
                answer, event_row, outbox_row, command_row = self._rows(command, decision, asked=asked, now=now)
            except CommandError as exc:
                results.append(exc)
                continue
            for table_rows, row in zip(rows, (event_row, outbox_row, command_row), strict=True):
                table_rows.append(row)
            orders[order_id] = advance(
                order, decision, StoredEvent(event_row["seq"], event_row["event_type"], event_row["event_id"], event_row["occurred_at"],
                                             command.command_id, event_row["payload"]),
            )
            answered[command.command_id] = (asked, answer)
            results.append(answer)
        if rows[0]:
            # One multi-row INSERT per table; the events first (the optimistic-concurrency check), the outbox
            # rows in the order decided (their ids are the relay's per-order commit order).
            for statement, table_rows in zip((_INSERT_EVENT, _INSERT_OUTBOX, _INSERT_COMMAND), rows, strict=True):
                conn.execute(statement, table_rows)
        return results

    def _target(self, command: Command, order_id: str | None) -> tuple[str, str]:
        """(the order ``command`` acts on, its request hash); InvalidCommandError when the ids disagree or are missing."""
        if isinstance(command, PlaceOrder):
            if order_id is not None and command.order_id is not None and order_id != command.order_id:
                raise InvalidCommandError(f"PlaceOrder: orderId {command.order_id!r} in the body is not the order {order_id!r} addressed")
            return command.order_id or order_id or self._new_id(), request_hash(command, order_id=None)
        if order_id is None:
            raise InvalidCommandError(f"{type(command).__name__}: no order id")
        return order_id, request_hash(command, order_id=order_id)

    @staticmethod
    def _stored_row(row: Any) -> tuple[str, CommandAnswer]:
        return row.request_hash, CommandAnswer(status=row.status_code, body=row.response)

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
        answer, event_row, outbox_row, command_row = self._rows(command, decision, asked=asked, now=now)
        # The events row first: its primary key is the optimistic-concurrency check, so a loser stops here.
        conn.execute(_INSERT_EVENT, event_row)
        conn.execute(_INSERT_OUTBOX, outbox_row)
        conn.execute(_INSERT_COMMAND, command_row)
        return answer

    def _rows(
        self, command: Command, decision: Decision, *, asked: str, now: int
    ) -> tuple[CommandAnswer, dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The answer to an accepted command and its ``events``, ``outbox`` and ``commands`` rows."""
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
        event_row = {
            "order_id": order_id, "seq": seq, "event_id": envelope["eventId"], "event_type": envelope["eventType"],
            "occurred_at": occurred_at, "payload": payload, "command_id": command.command_id,
        }
        outbox_row = {"order_id": order_id, "seq": seq, "shard": outbox_shard(order_id), "payload": payload, "timestamp_ms": occurred_at, "created_at": now}
        command_row = {
            "command_id": command.command_id, "order_id": order_id, "request_hash": asked, "status_code": status, "response": body, "created_at": now,
        }
        return CommandAnswer(status=status, body=body), event_row, outbox_row, command_row

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

