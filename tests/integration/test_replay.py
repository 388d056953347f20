"""Replay against the real broker: from zero, as of T, from snapshots, twice, interrupted, via the CLI.

One workload (a few thousand orders, poison on) is produced once to a unique topic;
every expected value comes from the workload oracle or is computed here from the
oracle's event table, never from projection code.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from rocksdict import AccessType, Options, Rdict
from typer.testing import CliRunner

from pipelines.dlq import headers_to_dict
from pipelines.readback import read_to_end
from pipelines.settings import RewindSettings
from pipelines.topics import admin_client
from scripts import cli_replay
from scripts.workload import Oracle, Workload, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import (
    expected_customers,
    expected_dead_letters,
    expected_order_status,
    expected_payments_daily,
    expected_skus,
)
from state.errors import ReplayInterruptedError
from state.replay.engine import ReplayRequest, ReplayResult, run_replay
from state.replay.plan import ReplayPlan
from state.replay.progress import NullProgress
from state.rocks_open import raw_items
from state.rocks_store import open_store

pytestmark = pytest.mark.integration

CONFIG = WorkloadConfig(seed=31, orders=2500, days=4, poison_rate=0.02)
PARTITIONS = 4
CLOSED = {"DELIVERED", "CANCELLED", "REFUNDED"}


@dataclass(frozen=True)
class Log:
    """The produced workload: where it is, and its oracle."""

    bootstrap: str
    topic: str
    workload: Workload
    oracle: Oracle

    def order_ids(self) -> list[str]:
        return sorted({r.order_id for r in self.workload.records})


#: Topics this module created (deleted at the end: the broker is shared).
CREATED: list[str] = []


@pytest.fixture(scope="module")
def log(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    topic = f"t-replay-{uuid.uuid4().hex[:8]}.orders"
    CREATED.append(topic)
    workload = generate(CONFIG)
    produce_workload(RewindSettings(kafka_bootstrap_servers=kafka_bootstrap, orders_partitions=PARTITIONS), workload,
                     topic=topic, progress=False)
    path = tmp_path_factory.mktemp("oracle") / "oracle.sqlite"
    write_oracle(workload, path, topic=topic)
    oracle = Oracle.open(path)
    yield Log(kafka_bootstrap, topic, workload, oracle)
    oracle.close()
    admin = admin_client(kafka_bootstrap)  # held while the futures run: a dropped client cancels them
    for future in admin.delete_topics(CREATED, operation_timeout=30).values():
        future.result()


def replay(log: Log, into: Path, view: str, **kwargs: Any) -> ReplayResult:
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("facts_dir", into.parent / "log-facts")  # as-of replays stop where the log's facts prove it safe
    kwargs.setdefault("facts_range_records", 256)
    return run_replay(ReplayRequest(view=view, bootstrap=log.bootstrap, topic=log.topic, into=into,
                                    max_lateness_ms=CONFIG.max_lateness_ms, **kwargs))


def dump(output: Path, view: str, keys: list[str]) -> dict[str, list[tuple[int, int | None, dict[str, Any]]]]:
    """Every version of every key: what "identical views" means."""
    store = open_store(output / "view", read_only=True)
    try:
        return {k: [(v.valid_from_ms, v.valid_to_ms, dict(v.row)) for v in store.history(view, k)] for k in keys}
    finally:
        store.close()


def current_rows(output: Path, view: str, keys: list[str]) -> dict[str, dict[str, Any] | None]:
    store = open_store(output / "view", read_only=True)
    try:
        return {k: (dict(r.row) if (r := store.get(view, k)) is not None else None) for k in keys}
    finally:
        store.close()


def customers_as_of(oracle: Oracle, t_ms: int) -> dict[str, dict[str, int]]:
    """customer-summary as of T from the oracle's events: per order the visible prefix (all occurredAt <= T)."""
    rows: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(
        ("ordersPlaced", "ordersDelivered", "ordersCancelled", "lifetimeValueMinor", "openOrders"), 0))
    cut: set[str] = set()
    status: dict[str, str] = {}
    for e in sorted((e for e in oracle.events() if e.poison_kind is None), key=lambda e: (e.order_id, e.seq)):
        if e.order_id in cut or e.occurred_at_ms > t_ms:
            cut.add(e.order_id)
            continue
        assert e.customer_id is not None and e.status_after is not None and e.ltv_delta_minor is not None, e  # a good event
        row = rows[e.customer_id]
        was_open = e.order_id in status and status[e.order_id] not in CLOSED
        status[e.order_id] = e.status_after
        row["ordersPlaced"] += e.event_type == "OrderPlaced"
        row["ordersDelivered"] += e.event_type == "OrderDelivered"
        row["ordersCancelled"] += e.event_type == "OrderCancelled"
        row["lifetimeValueMinor"] += e.ltv_delta_minor
        row["openOrders"] += 1 if e.event_type == "OrderPlaced" else (-1 if was_open and e.status_after in CLOSED else 0)
    return dict(rows)


def subset(row: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any] | None:
    return None if row is None else {k: row.get(k) for k in fields}


def test_replay_from_zero_equals_the_oracle(log: Log, tmp_path: Path) -> None:
    """Scenario: order-status, customer-summary and product-sales replayed from offset zero by two worker
    processes. We expect every row to equal the oracle's final state, and every poison record counted."""
    result = replay(log, tmp_path / "os", "order-status", workers=2)
    expected = expected_order_status(log.oracle)
    got = current_rows(result.output, "order-status", sorted(expected))
    assert {k: subset(got[k], row) for k, row in expected.items()} == expected
    manifest = result.manifest
    assert manifest.complete and manifest.next_offsets == result.plan.high_watermarks
    assert manifest.counters["dead_lettered"] == sum(expected_dead_letters(log.oracle).values())
    assert manifest.counters["events_in"] == len(log.workload.records)

    customers = expected_customers(log.oracle)
    got_c = current_rows(replay(log, tmp_path / "cs", "customer-summary", workers=2).output, "customer-summary", sorted(customers))
    assert {k: subset(got_c[k], v) for k, v in customers.items()} == customers
    skus = {k: {f: v[f] for f in ("unitsOrdered", "unitsReserved", "unitsShipped", "unitsRefunded", "revenueMinor")}
            for k, v in expected_skus(log.oracle).items()}
    got_s = current_rows(replay(log, tmp_path / "ps", "product-sales", workers=2).output, "product-sales", sorted(skus))
    assert {k: subset(got_s[k], v) for k, v in skus.items()} == skus


def test_replaying_twice_gives_identical_views(log: Log, tmp_path: Path) -> None:
    """Scenario: customer-summary (merged across partitions) replayed in-process and by two workers, whose
    interleaving differs run to run. We expect the same versions of every key, and the same order-status."""
    keys = sorted(expected_customers(log.oracle))
    one = dump(replay(log, tmp_path / "a", "customer-summary", workers=0).output, "customer-summary", keys)
    two = dump(replay(log, tmp_path / "b", "customer-summary", workers=2).output, "customer-summary", keys)
    assert one == two and sum(len(v) for v in one.values()) > len(keys)
    orders = log.order_ids()[:500]
    assert dump(replay(log, tmp_path / "c", "order-status").output, "order-status", orders) == dump(
        replay(log, tmp_path / "d", "order-status").output, "order-status", orders)


def raw_store(output: Path) -> dict[bytes, bytes]:
    """Every key and value of a replay's view store, as stored."""
    db = Rdict(str(output / "view"), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return dict(raw_items(db, from_key=b""))
    finally:
        db.close()


def test_order_status_writes_encoded_by_the_workers_equal_the_stores_own(log: Log, tmp_path: Path) -> None:
    """Scenario: order-status replayed by two workers that encode the store's writes themselves
    (state.encoded_writes), and with the parent applying every update: from zero, as of T (orders
    cut), and as of T from a snapshot built up to T0 (the workers' rows come from its fold state).
    We expect byte-identical stores and the same counts each time."""
    snapshots = tmp_path / "snapshots"
    t0 = CONFIG.start_ms + 2 * 86_400_000
    replay(log, snapshots / "order-status" / "snap-0-manual", "order-status", mode="up-to", as_of_ms=t0, workers=2)
    t = t0 + 9 * 3_600_000
    for name, kwargs in (("zero", {}), ("as-of", {"mode": "as-of", "as_of_ms": t}),
                         ("seeded", {"mode": "as-of", "as_of_ms": t, "snapshots_root": snapshots})):
        encoded = replay(log, tmp_path / f"{name}-encoded", "order-status", workers=2, **kwargs)
        applied = replay(log, tmp_path / f"{name}-applied", "order-status", workers=2, encode_in_workers=False, **kwargs)
        assert (encoded.snapshot is not None) == (name == "seeded") == (applied.snapshot is not None)
        assert encoded.updates_written == applied.updates_written > 0
        assert encoded.manifest.counters == applied.manifest.counters
        assert raw_store(encoded.output) == raw_store(applied.output), name


def test_snapshot_started_replay_equals_replay_from_zero(log: Log, tmp_path: Path) -> None:
    """Scenario: a snapshot built up to T0, then replays as of T > T0 and to the end. We expect them to
    start from the snapshot and to equal the same replays from offset zero, version for version."""
    snapshots = tmp_path / "snapshots"
    t0 = CONFIG.start_ms + 2 * 86_400_000
    built = replay(log, snapshots / "customer-summary" / "snap-0-manual", "customer-summary", mode="up-to", as_of_ms=t0)
    assert built.manifest.complete and (built.manifest.max_valid_from_ms or 0) <= t0
    assert built.manifest.watermark_ms is None  # an up-to stop comes from record timestamps: it proves nothing
    keys = sorted(expected_customers(log.oracle))
    for mode, t in (("as-of", t0 + 12 * 3_600_000), ("to-end", None)):
        seeded = replay(log, tmp_path / f"seeded-{mode}", "customer-summary", mode=mode, as_of_ms=t, snapshots_root=snapshots, workers=2)
        zero = replay(log, tmp_path / f"zero-{mode}", "customer-summary", mode=mode, as_of_ms=t)
        assert seeded.snapshot == "snap-0-manual" and zero.snapshot is None
        assert seeded.records_read < zero.records_read
        assert dump(seeded.output, "customer-summary", keys) == dump(zero.output, "customer-summary", keys)
        assert seeded.manifest.next_offsets == zero.manifest.next_offsets
    # Before T0 the snapshot holds versions that are not visible yet: not usable, so from zero.
    early = replay(log, tmp_path / "early", "customer-summary", mode="as-of", as_of_ms=t0 - 3_600_000, snapshots_root=snapshots)
    assert early.snapshot is None


def test_payments_daily_replays_from_zero_and_as_of_t_like_the_oracle(log: Log, tmp_path: Path) -> None:
    """Scenario: the fifth view, declared in one module, replayed to the end and as of two times by two workers.
    We expect every day row to be the oracle's, as of T too, and its ranking index to rank days by authorized amount."""
    expected = expected_payments_daily(log.oracle)
    assert len(expected) > 5
    result = replay(log, tmp_path / "pd", "payments-daily", workers=2)
    got = current_rows(result.output, "payments-daily", sorted(expected))
    assert {k: subset(got[k], v) for k, v in expected.items()} == expected
    store = open_store(result.output / "view", read_only=True)
    try:
        top = [r.key for r in store.scan_index("payments-daily", "authorized", limit=3)]
    finally:
        store.close()
    by_amount = sorted(expected, key=lambda k: (-expected[k]["authorizedMinor"], k))[:3]
    assert top == by_amount
    rng = random.Random(11)
    for i, t in enumerate(CONFIG.start_ms + rng.randrange(CONFIG.end_ms - CONFIG.start_ms) for _ in range(2)):
        as_of = expected_payments_daily(log.oracle, as_of_ms=t)
        built = replay(log, tmp_path / f"pd-{i}", "payments-daily", mode="as-of", as_of_ms=t, workers=2)
        got_t = current_rows(built.output, "payments-daily", sorted(set(expected)))
        assert {k: subset(r, expected[k]) for k, r in got_t.items() if r is not None} == as_of, f"as of {t}"


def test_as_of_replay_equals_the_oracle_for_many_t(log: Log, tmp_path: Path) -> None:
    """Scenario: as-of replays at random times (and exactly at an event time). We expect every order's
    status to be the oracle's as of T, and customer-summary to be the fold of the visible prefixes."""
    rng = random.Random(7)
    events = [e for e in log.oracle.events() if e.poison_kind is None]
    times = [CONFIG.start_ms + rng.randrange(CONFIG.end_ms - CONFIG.start_ms) for _ in range(5)]
    times.append(rng.choice(events).occurred_at_ms)  # exactly at an event: the bound is inclusive
    orders = log.order_ids()
    for i, t in enumerate(times):
        result = replay(log, tmp_path / f"os-{i}", "order-status", mode="as-of", as_of_ms=t)
        got = current_rows(result.output, "order-status", orders)
        expected = {o: (str(s) if (s := log.oracle.order_status_as_of(o, t)) is not None else None) for o in orders}
        assert {o: (r["status"] if r else None) for o, r in got.items()} == expected, f"as of {t}"
        assert result.manifest.watermark_ms == t and result.plan.stop_proven
    for i, t in enumerate(times[:2]):
        expected_c = customers_as_of(log.oracle, t)
        result = replay(log, tmp_path / f"cs-{i}", "customer-summary", mode="as-of", as_of_ms=t)
        got_c = current_rows(result.output, "customer-summary", sorted(expected_c))
        assert {k: subset(got_c[k], v) for k, v in expected_c.items()} == expected_c, f"as of {t}"


def test_versioned_reads_of_a_replay_agree_with_as_of_replays(log: Log, tmp_path: Path) -> None:
    """Scenario: the two ways of time travel. We expect "row as of T" read from a full replay's versions to
    equal the row of an as-of-T replay, for every order."""
    full = open_store(replay(log, tmp_path / "full", "order-status").output / "view", read_only=True)
    t = CONFIG.start_ms + (CONFIG.end_ms - CONFIG.start_ms) // 2
    orders = log.order_ids()
    as_of = current_rows(replay(log, tmp_path / "asof", "order-status", mode="as-of", as_of_ms=t).output, "order-status", orders)
    try:
        read = {o: (dict(v.row) if (v := full.get_as_of("order-status", o, t)) is not None else None) for o in orders}
    finally:
        full.close()
    assert read == as_of


def test_dead_letters_are_opt_in_and_keep_the_live_headers(log: Log, tmp_path: Path) -> None:
    """Scenario: a replay with a DLQ topic given. We expect one record per dead letter, with the original
    bytes and the DLQ headers naming the replay; without one, letters are only counted."""
    dlq = f"t-replay-{uuid.uuid4().hex[:8]}.dlq"
    CREATED.append(dlq)
    result = replay(log, tmp_path / "dlq", "order-status", workers=2, dlq_topic=dlq)
    letters = read_to_end(log.bootstrap, dlq)
    assert len(letters) == result.manifest.counters["dead_lettered"] == sum(expected_dead_letters(log.oracle).values())
    headers = headers_to_dict(letters[0].headers())
    assert headers["rewind.pipeline"] == "replay:order-status" and headers["rewind.source.topic"] == log.topic
    poison_bytes = {r.value for r in log.workload.records if r.poison is not None}
    assert {m.value() for m in letters} <= poison_bytes


def test_an_interrupted_replay_leaves_nothing_behind(log: Log, tmp_path: Path) -> None:
    """Scenario: the stop flag (what SIGINT/SIGTERM set) is raised after the first batch. We expect
    ReplayInterruptedError, no output, no build directory."""
    stop = threading.Event()

    class StopAfterFirst(NullProgress):
        def update(self, next_offsets: Mapping[int, int], *, records: int) -> None:
            stop.set()

        def start(self, plan: ReplayPlan, *, description: str) -> None:
            pass

    into = tmp_path / "never"
    request = ReplayRequest(view="order-status", bootstrap=log.bootstrap, topic=log.topic, into=into, workers=2, batch_size=500)
    with pytest.raises(ReplayInterruptedError):
        run_replay(request, progress=StopAfterFirst(), stop=stop)
    assert not into.exists() and not into.with_name("never.tmp").exists()


def test_cli_replay_swap_and_snapshot(log: Log, tmp_path: Path) -> None:
    """Scenario: `rewind replay NAME --swap` twice, then `rewind snapshot NAME`. We expect current to point at
    the second build, previous at the first, and a snapshot tagged with the served view's next offsets."""
    app = typer.Typer()
    cli_replay.register(app)
    env = {"REWIND_STATE_DIR": str(tmp_path), "REWIND_ORDERS_TOPIC": log.topic, "KAFKA_BOOTSTRAP_SERVERS": log.bootstrap}
    runner = CliRunner()
    outputs = []
    for _ in range(2):
        run = runner.invoke(app, ["replay", "order-status", "--swap", "--workers", "0", "--no-progress"], env=env)
        assert run.exit_code == 0, run.output
        outputs.append(json.loads(run.stdout.split("REWIND_REPLAY ", 1)[1]))
    views = tmp_path / "views" / "order-status"
    assert (views / "current").resolve() == Path(outputs[1]["output"]).resolve()
    assert (views / "previous").resolve() == Path(outputs[0]["output"]).resolve()
    run = runner.invoke(app, ["snapshot", "order-status"], env=env)
    assert run.exit_code == 0, run.output
    snap = json.loads(run.stdout.split("REWIND_SNAPSHOT ", 1)[1])
    assert snap["next_offsets"] == outputs[1]["next_offsets"] and Path(snap["path"]).is_dir()
    bad = runner.invoke(app, ["replay", "order-status", "--as-of", "2024-01-02T00:00:00", "--no-progress"], env=env)
    assert bad.exit_code != 0  # a time without a zone is refused
