"""The workload as the order service's commands: one per good event, in order, money exact, and decided by
the real event store into the generator's own events.

Expected values come from the workload's facts (its records and its Order objects) and from the
endpoint table written here, never from the mapping under test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.orders.commands import AuthorizePayment, IssueRefund, PlaceOrder
from pipelines.orders.database import migrate, open_database
from pipelines.orders.event_store import EventStore
from schemas.codec import EventCodec
from scripts.workload import Workload, WorkloadConfig, generate
from scripts.workload.commands import WorkloadCommand, workload_commands

CODEC = EventCodec()

#: The order service's endpoint of each event type (README, "The command side").
ENDPOINT = {
    "OrderPlaced": "/orders", "PaymentAuthorized": "payment", "PaymentFailed": "payment-failure", "InventoryReserved": "reservation",
    "InventoryReleased": "release", "OrderShipped": "shipment", "OrderDelivered": "delivery", "OrderCancelled": "cancellation",
    "RefundIssued": "refund",
}


@pytest.fixture(scope="module")
def commands(poisoned: Workload) -> list[WorkloadCommand]:
    return list(workload_commands(poisoned.records))


def test_every_good_event_becomes_exactly_one_command_in_emission_order(poisoned: Workload, commands: list[WorkloadCommand]) -> None:
    """Scenario: a workload with poison and old schema versions. We expect one command per good record, in emission order, none for poison."""
    assert poisoned.poison_count > 0
    good = list(poisoned.good())
    assert [(c.order_id, c.seq, c.event_type, c.event_id) for c in commands] == [(r.order_id, r.seq, r.event_type, r.event_id) for r in good]
    assert len({c.command.command_id for c in commands}) == len(commands)
    assert all(c.command.command_id == f"cmd-{c.event_id}" for c in commands)


def test_each_orders_commands_are_in_seq_order_at_its_events_times(poisoned: Workload, commands: list[WorkloadCommand]) -> None:
    """Scenario: the commands of each order. We expect seqs 1, 2, 3, ..., each at its record's occurredAt (CreateTime), to its endpoint."""
    times = {r.event_id: r.timestamp_ms for r in poisoned.good()}
    by_order: dict[str, list[WorkloadCommand]] = defaultdict(list)
    for command in commands:
        by_order[command.order_id].append(command)
        assert command.command.occurred_at == times[command.event_id]
        assert command.command.event_type == command.event_type
        endpoint = ENDPOINT[command.event_type]
        assert command.path == (endpoint if endpoint == "/orders" else f"/orders/{command.order_id}/{endpoint}")
    for order_id, seqs in by_order.items():
        assert [c.seq for c in seqs] == list(range(1, len(seqs) + 1)), order_id
    assert set(by_order) == set(poisoned.orders)


def test_money_is_exact(poisoned: Workload, commands: list[WorkloadCommand]) -> None:
    """Scenario: every PlaceOrder, payment and refund. We expect the order's lines, currency and total, and the refund's lines and
    amount, exactly as the workload's orders hold them (integer minor units)."""
    refunds = 0
    for c in commands:
        order = poisoned.orders[c.order_id]
        match c.command:
            case PlaceOrder() as place:
                assert [(i.sku, i.quantity, i.unit_price_minor) for i in place.items] == [(i.sku, i.quantity, i.unit_price_minor) for i in order.items]
                assert place.currency == order.currency and place.total_minor() == order.total_minor and place.customer_id == order.customer_id
                assert place.order_id == order.order_id and place.correlation_id == order.correlation_id
            case AuthorizePayment() as pay:
                assert (pay.amount_minor, pay.currency) == (order.total_minor, order.currency)
            case IssueRefund() as refund:
                refunds += 1
                assert order.refund is not None
                assert refund.amount_minor == order.refund.amount_minor
                assert [(line.sku, line.quantity) for line in refund.items] == [(line.sku, line.quantity) for line in order.refund.lines]
    assert refunds > 0


def test_a_body_is_the_command_again(commands: list[WorkloadCommand]) -> None:
    """Scenario: the JSON body of one command of each type. We expect camelCase fields with no nulls, parsing back to the same command."""
    seen: dict[str, WorkloadCommand] = {}
    for c in commands:
        seen.setdefault(c.event_type, c)
    assert set(seen) == set(ENDPOINT)
    for c in seen.values():
        body = c.body()
        assert None not in body.values() and "commandId" in body and "occurredAt" in body
        assert type(c.command).model_validate(body) == c.command


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    engine = open_database(f"sqlite:///{tmp_path / 'orders.sqlite'}")
    migrate(engine)
    yield EventStore(engine)
    engine.dispose()


def test_the_event_store_decides_the_generators_events(store: EventStore) -> None:
    """Scenario: a small workload (poison, old versions, refunds) executed command by command against a real event store.
    We expect every command accepted and every stored event equal to the generator's, but for what the service assigns itself
    (eventId, causationId = the command id, the newest schema version)."""
    workload = generate(WorkloadConfig(seed=5, orders=150, days=7, poison_rate=0.03, old_version_rate=0.3))
    expected = {r.event_id: CODEC.decode(r.value) for r in workload.good()}
    for c in workload_commands(workload.records):
        answer = store.execute(c.command, order_id=None if c.event_type == "OrderPlaced" else c.order_id)
        decided = CODEC.decode(store.load(c.order_id).events[-1].payload)
        assert answer.json()["seq"] == c.seq
        want = expected[c.event_id]
        for event in (decided, want):
            for assigned in ("eventId", "causationId", "schemaVersion"):
                event["envelope"].pop(assigned)
        assert decided == want, c
        assert answer.status in (200, 201) and not answer.replayed
