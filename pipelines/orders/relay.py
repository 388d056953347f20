"""The outbox relay (`rewind outbox relay`): publishes outbox rows to the orders topic, then marks them published.

What it guarantees:

* **Nothing committed is lost.** A row is marked published only after the broker acknowledged
  it (idempotent producer, ``acks=all``). The producer retries for as long as it takes
  (``message.timeout.ms`` 0), so a broker outage delays a batch, never fails it: the relay
  keeps running, the outbox grows, its lag is reported, and publishing resumes when the
  broker is back. A database outage is retried with backoff and reported the same way.
* **Commit order per order.** The record key is the order id (the orders topic's
  murmur2 placement), the value the row's payload unchanged, the timestamp its
  ``timestamp_ms`` (the event's occurredAt, CreateTime). Rows go out in id order, which per
  order is seq order (:mod:`pipelines.orders.relay_outbox`), and the idempotent producer
  never reorders nor duplicates a partition's records on a retry.
* **Once, in the normal case, with several relays.** An order's rows share a shard, and one
  relay at a time holds a shard's lease (:mod:`pipelines.orders.relay_leases`): each relay
  takes about ``shards / relays`` of them, takes over a stopped relay's shards at once and a
  crashed one's once its leases lapse. Shards change hands only between batches, after the
  rows were acknowledged and marked.
* **After a crash a row may be published again.** A relay killed between a batch's
  acknowledgements and its mark leaves those rows unmarked, and whoever holds the shard next
  publishes them again (so does a stop that abandons the batch in flight, and a database that
  fails the mark). That is harmless: the folds skip a seq they already applied. Each batch is
  marked right after its acknowledgements, so a crash repeats at most one batch.

The loop (:meth:`OutboxRelay.run`):

1. Prepare the database: migrate the schema, create the shard lease rows.
2. Make sure the orders topic exists (the configured partition count and topic config).
3. Tick the leases when due (renew, shed the excess, claim up to the fair share).
4. Read up to ``batch_size`` unpublished rows of the shards this relay holds; none: wait
   a short backoff (up to ``idle_backoff_max_s``) and poll again.
5. Produce them and wait for every acknowledgement, ticking the leases and reporting meanwhile.
6. Mark the acknowledged rows published (``published_at`` = now) in one UPDATE.
7. On stop: wait up to ``stop_grace_s`` for the batch in flight, abandon it otherwise (its
   unmarked rows are published again later), release the leases.

Steps 1 and 2 and every database call of steps 3-6 retry with backoff while the database or
the broker is unreachable, with one warning line per ``report_interval_s``.

The producer's settings and the bookkeeping of a batch in flight are in
:mod:`pipelines.orders.relay_producer`; the outbox queries in :mod:`pipelines.orders.relay_outbox`.

A row the broker refuses for good (a payload over its size limit, say) parks its order: the
order's rows stay unpublished (its lag shows them), the other orders go on, and a warning names
it. A restarted relay tries the order again.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Producer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from pipelines.client_logs import ClientNoiseFilter
from pipelines.errors import BrokerUnreachableError
from pipelines.orders.database import DatabaseError, migrate
from pipelines.orders.relay_leases import LeaseState, ShardLeases, shard_ranges
from pipelines.orders.relay_outbox import OutboxLag, OutboxRow, mark_published, outbox_lag, unpublished_rows
from pipelines.orders.relay_producer import PURGED, ProducerLike, SentBatch, relay_producer_config
from pipelines.topics import ORDERS_TOPIC_CONFIG, ensure_topic

__all__ = ["RelayConfig", "RelayStats", "OutboxRelay", "default_relay_id", "is_database_outage", "outbox_lag", "OutboxLag"]

log = logging.getLogger("rewind.outbox")

#: Longest pause between two attempts while the database or the broker is unreachable.
MAX_BACKOFF_S: Final = 10.0


def default_relay_id() -> str:
    """A relay id unique to this process: ``<host>-<pid>-<random>``."""
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(3)}"


def is_database_outage(exc: BaseException) -> bool:
    """True for a database that cannot be reached or answer now (retried), False for anything else (a bug)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError, DatabaseError))


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How one relay runs. Times in seconds; ``relay_id`` must differ between relays running at the same time.

    A relay restarted under the same ``relay_id`` takes its own unexpired leases back at once;
    under a new one, it waits for them to lapse (``lease_ttl_s``) like any other relay.
    """

    bootstrap: str
    topic: str
    partitions: int
    relay_id: str
    batch_size: int = 500
    lease_ttl_s: float = 10.0
    idle_backoff_max_s: float = 0.25
    progress_interval_s: float = 10.0
    report_interval_s: float = 30.0
    stop_grace_s: float = 2.0
    idle_timeout_s: float = 0.0


@dataclass
class RelayStats:
    """Counters of one relay process."""

    relay_id: str
    published: int = 0  # rows acknowledged and marked published
    batches: int = 0
    abandoned: int = 0  # rows handed to the producer but not marked (a stop, a producer failure, a refusal): they may be in the topic, and go out again
    unmarked: int = 0  # rows acknowledged whose mark the database failed and that were never marked by this relay
    parked_orders: int = 0
    producer_restarts: int = 0
    database_failures: int = 0
    broker_waits: int = 0  # "batch unacknowledged" reports
    claimed: int = 0  # shard leases claimed
    shed: int = 0  # shard leases shed for a fair share
    started_at: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("started_at")
        out["elapsed_s"] = round(time.monotonic() - self.started_at, 3)
        return out

    def summary_line(self) -> str:
        """One JSON line with every counter, printed at shutdown (tests parse it)."""
        return "REWIND_RELAY_STATS " + json.dumps(self.as_dict(), sort_keys=True)


class _Trouble:
    """One kind of outage (database or broker): since when, the backoff, one warning per report interval."""

    def __init__(self, what: str, *, report_interval_s: float) -> None:
        self.what = what
        self._interval_s = report_interval_s
        self.since: float | None = None
        self.failures = 0
        self._next_report = 0.0

    def failed(self, detail: str, *, attempt_started: float | None = None) -> float:
        """Note a failure (of an attempt begun at monotonic ``attempt_started``, default now); log when a report is due;
        return the pause before the next attempt."""
        now = time.monotonic()
        if self.since is None:
            self.since, self._next_report = attempt_started or now, now
        self.failures += 1
        if now >= self._next_report:
            log.warning("%s unreachable for %.0f s (%s); retrying with backoff, next report in %g s",
                        self.what, now - self.since, detail, self._interval_s)
            self._next_report = now + self._interval_s
        return min(0.5 * 2.0 ** min(self.failures - 1, 10), MAX_BACKOFF_S)

    def ok(self) -> None:
        if self.since is not None:
            log.info("%s answers again after %.0f s", self.what, time.monotonic() - self.since)
        self.since, self.failures = None, 0

    def down_for_s(self) -> float | None:
        return None if self.since is None else time.monotonic() - self.since


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= 240 else line[:237] + "..."


class OutboxRelay:
    """One relay process's loop (module docstring). :meth:`run` until ``stop`` is set."""

    def __init__(self, engine: Engine, config: RelayConfig, *,
                 producer_factory: Callable[[dict[str, Any]], ProducerLike] = Producer) -> None:
        if config.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
        self._engine = engine
        self._config = config
        self._producer_factory = producer_factory
        self._producer: ProducerLike | None = None
        self._producer_fatal: KafkaError | None = None
        self._leases = ShardLeases(engine, owner=config.relay_id, ttl_s=config.lease_ttl_s)
        self._lease_state: LeaseState | None = None
        self._next_tick = 0.0
        self._next_progress = time.monotonic() + config.progress_interval_s
        self._last_progress = (time.monotonic(), 0)
        self._pending_marks: list[int] = []
        self._parked: dict[str, str] = {}
        self._db = _Trouble(f"outbox relay {config.relay_id}: database", report_interval_s=config.report_interval_s)
        self._broker = _Trouble(f"outbox relay {config.relay_id}: broker {config.bootstrap}", report_interval_s=config.report_interval_s)
        self._last_client_error = ""
        self._in_flight: SentBatch | None = None
        self._db_pause_s = 0.5
        self._noise = ClientNoiseFilter()
        self.stats = RelayStats(config.relay_id)

    # ---------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> RelayStats:
        """Publish until ``stop`` is set (or idle for ``idle_timeout_s`` > 0); release the leases; return the counters.

        Raises :class:`~pipelines.errors.TopicError` when the topic exists with another
        partition count, and anything that is not an outage (a bug) unchanged.
        """
        cfg = self._config
        self._noise.install()
        log.info("outbox relay %s: publishing to %s (%d partitions) at %s, batches of %d, lease ttl %g s",
                 cfg.relay_id, cfg.topic, cfg.partitions, cfg.bootstrap, cfg.batch_size, cfg.lease_ttl_s)
        # Step 1
        if not self._retry(stop, self._db, self._prepare_database):
            return self.stats
        # Step 2
        if not self._retry(stop, self._broker, self._ensure_topic):
            return self.stats
        self._producer = self._new_producer()
        idle_since = time.monotonic()
        idle_pause_s = 0.0
        try:
            while not stop.is_set():
                if self._pending_marks and not self._flush_pending_marks(stop):
                    continue
                # Step 3
                self._maintain()
                if self._producer_fatal is not None:
                    self._restart_producer(stop)
                    continue
                shards = self._leases.valid_shards()
                if not shards:
                    stop.wait(0.1)
                    continue
                # Step 4
                rows = self._read(shards)
                if rows is None:
                    stop.wait(self._db_pause_s)
                    continue
                if not rows:
                    if cfg.idle_timeout_s > 0 and time.monotonic() - idle_since >= cfg.idle_timeout_s:
                        log.info("outbox relay %s: nothing to publish for %g s; stopping", cfg.relay_id, cfg.idle_timeout_s)
                        break
                    idle_pause_s = min(max(idle_pause_s * 2, 0.01), cfg.idle_backoff_max_s)
                    stop.wait(idle_pause_s)
                    continue
                idle_since, idle_pause_s = time.monotonic(), 0.0
                # Step 5
                batch = self._in_flight = self._send(rows)
                settled = self._await_acks(batch, stop)
                self._in_flight = None
                # Step 6
                self._settle(batch)
                if not settled and stop.is_set():
                    break
        finally:
            # Step 7
            self._shutdown()
        return self.stats

    def _prepare_database(self) -> None:
        migrate(self._engine)
        self._leases.prepare()

    def _ensure_topic(self) -> None:
        cfg = self._config
        ensure_topic(cfg.bootstrap, cfg.topic, partitions=cfg.partitions, config=ORDERS_TOPIC_CONFIG, timeout_s=5.0)

    def _retry(self, stop: threading.Event, trouble: _Trouble, attempt: Callable[[], None]) -> bool:
        """Run ``attempt`` until it succeeds (True) or ``stop`` is set (False), backing off while the database or broker is down."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                attempt()
            except (BrokerUnreachableError, KafkaException) as exc:
                pause_s = trouble.failed(_describe(exc), attempt_started=started)
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                self.stats.database_failures += 1
                pause_s = trouble.failed(_describe(exc), attempt_started=started)
            else:
                trouble.ok()
                return True
            if trouble is self._broker and time.monotonic() >= self._next_progress:
                self._progress()  # the outbox grows meanwhile: say so
            stop.wait(pause_s)
        return False

    def _db_call(self, call: Callable[[], Any]) -> tuple[bool, Any]:
        """``(True, call())``, or ``(False, None)`` after noting a database outage (a pause follows at the caller's next wait)."""
        started = time.monotonic()
        try:
            result = call()
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            self.stats.database_failures += 1
            self._db_pause_s = self._db.failed(_describe(exc), attempt_started=started)
            return False, None
        self._db.ok()
        return True, result

    def _read(self, shards: Sequence[int]) -> list[OutboxRow] | None:
        """Step 4's rows, or None when the database failed (the caller pauses)."""
        def read() -> list[OutboxRow]:
            with self._engine.begin() as conn:
                return unpublished_rows(conn, shards, limit=self._config.batch_size, skip_orders=self._parked.keys())

        ok, rows = self._db_call(read)
        return rows if ok else None

    # ------------------------------------------------------- leases and reports

    def _maintain(self) -> None:
        """Tick the leases and print the progress line when due."""
        now = time.monotonic()
        if now >= self._next_tick:
            ok, state = self._db_call(self._leases.tick)
            if ok:
                self._after_tick(state)
            else:
                # Retry soon: the leases lapse after a ttl, and publishing stops before that.
                self._next_tick = now + min(self._db_pause_s, self._config.lease_ttl_s / 8)
        if now >= self._next_progress:
            self._progress()

    def _after_tick(self, state: LeaseState) -> None:
        cfg = self._config
        previous = self._lease_state
        self._lease_state = state
        self.stats.claimed += len(state.claimed)
        self.stats.shed += len(state.shed)
        if state.claimed or state.shed or previous is None or previous.relays != state.relays:
            log.info("outbox relay %s: holds %d of the shards (fair share %d of %d relays); claimed %s, shed %s",
                     cfg.relay_id, len(state.shards), state.fair_share, state.relays, shard_ranges(state.claimed), shard_ranges(state.shed))
        interval = cfg.lease_ttl_s / 4
        if len(state.shards) < state.fair_share:
            interval = min(interval, 0.5)  # shards may be freed by others soon: look again shortly
        self._next_tick = time.monotonic() + interval

    def _progress(self) -> None:
        cfg = self._config
        now = time.monotonic()
        then, published_then = self._last_progress
        rate = (self.stats.published - published_then) / max(now - then, 1e-9)
        self._last_progress = (now, self.stats.published)
        self._next_progress = now + cfg.progress_interval_s
        ok, lag = self._db_call(lambda: outbox_lag(self._engine))
        if ok:
            oldest = "-" if lag.oldest_age_ms is None else f"{lag.oldest_age_ms} ms"
            lag_text = f"lag {lag.rows} rows, oldest {oldest}"
        else:
            lag_text = "lag unknown (database unreachable)"
        state = self._lease_state
        shards = f"{len(self._leases.valid_shards())} shards of {state.relays} relays" if state else "no shards yet"
        extra = ""
        if (batch := self._in_flight) is not None and (waited_s := now - batch.sent_at) >= 5:
            extra += f", {batch.outstanding} rows unacknowledged for {waited_s:.0f} s (broker unreachable?)"
        if self._parked:
            extra += f", {len(self._parked)} orders parked"
        log.info("outbox relay %s: %d published (%.0f/s), %s, %s%s", cfg.relay_id, self.stats.published, rate, shards, lag_text, extra)

    # ------------------------------------------------------------- publishing

    def _new_producer(self) -> ProducerLike:
        self._producer_fatal = None
        config = {**relay_producer_config(self._config.bootstrap), "error_cb": self._on_client_error}
        return self._producer_factory(config)

    def _on_client_error(self, err: KafkaError) -> None:
        self._last_client_error = str(err)
        if err.fatal():
            self._producer_fatal = err

    def _send(self, rows: list[OutboxRow]) -> SentBatch:
        assert self._producer is not None
        produce, topic = self._producer.produce, self._config.topic
        batch = SentBatch(rows)
        refused: set[str] = set()
        for i, row in enumerate(rows):
            if row.order_id in refused:
                continue  # an earlier row of this order could not be sent: sending a later one would reorder
            try:
                produce(topic, row.payload, row.order_id.encode(), timestamp=row.timestamp_ms,
                        on_delivery=functools.partial(batch.delivered, i))
            except BufferError:
                # The local queue is full (never with sane batch sizes): the rest of the order waits for the next batch.
                refused.add(row.order_id)
                continue
            except KafkaException as exc:
                refused.add(row.order_id)
                self._park(row, exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None, _describe(exc))
                continue
            batch.sent += 1
            batch.outstanding += 1
        return batch

    def _await_acks(self, batch: SentBatch, stop: threading.Event) -> bool:
        """Wait until every record of ``batch`` is acknowledged or failed (True), or the batch is abandoned (False)."""
        assert self._producer is not None
        cfg = self._config
        give_up_at: float | None = None
        next_wait_report = batch.sent_at + cfg.report_interval_s
        while batch.outstanding > 0:
            self._producer.flush(0.1)
            if batch.outstanding <= 0:
                break
            now = time.monotonic()
            if self._producer_fatal is not None:
                log.warning("outbox relay %s: the producer failed (%s); abandoning a batch of %d rows, they are published again",
                            cfg.relay_id, self._producer_fatal, len(batch.rows))
                self._abandon(batch)
                return False
            if stop.is_set():
                give_up_at = give_up_at if give_up_at is not None else now + cfg.stop_grace_s
                if now >= give_up_at:
                    log.info("outbox relay %s: stopping with %d rows unacknowledged; they are published again later",
                             cfg.relay_id, batch.outstanding)
                    self._abandon(batch)
                    return False
            if now >= next_wait_report:
                self.stats.broker_waits += 1
                if self._broker.since is None:
                    self._broker.since = batch.sent_at
                log.warning("outbox relay %s: %d of %d rows unacknowledged for %.0f s (broker %s; last client error: %s); "
                            "the producer retries with backoff, nothing is lost (%d client log lines suppressed)",
                            cfg.relay_id, batch.outstanding, len(batch.rows), now - batch.sent_at, cfg.bootstrap,
                            self._last_client_error or "none", self._noise.dropped)
                next_wait_report = now + cfg.report_interval_s
            self._maintain()
        return True

    def _abandon(self, batch: SentBatch) -> None:
        assert self._producer is not None
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.poll(0)  # serve the purge's delivery reports
        batch.outstanding = 0

    def _settle(self, batch: SentBatch) -> None:
        """Mark what may be marked; park the orders whose rows the broker refused."""
        for index, err in batch.errors.items():
            if err.code() in PURGED or err.fatal():
                continue
            self._park(batch.rows[index], err, str(err))
        ids = batch.markable()
        self.stats.abandoned += batch.sent - len(ids)
        if any(batch.acked):
            self._broker.ok()
        if ids:
            self.stats.batches += 1
            self._pending_marks = ids
            self._flush_pending_marks(None)

    def _flush_pending_marks(self, stop: threading.Event | None) -> bool:
        """Mark the pending rows published; on a database failure keep them pending and back off (False)."""
        ids = self._pending_marks

        def mark() -> None:
            with self._engine.begin() as conn:
                mark_published(conn, ids, published_at_ms=time.time_ns() // 1_000_000)

        ok, _ = self._db_call(mark)
        if ok:
            self.stats.published += len(ids)
            self._pending_marks = []
            return True
        if stop is not None:
            stop.wait(self._db_pause_s)
        return False

    def _park(self, row: OutboxRow, err: KafkaError | None, reason: str) -> None:
        if row.order_id in self._parked:
            return
        self._parked[row.order_id] = reason
        self.stats.parked_orders += 1
        log.warning("outbox relay %s: the broker refused outbox row id=%d (order %s, seq %d): %s; the order is parked, "
                    "its rows stay in the outbox (fix the cause and restart the relay to try it again)",
                    self._config.relay_id, row.id, row.order_id, row.seq, reason)

    def _restart_producer(self, stop: threading.Event) -> None:
        self.stats.producer_restarts += 1
        self._close_producer()
        stop.wait(min(2.0 ** self.stats.producer_restarts, MAX_BACKOFF_S))
        self._producer = self._new_producer()

    def _close_producer(self) -> None:
        if self._producer is not None:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            self._producer = None

    # --------------------------------------------------------------- stopping

    def _shutdown(self) -> None:
        cfg = self._config
        if self._pending_marks:
            self.stats.unmarked += len(self._pending_marks)
            log.warning("outbox relay %s: %d acknowledged rows could not be marked published; they are published again later",
                        cfg.relay_id, len(self._pending_marks))
        self._close_producer()
        if self._db.since is None:
            self._progress()  # a last progress line: what was published, and what is left
        try:
            self._leases.release()
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            log.warning("outbox relay %s: could not release its leases (%s); they lapse after %g s", cfg.relay_id, _describe(exc), cfg.lease_ttl_s)
        log.info("outbox relay %s: stopped; %d rows published in %d batches", cfg.relay_id, self.stats.published, self.stats.batches)

