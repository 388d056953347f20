"""The generator's good events: contiguous seqs, legal transitions, exact money, bounded lateness, determinism."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from itertools import pairwise

import pytest

from schemas.codec import EventCodec
from schemas.errors import ConfigError
from scripts.workload import Emitted, Workload, WorkloadConfig, generate, next_status
from scripts.workload.events import sales_channel

CODEC = EventCodec()


def _by_order(records: Iterable[Emitted]) -> dict[str, list[Emitted]]:
    out: dict[str, list[Emitted]] = defaultdict(list)
    for r in records:
        out[r.order_id].append(r)
    return out


@pytest.fixture(scope="module", params=["poisoned", "defaults"])
def workload(request: pytest.FixtureRequest) -> Workload:
    return request.getfixturevalue(request.param)


def test_seq_is_contiguous_from_one_in_emission_order(workload: Workload) -> None:
    """Scenario: every order's good records, in emission order. We expect seqs 1, 2, 3, ... (partition order = seq order)."""
    for order_id, records in _by_order(workload.good()).items():
        assert [r.seq for r in records] == list(range(1, len(records) + 1)), order_id


def test_arrival_never_decreases_and_emission_is_by_arrival(workload: Workload) -> None:
    arrivals = [r.arrival_ms for r in workload.records]
    assert arrivals == sorted(arrivals)
    for records in _by_order(workload.good()).values():
        assert all(a.arrival_ms <= b.arrival_ms for a, b in pairwise(records))


def test_every_good_transition_is_legal(workload: Workload) -> None:
    for order_id, records in _by_order(workload.good()).items():
        status = None
        for r in records:
            status = next_status(status, r.event_type or "")
            assert status is not None, f"{order_id} seq {r.seq}: {r.event_type} is illegal"


def test_lateness_is_bounded(workload: Workload) -> None:
    """Scenario: every record. We expect arrival - occurredAt within [0, max_lateness_ms]: replay relies on it."""
    bound = workload.config.max_lateness_ms
    for r in workload.records:
        assert 0 <= r.arrival_ms - r.timestamp_ms <= bound, r


def test_defaults_produce_late_events_and_clock_step_backs(defaults: Workload) -> None:
    """Scenario: default rates on 3000 orders. We expect some events out of event-time order and some step-backs."""
    late = sum(1 for r in defaults.good() if r.arrival_ms > r.timestamp_ms)
    step_backs = 0
    for records in _by_order(defaults.good()).values():
        step_backs += sum(1 for a, b in pairwise(records) if b.timestamp_ms < a.timestamp_ms)
    # Out of event-time order in the emission stream as a whole (and so within partitions).
    inversions = sum(1 for a, b in pairwise(defaults.records) if b.timestamp_ms < a.timestamp_ms)
    assert late >= 50
    assert step_backs >= 5
    assert inversions >= 50


def test_history_ends_at_now(defaults: Workload) -> None:
    """Scenario: a 3-day history. We expect nothing arriving after its end, and orders still open then."""
    assert max(r.arrival_ms for r in defaults.records) <= defaults.config.end_ms
    last_types = {records[-1].event_type for records in _by_order(defaults.good()).values()}
    assert {"PaymentAuthorized", "InventoryReserved", "OrderShipped"} & last_types
    assert min(r.timestamp_ms for r in defaults.records if r.seq == 1) >= defaults.config.start_ms


def test_every_good_event_round_trips_through_the_codec(workload: Workload) -> None:
    """Scenario: decode every good record's bytes (``poisoned`` mixes schema versions). We expect the same bytes back from
    the event as written, and the record's metadata and the order's facts in the newest shape after upcasting."""
    for r in workload.good():
        written = CODEC.decode_written(r.value)[1]
        assert CODEC.encode(written) == r.value
        event = CODEC.decode(r.value)  # the newest shape, whatever version the record was written with
        env = event["envelope"]
        assert (env["orderId"], env["seq"], env["eventType"], env["eventId"], env["occurredAt"]) == (
            r.order_id, r.seq, r.event_type, r.event_id, r.timestamp_ms
        )
        assert r.key == r.order_id.encode()
        order = workload.orders[r.order_id]
        assert env["correlationId"] == order.correlation_id
        if r.event_type == "OrderPlaced":
            assert event["customerId"] == order.customer_id
            assert event["total"]["amountMinor"] == sum(i["quantity"] * i["unitPriceMinor"] for i in event["items"])
            assert event["total"]["currency"] == workload.catalog.currency_of[order.customer_id]
            # v1 knew no sales channel: resolution gives the default; v2 and v3 carry the order's.
            channel = "unknown" if written["envelope"]["schemaVersion"] == 1 else sales_channel(order.order_id)
            assert event["salesChannel"] == channel
            assert 1 <= len(event["items"]) <= 4 and all(1 <= i["quantity"] <= 5 for i in event["items"])
            assert len({i["sku"] for i in event["items"]}) == len(event["items"])
        if r.event_type == "PaymentAuthorized":
            assert event["authorizedMinor"] == order.total_minor
        if r.event_type == "RefundIssued":
            placed = {i.sku: i for i in order.items}
            assert 0 < event["amountMinor"] <= order.total_minor
            assert event["amountMinor"] == sum(
                line["quantity"] * placed[line["sku"]].unit_price_minor for line in event["items"]
            )
            assert all(1 <= line["quantity"] <= placed[line["sku"]].quantity for line in event["items"])


def test_ids_are_uuid4_shaped_and_causes_chain(workload: Workload) -> None:
    for records in _by_order(workload.good()).values():
        cause = None
        for r in records:
            env = CODEC.decode(r.value)["envelope"]
            parsed = uuid.UUID(env["eventId"])
            assert parsed.version == 4 and str(parsed) == env["eventId"]
            # The first event is caused by the command that started the order (its id is the correlation id).
            assert env["causationId"] == (env["correlationId"] if cause is None else cause)
            cause = env["eventId"]
    event_ids = [r.event_id for r in workload.good()]
    assert len(set(event_ids)) == len(event_ids)


def test_lifecycle_mix_is_realistic(poisoned: Workload) -> None:
    """Scenario: 3000 orders over 7 days. We expect every event type, ~5% payment failures, ~8% cancellations."""
    counts: dict[str, int] = defaultdict(int)
    for r in poisoned.good():
        counts[r.event_type or ""] += 1
    placed = counts["OrderPlaced"]
    assert set(counts) == {
        "OrderPlaced", "PaymentAuthorized", "PaymentFailed", "InventoryReserved", "InventoryReleased",
        "OrderShipped", "OrderDelivered", "OrderCancelled", "RefundIssued",
    }
    assert 0.03 < counts["PaymentFailed"] / placed < 0.07
    assert 0.05 < counts["OrderCancelled"] / placed < 0.11
    assert 0.04 < counts["RefundIssued"] / counts["OrderDelivered"] < 0.16


def test_customers_are_skewed(poisoned: Workload) -> None:
    per_customer: dict[str, int] = defaultdict(int)
    for order in poisoned.orders.values():
        per_customer[order.customer_id] += 1
    ranked = sorted(per_customer.values(), reverse=True)
    assert ranked[0] > 10 * (len(poisoned.orders) / poisoned.config.customer_count)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = generate(WorkloadConfig(seed=5, orders=300))
    b = generate(WorkloadConfig(seed=5, orders=300))
    c = generate(WorkloadConfig(seed=6, orders=300))
    assert a.records == b.records
    assert [r.value for r in a.records] != [r.value for r in c.records]


def test_poison_does_not_change_good_events() -> None:
    """Scenario: the same config with and without poison. We expect the very same good records, in the same order."""
    clean = generate(WorkloadConfig(seed=5, orders=300))
    dirty = generate(WorkloadConfig(seed=5, orders=300, poison_rate=0.05))
    assert dirty.poison_count > 0
    assert list(dirty.good()) == list(clean.records)


def test_defaults_are_the_documented_ones(defaults: Workload) -> None:
    config = defaults.config
    assert config.late_rate == 0.02 and config.skew_rate == 0.005 and config.max_lateness_ms == 600_000
    assert config.days == 3 and config.poison_rate == 0.0 and config.skus == 300
    assert config.customer_count == max(50, config.orders // 5)


@pytest.mark.parametrize(
    "kwargs",
    [{"orders": -1}, {"days": 0}, {"late_rate": 1.5}, {"poison_rate": -0.1}, {"max_lateness_ms": -1}, {"skus": 3}],
)
def test_bad_configs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        WorkloadConfig(**kwargs)


def test_zero_lateness_and_empty_workloads() -> None:
    strict = generate(WorkloadConfig(seed=1, orders=200, max_lateness_ms=0))
    assert all(r.arrival_ms == r.timestamp_ms for r in strict.records)
    assert generate(WorkloadConfig(seed=1, orders=0)).records == ()


def test_replay_can_stop_past_t_plus_lateness(poisoned: Workload) -> None:
    """Scenario: a replay reads records in emission order and stops at the first record stamped after T + max
    lateness. We expect it to have seen every record stamped at or before T (poison included)."""
    bound = poisoned.config.max_lateness_ms
    stamps = [r.timestamp_ms for r in poisoned.records]
    lo, hi = min(stamps), max(stamps)
    for t in range(lo, hi, (hi - lo) // 97):
        stop = next((i for i, s in enumerate(stamps) if s > t + bound), len(stamps))
        assert all(s > t for s in stamps[stop:]), t
