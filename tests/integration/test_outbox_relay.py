"""`rewind outbox relay` on the real broker, on SQLite and PostgreSQL: every committed row reaches the orders topic,
in seq order per order, once in the normal case; two relays split the shards; kill -9 loses nothing.

Outbox rows are written directly (as the order service's transactions would), with real event bytes from the
workload generator; the relay runs as a subprocess, as an operator runs it. No sleeps synchronise: every wait polls
with a deadline.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, insert, select

from pipelines.orders.database import migrate, open_database
from pipelines.orders.relay_outbox import outbox_lag
from pipelines.orders.tables import outbox, outbox_shard
from pipelines.partitioning import partition_for
from scripts.workload import WorkloadConfig, generate
from tests.integration.support import read_topic, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 6


@dataclass(frozen=True)
class Row:
    """One outbox row to write: an event of the workload generator, as the order service would have stored it."""

    order_id: str
    seq: int
    payload: bytes
    timestamp_ms: int


def workload_rows(orders: int, *, seed: int = 7) -> list[Row]:
    """The generator's events of ``orders`` orders, interleaved as they arrive but each order's in seq order
    (its k-th arrival becomes its k-th seq: commands on one order commit one after the other)."""
    records = [r for r in generate(WorkloadConfig(seed=seed, orders=orders, late_rate=0.0, skew_rate=0.0)).records if r.poison is None]
    by_order: dict[str, list[Any]] = {}
    for r in records:
        by_order.setdefault(r.order_id, []).append(r)
    for events in by_order.values():
        events.sort(key=lambda r: r.seq)
    taken: dict[str, int] = {}
    rows = []
    for r in records:
        k = taken.get(r.order_id, 0)
        taken[r.order_id] = k + 1
        e = by_order[r.order_id][k]
        rows.append(Row(e.order_id, e.seq, e.value, e.timestamp_ms))
    return rows


def write_rows(engine: Engine, rows: list[Row]) -> None:
    """Insert ``rows`` in one transaction, in list order."""
    now = time.time_ns() // 1_000_000
    with engine.begin() as conn:
        conn.execute(insert(outbox), [
            {"order_id": r.order_id, "seq": r.seq, "shard": outbox_shard(r.order_id), "payload": r.payload,
             "timestamp_ms": r.timestamp_ms, "created_at": now} for r in rows
        ])


class Writer:
    """Writes ``rows`` in small transactions from a thread, as commands keep arriving (``pace_s`` between them)."""

    def __init__(self, engine: Engine, rows: list[Row], *, chunk: int = 40, pace_s: float = 0.02) -> None:
        self.engine, self.rows, self.chunk, self.pace_s = engine, rows, chunk, pace_s
        self.written = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while self.written < len(self.rows) and not self._stop.is_set():
                part = self.rows[self.written:self.written + self.chunk]
                write_rows(self.engine, part)
                self.written += len(part)
                self._stop.wait(self.pace_s)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout_s: float = 120) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the writer did not finish"
        assert self.error is None, self.error


#: Every relay a test started: the ones still running when it ends (a failed test) are killed.
_STARTED: list[RelayProcess] = []


@pytest.fixture(autouse=True)
def _kill_leftover_relays() -> Iterator[None]:
    yield
    while _STARTED:
        relay = _STARTED.pop()
        if relay.alive():
            relay.kill9()


@dataclass
class RelayProcess:
    """`rewind outbox relay` as a child process, its output in a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *, bootstrap: str, database_url: str, topic: str, log_path: Path, args: tuple[str, ...] = ()) -> RelayProcess:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REWIND_DATABASE_URL": database_url,
               "REWIND_ORDERS_TOPIC": topic, "REWIND_ORDERS_PARTITIONS": str(PARTITIONS), "PYTHONUNBUFFERED": "1"}
        with log_path.open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "outbox", "relay", "--progress-interval-s", "1", *args],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        relay = cls(proc, log_path, list(args))
        _STARTED.append(relay)
        return relay

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, *, within_s: float = 8.0) -> dict[str, Any]:
        """SIGTERM; assert exit 0 within ``within_s``; the counters it printed."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the relay did not exit within {within_s:g}s of SIGTERM:\n{self.log()[-3000:]}") from None
        assert rc == 0, f"the relay exited {rc}:\n{self.log()[-3000:]}"
        print(f"relay stopped {time.monotonic() - started:.1f}s after SIGTERM")
        stats = [line for line in self.log().splitlines() if line.startswith("REWIND_RELAY_STATS ")]
        assert stats, f"no stats line:\n{self.log()[-3000:]}"
        counters: dict[str, Any] = orjson.loads(stats[-1].removeprefix("REWIND_RELAY_STATS "))
        return counters

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


@dataclass(frozen=True)
class TopicCheck:
    """What the topic holds against the rows written: records, rows published twice or more (extra copies)."""

    records: int
    duplicates: int


def check_topic(bootstrap: str, topic: str, rows: list[Row]) -> TopicCheck:
    """Assert the topic holds every row (value bytes, key, timestamp, murmur2 partition), nothing else, and each order's
    first occurrences in seq order within its partition; return how many extra copies there are."""
    by_payload = {r.payload: r for r in rows}  # every event's bytes are unique (its eventId)
    assert len(by_payload) == len(rows)
    seen: dict[tuple[str, int], int] = {}
    last_seq: dict[str, int] = {}
    messages = read_topic(bootstrap, topic, timeout_s=120)
    messages.sort(key=lambda m: (m.partition(), m.offset()))
    for m in messages:
        row = by_payload.get(m.value())
        assert row is not None, f"record at {m.partition()}/{m.offset()} matches no row written"
        order_id, seq = row.order_id, row.seq
        assert m.key() == order_id.encode() and m.timestamp()[1] == row.timestamp_ms
        assert m.partition() == partition_for(m.key(), PARTITIONS)
        key = (order_id, seq)
        if key not in seen:
            assert seq == last_seq.get(order_id, 0) + 1, f"order {order_id}: seq {seq} first seen after seq {last_seq.get(order_id, 0)}"
            last_seq[order_id] = seq
        seen[key] = seen.get(key, 0) + 1
    missing = {(r.order_id, r.seq) for r in rows} - set(seen)
    assert not missing, f"{len(missing)} rows never published, e.g. {sorted(missing)[:5]}"
    return TopicCheck(len(messages), sum(n - 1 for n in seen.values()))


def outbox_status(database_url: str) -> dict[str, Any]:
    """What `rewind outbox status` prints (one JSON line)."""
    status = subprocess.run([sys.executable, "-m", "scripts.cli", "outbox", "status"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "REWIND_DATABASE_URL": database_url}, timeout=60)
    assert status.returncode == 0, status.stderr
    reported: dict[str, Any] = orjson.loads(status.stdout)
    return reported


def published_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_not(None))).scalar_one())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url, pool_size=4)
    migrate(engine)
    yield engine
    engine.dispose()


def test_every_row_reaches_the_topic_once_in_seq_order(kafka_bootstrap: str, unique_name: str, database_url: str, engine: Engine,
                                                      tmp_path: Path) -> None:
    """Scenario: half of 400 orders' events are in the outbox when the relay starts, the rest arrive while it runs. We expect
    each row in the topic exactly once, in seq order per order, on its murmur2 partition, bytes and timestamp unchanged;
    every row marked published; the lag reported while rows wait and zero at the end; exit 0 soon after SIGTERM."""
    rows = workload_rows(400)
    half = len(rows) // 2
    write_rows(engine, rows[:half])
    lag_before = outbox_lag(engine)
    assert lag_before.rows == half and lag_before.oldest_age_ms is not None
    assert outbox_status(database_url)["unpublished_rows"] == half
    relay = RelayProcess.start(bootstrap=kafka_bootstrap, database_url=database_url, topic=unique_name, log_path=tmp_path / "relay.log")
    writer = Writer(engine, rows[half:])
    writer.join()
    wait_until(lambda: outbox_lag(engine).rows == 0, timeout_s=120, what="the outbox to drain")
    reported = outbox_status(database_url)
    assert reported["unpublished_rows"] == 0 and reported["oldest_unpublished_age_ms"] is None
    assert sum(reported["relays"].values()) == 64
    stats = relay.terminate()
    assert stats["published"] == len(rows) and stats["abandoned"] == 0
    check = check_topic(kafka_bootstrap, unique_name, rows)
    assert check.duplicates == 0 and check.records == len(rows)
    assert published_rows(engine) == len(rows)
    lags = [int(n) for n in re.findall(r"lag (\d+) rows", relay.log())]
    assert lags and lags[-1] == 0, relay.log()[-2000:]
    print(f"{len(rows)} rows published once each; lag per progress line: {lags}")


def test_two_relays_on_postgres_split_the_shards_and_never_publish_a_row_twice(kafka_bootstrap: str, unique_name: str,
                                                                               postgres_url: str, tmp_path: Path) -> None:
    """Scenario: one relay runs on PostgreSQL, a second joins while events keep arriving. We expect 32 shards each, both
    publishing, every row in the topic exactly once and each order's records in seq order in its partition."""
    engine = open_database(postgres_url, pool_size=4)
    migrate(engine)
    rows = workload_rows(800, seed=11)
    start = {"bootstrap": kafka_bootstrap, "database_url": postgres_url, "topic": unique_name}
    a = RelayProcess.start(**start, log_path=tmp_path / "a.log", args=("--relay-id", "relay-a", "--batch-size", "100"))
    # Half the rows arrive while a runs alone and while b joins, the other half once b holds its share.
    half = len(rows) // 2
    writer = Writer(engine, rows[:half], chunk=10, pace_s=0.02)
    wait_until(lambda: published_rows(engine) > 200, timeout_s=60, what="relay a to publish")
    b = RelayProcess.start(**start, log_path=tmp_path / "b.log", args=("--relay-id", "relay-b", "--batch-size", "100"))
    wait_until(lambda: "holds 32 of the shards" in b.log(), timeout_s=60, what="relay b to get its fair share")
    assert "shed 32-63" in a.log()
    writer.join()
    Writer(engine, rows[half:], chunk=10, pace_s=0.01).join()
    wait_until(lambda: outbox_lag(engine).rows == 0, timeout_s=120, what="the outbox to drain")
    stats_a, stats_b = a.terminate(), b.terminate()
    engine.dispose()
    assert stats_a["published"] > 0 and stats_b["published"] > 0
    assert stats_a["published"] + stats_b["published"] == len(rows)
    check = check_topic(kafka_bootstrap, unique_name, rows)
    assert check.duplicates == 0
    print(f"relay a published {stats_a['published']}, relay b {stats_b['published']}, {len(rows)} rows, no duplicates")


def test_kill9_mid_stream_loses_nothing(kafka_bootstrap: str, unique_name: str, database_url: str, engine: Engine, tmp_path: Path) -> None:
    """Scenario: while events keep arriving, the relay is killed with SIGKILL at 5 random moments and restarted (under the
    same id, which takes its leases back at once, or a new one, which waits for them to lapse). We expect every row in
    the topic, each order's first copies in seq order, and copies only of rows in flight at a kill (at most a batch each)."""
    rng = random.Random(13)
    rows = workload_rows(2500, seed=5)
    batch, kills = 200, 5
    start = {"bootstrap": kafka_bootstrap, "database_url": database_url, "topic": unique_name}
    args = ("--batch-size", str(batch), "--lease-ttl-s", "2")
    writer = Writer(engine, rows, chunk=20, pace_s=0.04)  # about 20 s of arriving events
    relay = RelayProcess.start(**start, log_path=tmp_path / "relay-0.log", args=(*args, "--relay-id", "relay-0"))
    for kill in range(1, kills + 1):
        # A random moment: some hundreds of rows after the previous restart, while events still arrive.
        target = min(published_rows(engine) + rng.randrange(100, 600), writer.written)
        wait_until(lambda: published_rows(engine) >= target, timeout_s=90, what=f"progress before kill {kill}")  # noqa: B023 (waited on here, never later)
        assert writer.thread.is_alive(), "the events stopped arriving before the kills were done: slow the writer down"
        relay.kill9()
        relay_id = "relay-0" if kill % 2 else f"relay-{kill}"
        relay = RelayProcess.start(**start, log_path=tmp_path / f"relay-{kill}.log", args=(*args, "--relay-id", relay_id))
    writer.join()
    wait_until(lambda: outbox_lag(engine).rows == 0, timeout_s=120, what="the outbox to drain after the last restart")
    relay.terminate()
    check = check_topic(kafka_bootstrap, unique_name, rows)
    print(f"kill -9 x{kills}: {len(rows)} rows written, {check.records} records in the topic, {check.duplicates} published twice "
          f"(at most {kills} batches of {batch} in flight)")
    assert check.duplicates <= kills * batch
