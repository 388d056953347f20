"""The command side under kill -9, on the real broker and both databases (issue 13, point 5).

`rewind orders serve` and `rewind outbox relay` run as subprocesses on one database; a driver walks a few
hundred orders through their lifecycle over HTTP (with illegal commands mixed in) while the relay is killed at
random moments and the service mid-command, both restarted each time (:mod:`scripts.command_side_crash`). Then
the orders topic must be exactly the events table (by eventId; only extra copies of published events), and the
order-status view folded from the topic must say what the events table says, by this file's own lifecycle table.
No sleep synchronises: every wait polls with a deadline (the random pause before a relay kill shapes the load).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipelines.orders.event_store import open_event_store
from pipelines.orders.service import create_app
from scripts.command_side_crash import (
    CrashConfig,
    check_log,
    counts_table,
    driver_faults,
    plan_orders,
    read_event_store,
    run_crash,
    run_view,
)
from tests.integration.command_side_support import database_url_for, fold_event_store, view_faults

pytestmark = pytest.mark.integration

#: The order lifecycle, written here as the oracle (not imported from the fold): (status before, event) -> status after.
STATUS_AFTER: dict[tuple[str | None, str], str] = {
    (None, "OrderPlaced"): "PLACED",
    ("PLACED", "PaymentAuthorized"): "PAYMENT_AUTHORIZED",
    ("PLACED", "PaymentFailed"): "PAYMENT_FAILED",
    ("PAYMENT_FAILED", "OrderCancelled"): "CANCELLED",
    ("PAYMENT_AUTHORIZED", "OrderCancelled"): "CANCELLED",
    ("PAYMENT_AUTHORIZED", "InventoryReserved"): "INVENTORY_RESERVED",
    ("INVENTORY_RESERVED", "InventoryReleased"): "INVENTORY_RELEASED",
    ("INVENTORY_RELEASED", "OrderCancelled"): "CANCELLED",
    ("INVENTORY_RESERVED", "OrderShipped"): "SHIPPED",
    ("SHIPPED", "OrderDelivered"): "DELIVERED",
    ("DELIVERED", "RefundIssued"): "REFUNDED",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url_for(request, request.param, tmp_path)


def test_the_driver_plan_is_what_the_service_decides(tmp_path: Path) -> None:
    """Scenario: 80 planned orders, each with an illegal command, sent in-process to the service on SQLite with no
    crash. We expect every legal command committed and every illegal one refused with its planned status, so that in
    the crash test any other answer is the crash's doing."""
    store = open_event_store(f"sqlite:///{tmp_path / 'orders.sqlite'}")
    try:
        client = TestClient(create_app(store))
        wrong = []
        kinds: set[tuple[str, int]] = set()
        for plan in plan_orders(80, seed=3, illegal_rate=1.0):
            for step in plan.steps:
                response = client.post(step.path, json=step.body)
                ok = response.status_code == step.refusal if step.refusal else 200 <= response.status_code < 300
                if not ok:
                    wrong.append(f"{step.name} {step.path}: {response.status_code} {response.text[:200]}")
                if step.refusal:
                    kinds.add((step.name, step.refusal))
    finally:
        store.engine.dispose()
    assert not wrong, wrong[:10]
    assert len(kinds) >= 12 and {status for _, status in kinds} == {404, 409, 422}, sorted(kinds)


def test_kill9_of_the_relay_and_the_service_loses_nothing_and_publishes_nothing_uncommitted(
        kafka_bootstrap: str, unique_name: str, database_url: str, tmp_path: Path) -> None:
    """Scenario: 300 orders' commands (some illegal) arrive over HTTP while the relay is killed with SIGKILL 5 times and
    the order service twice mid-command, each restarted; the driver retries a command of unknown outcome with its
    commandId. We expect every committed event in the topic and nothing else, first copies in seq order per order,
    the view equal to the events table, every answer the planned one (committed commands sent again at the end: replays
    of the same event), and rejected == illegal commands sent."""
    started = time.monotonic()
    cfg = CrashConfig(database_url=database_url, bootstrap=kafka_bootstrap, topic=f"{unique_name}.orders", log_dir=tmp_path / "logs",
                      orders=300, relay_kills=5, service_kills=2, rate_per_s=60.0)
    run = run_crash(cfg)
    contents = read_event_store(database_url)
    stored = contents.events
    log = check_log(stored, bootstrap=kafka_bootstrap, topic=cfg.topic, partitions=cfg.partitions)
    view = run_view(bootstrap=kafka_bootstrap, orders_topic=cfg.topic, name=unique_name, state_dir=tmp_path / "state",
                    log_path=tmp_path / "logs" / "view.log")
    counts = run.driver.counts
    print(f"\n{database_url.split(':')[0]}: {len(run.driver.plans)} orders\n{counts_table(run, log, view)}\n"
          f"traffic {run.traffic_s:.1f} s, drain {run.drain_s:.1f} s, view {view.seconds:.1f} s, wall {time.monotonic() - started:.1f} s")

    # The kills happened, while commands were arriving; both stopped cleanly at the end.
    assert run.relay_kills == run.relay_kills_while_sending == 5
    assert run.service_kills == run.service_kills_while_sending == 2
    assert all(n >= 1 for n in run.in_flight_at_service_kills), run.in_flight_at_service_kills
    assert counts.failed > 0  # the driver saw the service down
    assert (run.relay_exit_code, run.service_exit_code) == (0, 0)
    # Every command got its planned answer, once: no retry made a second event.
    assert counts.unexpected == [] and counts.gave_up == 0
    assert counts.sent == counts.committed + counts.rejected
    assert counts.resent == counts.resent_replayed == 50  # committed commands sent again at the end: replays, nothing new
    assert counts.rejected == counts.illegal_sent > 0
    assert driver_faults(run.driver, stored) == []
    assert len(stored) == counts.committed
    # The outbox is the events table, all of it published; the topic is the events table.
    assert contents.outbox_faults == []
    assert log.missing == [] and log.phantoms == [] and log.altered == [] and log.out_of_order == []
    assert log.distinct == log.events == counts.committed
    assert log.records == log.events + log.published_twice
    # The view says what the events table says, folded with this file's own lifecycle table.
    expected, store_faults = fold_event_store(stored, STATUS_AFTER)
    assert store_faults == []
    assert len(expected) == len(run.driver.plans)  # every planned order was placed
    assert view_faults(view.rows, expected) == []
    assert view.dead_letters == 0
    assert view.stats["events_in"] == log.records and view.stats["applied"] == log.events
    assert view.stats["duplicates"] == log.published_twice
