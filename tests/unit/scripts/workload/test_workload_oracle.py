"""The oracle file: its tables agree with an independent recomputation from the emitted bytes."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import EventCodec
from scripts.workload import Oracle, OracleError, Workload
from tests.lifecycle_spec import LIFECYCLE

CODEC = EventCodec()

# The lifecycle spec is transcribed once for all tests, never imported from product code.
NEXT = LIFECYCLE


@pytest.fixture(scope="module")
def oracle(oracle_path: Path) -> Iterator[Oracle]:
    with Oracle.open(oracle_path) as o:
        yield o


@pytest.fixture(scope="module")
def good_by_order(oracle: Oracle) -> dict[str, list[tuple[int, int, str]]]:
    """order -> [(seq, occurred_at_ms, event_type)] in seq order, from the events table."""
    out: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for row in oracle.events():
        if row.poison_kind is None:
            assert row.seq is not None and row.event_type is not None, row  # a good event has both
            out[row.order_id].append((row.seq, row.occurred_at_ms, row.event_type))
    for events in out.values():
        events.sort()
    return out


def brute_status(events: list[tuple[int, int, str]], t_ms: int) -> str | None:
    """Walk the order's events in seq order; stop at the first one not yet visible at t_ms."""
    status = None
    for _, occurred, event_type in events:
        if not occurred <= t_ms:
            break
        status = NEXT[(status, event_type)]
    return status


@st.composite
def order_and_time(draw: st.DrawFn, good_by_order: dict) -> tuple[str, int]:
    order_id = draw(st.sampled_from(sorted(good_by_order)))
    times = [occurred for _, occurred, _ in good_by_order[order_id]]
    t = draw(
        st.one_of(
            st.sampled_from(times),  # exactly at an event: inclusive
            st.sampled_from(times).map(lambda x: x - 1),
            st.sampled_from(times).map(lambda x: x + 1),
            st.integers(min(times) - 3_600_000, max(times) + 3_600_000),
        )
    )
    return order_id, t


def test_status_as_of_matches_brute_force(oracle: Oracle, good_by_order: dict) -> None:
    """Scenario: random (order, T), including T exactly at event times and just around them.
    We expect the oracle's answer to be the test's own prefix fold."""

    @settings(max_examples=600, deadline=None)
    @given(order_and_time(good_by_order))
    def check(case: tuple[str, int]) -> None:
        order_id, t = case
        got = oracle.order_status_as_of(order_id, t)
        assert (None if got is None else str(got)) == brute_status(good_by_order[order_id], t)

    check()


def test_status_as_of_is_inclusive(oracle: Oracle, good_by_order: dict) -> None:
    """Scenario: T exactly at an event's occurredAt (and the next event later). We expect that event visible at T,
    not at T - 1."""
    cases = 0
    for order_id, events in good_by_order.items():
        for k, (_, occurred, _) in enumerate(events):
            visible_before = all(o <= occurred for _, o, _ in events[:k])
            if not visible_before or (k + 1 < len(events) and events[k + 1][1] <= occurred):
                continue
            cases += 1
            version = oracle.order_as_of(order_id, occurred)
            assert version is not None and version.last_seq == k + 1
            earlier = oracle.order_as_of(order_id, occurred - 1)
            assert (0 if earlier is None else earlier.last_seq) < k + 1
        if cases > 500:
            break
    assert cases > 500


def test_a_step_back_is_hidden_until_its_predecessors_are_visible(oracle: Oracle, good_by_order: dict) -> None:
    """Scenario: an event whose clock stepped back (occurredAt before its predecessor's). We expect it invisible at
    its own occurredAt, and visible from the largest occurredAt of its prefix on (which is its valid_from)."""
    cases = 0
    for order_id, events in good_by_order.items():
        for k in range(1, len(events)):
            seq, occurred, _ = events[k]
            if occurred >= events[k - 1][1]:
                continue
            cases += 1
            at_own_time = oracle.order_as_of(order_id, occurred)
            assert at_own_time is None or at_own_time.last_seq < seq
            prefix_max = max(o for _, o, _ in events[: k + 1])
            visible = oracle.order_as_of(order_id, prefix_max)
            assert visible is not None and visible.last_seq >= seq
            assert str(visible.status) == brute_status(events, prefix_max)
            if visible.last_seq == seq:
                assert visible.valid_from_ms == prefix_max
    assert cases > 0


def test_final_orders_match_a_fold_of_the_decoded_bytes(poisoned: Workload, oracle: Oracle) -> None:
    placed: dict[str, dict] = {}
    placed_at: dict[str, int] = {}
    status: dict[str, str | None] = defaultdict(lambda: None)
    last_seq: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    for r in poisoned.good():
        event = CODEC.decode(r.value)
        order_id = event["envelope"]["orderId"]
        status[order_id] = NEXT[(status[order_id], event["envelope"]["eventType"])]
        last_seq[order_id] = event["envelope"]["seq"]
        if "customerId" in event:
            placed[order_id] = event
            placed_at[order_id] = event["envelope"]["occurredAt"]
        if event["envelope"]["eventType"] == "RefundIssued":
            refunded[order_id] += event["amountMinor"]
    rows = {row.order_id: row for row in oracle.final_orders()}
    assert set(rows) == set(placed)
    for order_id, row in rows.items():
        p = placed[order_id]
        assert (str(row.status), row.last_seq, row.customer_id, row.total_minor, row.currency, row.refunded_minor) == (
            status[order_id], last_seq[order_id], p["customerId"], p["total"]["amountMinor"], p["total"]["currency"], refunded[order_id]
        )
        assert [list(i) for i in row.items] == [[i["sku"], i["quantity"], i["unitPriceMinor"]] for i in p["items"]]
        assert row.refunded_minor <= row.total_minor
        assert row.times_ms["placed_at_ms"] == placed_at[order_id]
    assert oracle.final_order("ord-does-not-exist") is None


def test_totals_match_an_independent_recount(poisoned: Workload, oracle: Oracle) -> None:
    """Scenario: recount customers and SKUs from the decoded good events, plain sums in the test.
    We expect the oracle's tables, and LTV total == SKU revenue total == delivered totals - refunds."""
    placed: dict[str, dict] = {}
    ltv: Counter[str] = Counter()
    delivered: Counter[str] = Counter()
    cancelled: Counter[str] = Counter()
    orders_of: Counter[str] = Counter()
    open_orders: Counter[str] = Counter()
    units: dict[str, Counter[str]] = defaultdict(Counter)
    revenue: Counter[str] = Counter()
    delivered_total = refund_total = 0
    for r in poisoned.good():
        event = CODEC.decode(r.value)
        kind = event["envelope"]["eventType"]
        order = placed.setdefault(event["envelope"]["orderId"], event)
        customer = order["customerId"]
        if kind == "OrderPlaced":
            orders_of[customer] += 1
            open_orders[customer] += 1
        for name, field in (("OrderPlaced", "ordered"), ("InventoryReserved", "reserved"),
                            ("InventoryReleased", "released"), ("OrderShipped", "shipped")):
            if kind == name:
                for i in order["items"]:
                    units[i["sku"]][field] += i["quantity"]
        if kind == "OrderDelivered":
            delivered[customer] += 1
            open_orders[customer] -= 1
            ltv[customer] += order["total"]["amountMinor"]
            delivered_total += order["total"]["amountMinor"]
            for i in order["items"]:
                revenue[i["sku"]] += i["quantity"] * i["unitPriceMinor"]
        if kind == "OrderCancelled":
            cancelled[customer] += 1
            open_orders[customer] -= 1
        if kind == "RefundIssued":
            price = {i["sku"]: i["unitPriceMinor"] for i in order["items"]}
            ltv[customer] -= event["amountMinor"]
            refund_total += event["amountMinor"]
            for line in event["items"]:
                units[line["sku"]]["refunded"] += line["quantity"]
                revenue[line["sku"]] -= line["quantity"] * price[line["sku"]]
    customers = {c.customer_id: c for c in oracle.customers()}
    assert set(customers) == set(orders_of)
    for cid, c in customers.items():
        assert (c.orders_placed, c.orders_delivered, c.orders_cancelled, c.lifetime_value_minor, c.open_orders) == (
            orders_of[cid], delivered[cid], cancelled[cid], ltv[cid], open_orders[cid]
        ), cid
        assert c.currency == poisoned.catalog.currency_of[cid]
    skus = {s.sku: s for s in oracle.skus()}
    assert set(skus) == set(units)
    for sku, s in skus.items():
        u = units[sku]
        assert (s.units_ordered, s.units_reserved, s.units_released, s.units_shipped, s.units_refunded,
                s.revenue_minor) == (u["ordered"], u["reserved"], u["released"], u["shipped"], u["refunded"],
                                     revenue[sku]), sku
        assert s.unit_price_minor == poisoned.catalog.price_of[sku]
    assert refund_total > 0
    assert (
        sum(c.lifetime_value_minor for c in customers.values())
        == sum(s.revenue_minor for s in skus.values())
        == delivered_total - refund_total
    )


def test_customer_ltv_as_of_matches_brute_force(poisoned: Workload, oracle: Oracle, good_by_order: dict) -> None:
    customer_of = {o.order_id: o.customer_id for o in poisoned.orders.values()}
    amounts = {}
    for r in poisoned.good():
        if r.event_type in ("OrderDelivered", "RefundIssued"):
            event = CODEC.decode(r.value)
            amounts[(r.order_id, r.seq)] = (
                poisoned.orders[r.order_id].total_minor if r.event_type == "OrderDelivered" else -event["amountMinor"]
            )
    rng = random.Random(5)
    top = Counter(customer_of.values()).most_common(3)
    for customer_id, _ in top:
        orders = [o for o, c in customer_of.items() if c == customer_id]
        for _ in range(20):
            t = rng.randrange(poisoned.config.start_ms, poisoned.config.end_ms)
            expected = 0
            for order_id in orders:
                for seq, occurred, _ in good_by_order[order_id]:
                    if occurred > t:
                        break
                    expected += amounts.get((order_id, seq), 0)
            assert oracle.customer_ltv_as_of(customer_id, t) == expected


def test_events_poison_and_meta(poisoned: Workload, oracle: Oracle) -> None:
    rows = list(oracle.events())
    assert [r.emit_index for r in rows] == list(range(len(poisoned.records)))
    for row, r in zip(rows, poisoned.records, strict=True):
        assert (row.order_id, row.seq, row.event_id, row.occurred_at_ms, row.arrival_ms) == (
            r.order_id, r.seq, r.event_id, r.timestamp_ms, r.arrival_ms
        )
        assert row.poison_kind == (r.poison.kind if r.poison else None)
        assert (row.status_after is None) == (r.poison is not None)
    poison = oracle.poison()
    assert [(p.emit_index, p.poison_id, p.kind) for p in poison] == [
        (i, r.poison.poison_id, r.poison.kind) for i, r in enumerate(poisoned.records) if r.poison
    ]
    meta = oracle.meta()
    assert meta["seed"] == poisoned.config.seed and meta["topic"] == "orders-test"
    assert meta["records"] == len(poisoned.records) and meta["poison_records"] == len(poison)
    assert meta["end_ms"] == poisoned.config.end_ms and meta["max_lateness_ms"] == poisoned.config.max_lateness_ms
    counts = Counter(r.event_type for r in poisoned.good())
    assert oracle.event_type_counts() == dict(sorted(counts.items())) == meta["event_type_counts"]


def test_open_refuses_what_is_not_an_oracle(tmp_path: Path) -> None:
    with pytest.raises(OracleError):
        Oracle.open(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(OracleError):
        Oracle.open(junk)
