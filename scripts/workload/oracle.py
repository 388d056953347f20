"""The oracle: what the workload's own model says, written to one SQLite file.

It is written by the generator's lifecycle model (:class:`~scripts.workload.model.Ledger`),
folding the emitted records one by one, never by projection code; the
projections are tested against it. All times are epoch milliseconds (event
time = occurredAt unless named otherwise), all money integer minor units.

Tables:

``events`` -- one row per emitted record, in emission order (the order the producer sends them in,
    so each partition holds its records in this order)
    emit_index (PK, 0-based), order_id, seq, event_id, event_type,
    occurred_at_ms (the record's CreateTime), arrival_ms (simulated arrival),
    poison_kind (NULL for good events), status_after (the order's status after
    this good event; NULL for poison), customer_id, ltv_delta_minor (what this
    event adds to its customer's lifetime value: +total at OrderDelivered,
    -amount at RefundIssued, else 0; NULL for poison). seq/event_id/event_type
    are NULL for poison whose bytes cannot be read; a duplicate repeats its original's.
``orders`` -- the final row of every order that has at least one emitted event
    order_id (PK), customer_id, status, total_minor, currency, items (JSON list
    of {sku, quantity, unitPriceMinor}), last_seq, placed_at_ms, paid_at_ms,
    payment_failed_at_ms, reserved_at_ms, released_at_ms, shipped_at_ms,
    delivered_at_ms, cancelled_at_ms, refunded_at_ms (NULL when it did not
    happen), refunded_minor.
``customers`` -- every customer with at least one order
    customer_id (PK), currency, orders_placed, orders_delivered (ever, including
    later refunded), orders_cancelled, lifetime_value_minor (delivered totals
    minus refunds), open_orders (status not DELIVERED/CANCELLED/REFUNDED).
``skus`` -- every SKU ordered at least once
    sku (PK), unit_price_minor, units_ordered, units_reserved (ever, at
    InventoryReserved), units_released (at InventoryReleased), units_shipped,
    units_refunded, revenue_minor (delivered units * price minus refunded units
    * price; summed across currencies, as prices are per SKU).
``poison`` -- one row per poison record
    poison_id (PK), emit_index, kind, reason, order_id, seq, event_id, event_type (nullable).
``meta`` -- key (PK), value (JSON): the config (seed, orders, start_ms, end_ms,
    days, late_rate, skew_rate, max_lateness_ms, poison_rate, customers, skus),
    topic, records, good_events, poison_records, event_type_counts, schema_version.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.gc_pause import gc_paused
from schemas.errors import RewindError
from scripts.workload.generator import Workload
from scripts.workload.model import TIME_COLUMNS, Ledger, LineItem, Status

__all__ = [
    "ORACLE_SCHEMA_VERSION",
    "OracleError",
    "OracleSummary",
    "OrderVersion",
    "EventRow",
    "OrderRow",
    "CustomerRow",
    "SkuRow",
    "PoisonRow",
    "write_oracle",
    "Oracle",
]

#: Bumped when a table's columns change meaning.
ORACLE_SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE events (
    emit_index INTEGER PRIMARY KEY, order_id TEXT NOT NULL, seq INTEGER, event_id TEXT, event_type TEXT,
    occurred_at_ms INTEGER NOT NULL, arrival_ms INTEGER NOT NULL, poison_kind TEXT, status_after TEXT,
    customer_id TEXT, ltv_delta_minor INTEGER
);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, total_minor INTEGER NOT NULL,
    currency TEXT NOT NULL, items TEXT NOT NULL, last_seq INTEGER NOT NULL,
    placed_at_ms INTEGER, paid_at_ms INTEGER, payment_failed_at_ms INTEGER, reserved_at_ms INTEGER,
    released_at_ms INTEGER, shipped_at_ms INTEGER, delivered_at_ms INTEGER, cancelled_at_ms INTEGER,
    refunded_at_ms INTEGER, refunded_minor INTEGER NOT NULL
);
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY, currency TEXT NOT NULL, orders_placed INTEGER NOT NULL,
    orders_delivered INTEGER NOT NULL, orders_cancelled INTEGER NOT NULL,
    lifetime_value_minor INTEGER NOT NULL, open_orders INTEGER NOT NULL
);
CREATE TABLE skus (
    sku TEXT PRIMARY KEY, unit_price_minor INTEGER NOT NULL, units_ordered INTEGER NOT NULL,
    units_reserved INTEGER NOT NULL, units_released INTEGER NOT NULL, units_shipped INTEGER NOT NULL,
    units_refunded INTEGER NOT NULL, revenue_minor INTEGER NOT NULL
);
CREATE TABLE poison (
    poison_id TEXT PRIMARY KEY, emit_index INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    order_id TEXT NOT NULL, seq INTEGER, event_id TEXT, event_type TEXT
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_INDEXES = """
CREATE INDEX events_by_order ON events (order_id, seq);
CREATE INDEX orders_by_customer ON orders (customer_id);
"""

_TIME_COLUMNS = tuple(TIME_COLUMNS.values())


class OracleError(RewindError):
    """The oracle file is missing, unreadable, or of another schema version: regenerate it."""


@dataclass(frozen=True)
class OracleSummary:
    """What :func:`write_oracle` wrote."""

    path: Path
    records: int
    good_events: int
    poison_records: int
    orders: int


@dataclass(frozen=True)
class OrderVersion:
    """An order as of a time: its status after the visible prefix of its events.

    ``valid_from_ms`` is the largest occurredAt in that prefix (a version becomes
    valid at the largest event time seen so far for its key, so it never decreases).
    """

    order_id: str
    status: Status
    last_seq: int
    valid_from_ms: int


@dataclass(frozen=True)
class EventRow:
    """One row of ``events``."""

    emit_index: int
    order_id: str
    seq: int | None
    event_id: str | None
    event_type: str | None
    occurred_at_ms: int
    arrival_ms: int
    poison_kind: str | None
    status_after: str | None
    customer_id: str | None
    ltv_delta_minor: int | None


@dataclass(frozen=True)
class OrderRow:
    """One row of ``orders``; ``items`` are (sku, quantity, unit_price_minor) and the times are by column name."""

    order_id: str
    customer_id: str
    status: Status
    total_minor: int
    currency: str
    items: tuple[tuple[str, int, int], ...]
    last_seq: int
    times_ms: dict[str, int | None]
    refunded_minor: int


@dataclass(frozen=True)
class CustomerRow:
    """One row of ``customers``."""

    customer_id: str
    currency: str
    orders_placed: int
    orders_delivered: int
    orders_cancelled: int
    lifetime_value_minor: int
    open_orders: int


@dataclass(frozen=True)
class SkuRow:
    """One row of ``skus``."""

    sku: str
    unit_price_minor: int
    units_ordered: int
    units_reserved: int
    units_released: int
    units_shipped: int
    units_refunded: int
    revenue_minor: int


@dataclass(frozen=True)
class PoisonRow:
    """One row of ``poison``."""

    poison_id: str
    emit_index: int
    kind: str
    reason: str
    order_id: str
    seq: int | None
    event_id: str | None
    event_type: str | None


def write_oracle(workload: Workload, path: str | os.PathLike[str], *, topic: str | None = None) -> OracleSummary:
    """Fold ``workload``'s records through the model and write the oracle to ``path`` (replaced atomically).

    1. Write all tables into ``<path>.tmp``, folding every good record, in
       emission order, through a fresh :class:`Ledger` as its row is written.
    2. Index the tables.
    3. Rename over ``path``, so a reader never sees half an oracle.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    try:
        # A scratch file written once: no journal, no fsync, big pages, one transaction.
        db.executescript(
            "PRAGMA page_size=32768; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
            "PRAGMA cache_size=-262144; PRAGMA locking_mode=EXCLUSIVE;" + _DDL
        )
        with gc_paused(), db:
            # Step 1
            summary = _write_tables(db, workload, path=path, topic=topic)
            # Step 2
            db.executescript(_INDEXES)
    finally:
        db.close()
    # Step 3
    os.replace(tmp, path)
    return summary


def _write_tables(db: sqlite3.Connection, workload: Workload, *, path: Path, topic: str | None) -> OracleSummary:
    ledger = Ledger()
    orders = workload.orders
    type_counts: Counter[str] = Counter()

    def event_rows() -> Iterator[tuple[Any, ...]]:
        for index, r in enumerate(workload.records):
            order = orders[r.order_id]
            if r.poison is not None:
                yield (index, r.order_id, r.seq, r.event_id, r.event_type, r.timestamp_ms, r.arrival_ms,
                       r.poison.kind, None, order.customer_id, None)
                continue
            assert r.event_type is not None and r.seq is not None
            status = ledger.apply(order, r.event_type, seq=r.seq, occurred_at_ms=r.timestamp_ms)
            type_counts[r.event_type] += 1
            if r.event_type == "OrderDelivered":
                delta = order.total_minor
            elif r.event_type == "RefundIssued":
                delta = -order.refund.amount_minor if order.refund else 0
            else:
                delta = 0
            yield (index, r.order_id, r.seq, r.event_id, r.event_type, r.timestamp_ms, r.arrival_ms,
                   None, str(status), order.customer_id, delta)

    db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", event_rows())
    line_json: dict[LineItem, str] = {}  # lines are shared objects and repeat: serialise each once

    def items_json(items: tuple[LineItem, ...]) -> str:
        parts = []
        for i in items:
            text = line_json.get(i)
            if text is None:
                text = line_json[i] = json.dumps({"sku": i.sku, "quantity": i.quantity, "unitPriceMinor": i.unit_price_minor})
            parts.append(text)
        return "[" + ", ".join(parts) + "]"

    db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (
        (s.order.order_id, s.order.customer_id, str(s.status), s.order.total_minor, s.order.currency,
         items_json(s.order.items), s.last_seq, *map(s.times_ms.get, _TIME_COLUMNS), s.refunded_minor)
        for s in ledger.orders.values()
    ))
    db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?)", (
        (c.customer_id, c.currency, c.orders_placed, c.orders_delivered, c.orders_cancelled,
         c.lifetime_value_minor, c.open_orders) for c in ledger.customers.values()
    ))
    db.executemany("INSERT INTO skus VALUES (?,?,?,?,?,?,?,?)", (
        (k.sku, k.unit_price_minor, k.units_ordered, k.units_reserved, k.units_released,
         k.units_shipped, k.units_refunded, k.revenue_minor) for k in ledger.skus.values()
    ))
    poison = [(r.poison.poison_id, i, r.poison.kind, r.poison.reason, r.order_id, r.seq, r.event_id, r.event_type)
              for i, r in enumerate(workload.records) if r.poison is not None]
    db.executemany("INSERT INTO poison VALUES (?,?,?,?,?,?,?,?)", poison)
    good = sum(type_counts.values())
    meta: dict[str, Any] = {
        **asdict(workload.config),
        "end_ms": workload.config.end_ms,
        "customers": workload.config.customer_count,
        "topic": topic,
        "records": len(workload.records),
        "good_events": good,
        "poison_records": len(poison),
        "event_type_counts": dict(sorted(type_counts.items())),
        "schema_version": ORACLE_SCHEMA_VERSION,
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", ((k, json.dumps(v)) for k, v in meta.items()))
    return OracleSummary(path, len(workload.records), good, len(poison), len(ledger.orders))


class Oracle:
    """Read side of an oracle file. Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Oracle:
        """Open ``path`` read-only; raise :class:`OracleError` if it is missing or of another version."""
        path = Path(path)
        if not path.is_file():
            raise OracleError(f"no oracle at {path}")
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise OracleError(f"{path} is not an oracle file: {exc}") from exc
        if row is None or json.loads(row[0]) != ORACLE_SCHEMA_VERSION:
            db.close()
            raise OracleError(f"{path} has oracle schema {row and row[0]}, expected {ORACLE_SCHEMA_VERSION}")
        return cls(db)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta(self) -> dict[str, Any]:
        """The config, topic and counts the oracle was written with."""
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def order_as_of(self, order_id: str, t_ms: int) -> OrderVersion | None:
        """``order_id`` as of ``t_ms``: the longest prefix of its good events, in seq order,
        whose occurredAt are all <= ``t_ms`` (inclusive: an event at exactly ``t_ms`` is visible).

        None when not even its first event is visible (or the order does not exist). A
        later event with an earlier clock (a step-back) becomes visible only with its
        predecessors, so it is hidden until the time of the largest occurredAt before it.
        """
        version: OrderVersion | None = None
        valid_from: int | None = None
        for seq, occurred, status in self._db.execute(
            "SELECT seq, occurred_at_ms, status_after FROM events "
            "WHERE order_id = ? AND poison_kind IS NULL ORDER BY seq",
            (order_id,),
        ):
            if occurred > t_ms:
                break
            occurred_ms: int = occurred
            valid_from = occurred_ms if valid_from is None else max(valid_from, occurred_ms)
            version = OrderVersion(order_id, Status(status), seq, valid_from)
        return version

    def order_status_as_of(self, order_id: str, t_ms: int) -> Status | None:
        """The status of :meth:`order_as_of`, or None before the order's first visible event."""
        version = self.order_as_of(order_id, t_ms)
        return None if version is None else version.status

    def customer_ltv_as_of(self, customer_id: str, t_ms: int) -> int:
        """The customer's lifetime value as of ``t_ms``: summed over its orders, each as of ``t_ms``
        (the same prefix rule as :meth:`order_as_of`)."""
        total = 0
        current, visible = None, True
        for order_id, occurred, delta in self._db.execute(
            "SELECT e.order_id, e.occurred_at_ms, e.ltv_delta_minor FROM orders o JOIN events e USING (order_id) "
            "WHERE o.customer_id = ? AND e.poison_kind IS NULL ORDER BY e.order_id, e.seq",
            (customer_id,),
        ):
            if order_id != current:
                current, visible = order_id, True
            visible = visible and occurred <= t_ms
            if visible:
                total += delta
        return total

    def events(self) -> Iterator[EventRow]:
        """Every emitted record, in emission order."""
        for row in self._db.execute("SELECT * FROM events ORDER BY emit_index"):
            yield EventRow(*row)

    def final_orders(self) -> Iterator[OrderRow]:
        """The final row of every order, by order id."""
        for row in self._db.execute("SELECT * FROM orders ORDER BY order_id"):
            yield _order_row(row)

    def final_order(self, order_id: str) -> OrderRow | None:
        """The final row of one order, or None if it has no events."""
        row = self._db.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else _order_row(row)

    def customers(self) -> list[CustomerRow]:
        """Every customer's totals, by customer id."""
        return [CustomerRow(*r) for r in self._db.execute("SELECT * FROM customers ORDER BY customer_id")]

    def skus(self) -> list[SkuRow]:
        """Every ordered SKU's counters, by SKU."""
        return [SkuRow(*r) for r in self._db.execute("SELECT * FROM skus ORDER BY sku")]

    def poison(self) -> list[PoisonRow]:
        """Every poison record, in emission order."""
        return [PoisonRow(*r) for r in self._db.execute("SELECT * FROM poison ORDER BY emit_index")]

    def event_type_counts(self) -> dict[str, int]:
        """Good events per type."""
        return dict(self._db.execute(
            "SELECT event_type, COUNT(*) FROM events WHERE poison_kind IS NULL GROUP BY event_type ORDER BY event_type"
        ))


def _order_row(row: tuple[Any, ...]) -> OrderRow:
    order_id, customer_id, status, total, currency, items, last_seq, *rest = row
    times, refunded = rest[: len(_TIME_COLUMNS)], rest[len(_TIME_COLUMNS)]
    return OrderRow(
        order_id=order_id,
        customer_id=customer_id,
        status=Status(status),
        total_minor=total,
        currency=currency,
        items=tuple((i["sku"], i["quantity"], i["unitPriceMinor"]) for i in json.loads(items)),
        last_seq=last_seq,
        times_ms=dict(zip(_TIME_COLUMNS, times, strict=True)),
        refunded_minor=refunded,
    )
