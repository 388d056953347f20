"""The store contract as a reusable test suite: subclass :class:`StoreContractSuite` per writer.

Every WritableProjectionStore runs it: the RocksDB store (durable, and without WAL as a
replay builds it) and the in-memory reference store (state.memory_store). A subclass defines ``open_store(path)`` (a writer in ``path``,
continuing what an earlier one closed there) and inherits every test. Expected values are
written by hand from the contract (state/contracts.py) and the views' definitions (a
customer-summary row is its counters' sums), never computed by a store or a projection.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import UnknownViewError
from state.contracts import ReadOnlyView, SourcePosition, VersionedRow, ViewUpdate, WritableProjectionStore
from state.errors import InvalidUpdateError, StoreError, UnknownIndexError
from tests.unit.state.state_builders import ORDER_TOPIC, counter_update, order_update

CS = "customer-summary"

#: The property tests run once per writer (a subclass each), which hypothesis sees as "differing executors".
_PER_WRITER = [HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]


def present(found: VersionedRow | None) -> VersionedRow:
    """The version a test expects to be there."""
    assert found is not None
    return found


def customer_row(key: str, *, placed: int, ltv: int, valid_from_ms: int) -> dict[str, object]:
    """A customer-summary row whose changes placed ``placed`` orders and added ``ltv`` lifetime value (nothing else)."""
    return {"customerId": key, "ordersPlaced": placed, "ordersDelivered": 0, "ordersCancelled": 0,
            "lifetimeValueMinor": ltv, "openOrders": 0, "validFrom": valid_from_ms}


class StoreContractSuite:
    """Every test a store backend must pass."""

    def open_store(self, path: Path) -> WritableProjectionStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[WritableProjectionStore]:
        store = self.open_store(tmp_path / "store")
        yield store
        store.close()

    def reopen(self, store: WritableProjectionStore, path: Path) -> WritableProjectionStore:
        store.close()
        return self.open_store(path)

    # -- the as-of contract ------------------------------------------------------------

    def test_store_is_a_read_only_view(self, store: WritableProjectionStore) -> None:
        """Scenario: the query side types the store as ReadOnlyView. We expect the protocol to hold."""
        assert isinstance(store, ReadOnlyView)
        assert "order-status" in store.views()

    def test_as_of_bound_is_inclusive_at_exactly_t(self, store: WritableProjectionStore) -> None:
        """Scenario: versions at 100 and 200. We expect as-of 200 to see the version at 200, as-of 199 the one at 100."""
        store.apply([order_update("o1", 1, 100, "PLACED", offset=0), order_update("o1", 2, 200, "PAYMENT_AUTHORIZED", offset=1)],
                    position={ORDER_TOPIC: {0: 2}})
        assert present(store.get_as_of("order-status", "o1", 200)).row["status"] == "PAYMENT_AUTHORIZED"
        assert present(store.get_as_of("order-status", "o1", 199)).row["status"] == "PLACED"
        assert present(store.get_as_of("order-status", "o1", 100)).valid_from_ms == 100

    def test_none_before_first_version_and_for_unknown_keys(self, store: WritableProjectionStore) -> None:
        """Scenario: one version at 100. We expect None as of 99, for an unknown key, and for a key sorting next to it."""
        store.apply([order_update("o1", 1, 100, "PLACED", offset=0)], position={ORDER_TOPIC: {0: 1}})
        assert store.get_as_of("order-status", "o1", 99) is None
        assert store.get_as_of("order-status", "o", 10**12) is None
        assert store.get_as_of("order-status", "o10", 10**12) is None
        assert store.get("order-status", "nope") is None
        assert store.history("order-status", "nope") == []

    def test_valid_to_chains_versions(self, store: WritableProjectionStore) -> None:
        """Scenario: three versions. We expect each valid_to to be the next valid_from and the last to be None."""
        updates = [order_update("o1", s, t, st_, offset=s) for s, t, st_ in
                   [(1, 100, "PLACED"), (2, 150, "PAYMENT_AUTHORIZED"), (3, 300, "INVENTORY_RESERVED")]]
        store.apply(updates, position={ORDER_TOPIC: {0: 4}})
        history = store.history("order-status", "o1")
        assert [(v.valid_from_ms, v.valid_to_ms) for v in history] == [(100, 150), (150, 300), (300, None)]
        assert present(store.get_as_of("order-status", "o1", 200)).valid_to_ms == 300
        current = store.get("order-status", "o1")
        assert current is not None and current.valid_to_ms is None and current.valid_from_ms == 300
        assert current.source == SourcePosition("orders", 0, 30)
        assert [v.valid_from_ms for v in store.history("order-status", "o1", limit=2)] == [100, 150]
        assert store.history("order-status", "o1", limit=2)[-1].valid_to_ms == 300

    def test_event_time_step_back_replaces_the_version_at_the_same_valid_from(self, store: WritableProjectionStore) -> None:
        """Scenario: seq 3's event time steps back, so its row keeps validFrom 200. We expect one version at 200 holding seq 3."""
        store.apply([order_update("o1", 1, 100, "PLACED", offset=0), order_update("o1", 2, 200, "PAYMENT_AUTHORIZED", offset=1)],
                    position={ORDER_TOPIC: {0: 2}})
        store.apply([order_update("o1", 3, 200, "INVENTORY_RESERVED", offset=2)], position={ORDER_TOPIC: {0: 3}})
        assert [(v.valid_from_ms, v.row["lastSeq"]) for v in store.history("order-status", "o1")] == [(100, 1), (200, 3)]
        assert store.scan_index("order-status", "status", "PAYMENT_AUTHORIZED") == []
        assert store.scan_index("order-status", "status", "PAYMENT_AUTHORIZED", as_of_ms=250) == []
        assert [r.key for r in store.scan_index("order-status", "status", "INVENTORY_RESERVED", as_of_ms=250)] == ["o1"]

    def test_a_seq_at_or_below_the_rows_is_a_counted_no_op(self, store: WritableProjectionStore) -> None:
        """Scenario: seqs 1 and 2 applied, then seq 2 and seq 1 again (other offsets, no stored position).
        We expect both redeliveries to apply nothing and the history to stay two versions."""
        assert store.apply([order_update("o1", 1, 100, "PLACED", offset=0), order_update("o1", 2, 200, "SHIPPED", offset=1)],
                           position={}) == 2
        assert store.apply([order_update("o1", 2, 250, "DELIVERED", offset=5)], position={}) == 0
        assert store.apply([order_update("o1", 1, 300, "CANCELLED", offset=6)], position={}) == 0
        assert [(v.valid_from_ms, v.row["status"]) for v in store.history("order-status", "o1")] == [(100, "PLACED"), (200, "SHIPPED")]

    def test_a_rows_valid_from_never_decreases(self, store: WritableProjectionStore) -> None:
        """Scenario: seq 2 carries validFrom 80, below seq 1's 100. We expect it stored at 100, replacing seq 1's version."""
        store.apply([order_update("o1", 1, 100, "PLACED", offset=0)], position={})
        assert store.apply([order_update("o1", 2, 80, "SHIPPED", offset=1)], position={}) == 1
        assert [(v.valid_from_ms, v.row["status"], v.valid_to_ms) for v in store.history("order-status", "o1")] == [(100, "SHIPPED", None)]
        assert store.get_as_of("order-status", "o1", 99) is None
        assert [r.key for r in store.scan_index("order-status", "status", "SHIPPED", as_of_ms=100)] == ["o1"]
        assert store.scan_index("order-status", "status", "PLACED", as_of_ms=100) == []

    def test_unknown_view_is_refused(self, store: WritableProjectionStore) -> None:
        """Scenario: a read of an unknown view. We expect UnknownViewError naming the known views."""
        with pytest.raises(UnknownViewError, match="order-status"):
            store.get("nope", "k")

    # -- counters ----------------------------------------------------------------------

    def test_out_of_order_counter_change_is_inserted_and_later_versions_re_derived(self, store: WritableProjectionStore) -> None:
        """Scenario: LTV changes at 300 then 500 arrive, then a late one at 400. We expect 400's version and 500's sum to include it."""
        store.apply([counter_update(CS, "c1", "o1", 5, 300, {"lifetimeValueMinor": 10}, offset=0),
                     counter_update(CS, "c1", "o2", 5, 500, {"lifetimeValueMinor": 100}, offset=1)], position={})
        store.apply([counter_update(CS, "c1", "o3", 5, 400, {"lifetimeValueMinor": 1000}, offset=2)], position={})
        ltv = [(v.valid_from_ms, v.row["lifetimeValueMinor"], v.valid_to_ms) for v in store.history(CS, "c1")]
        assert ltv == [(300, 10, 400), (400, 1010, 500), (500, 1110, None)]
        assert present(store.get_as_of(CS, "c1", 450)).row["lifetimeValueMinor"] == 1010
        assert present(store.get(CS, "c1")).row["validFrom"] == 500
        assert [r.row["lifetimeValueMinor"] for r in store.scan_index(CS, "lifetimeValue", as_of_ms=450)] == [1010]

    def test_redelivered_counter_change_is_not_counted_twice(self, store: WritableProjectionStore) -> None:
        """Scenario: the same (orderId, seq) change arrives twice at different offsets. We expect it counted once."""
        change = counter_update(CS, "c1", "o1", 1, 300, {"ordersPlaced": 1}, offset=0)
        again = counter_update(CS, "c1", "o1", 1, 300, {"ordersPlaced": 1}, offset=7)
        assert store.apply([change], position={}) == 1
        assert store.apply([again, again], position={}) == 0
        assert present(store.get(CS, "c1")).row["ordersPlaced"] == 1

    def test_counter_update_without_delta_is_refused_and_nothing_is_written(self, store: WritableProjectionStore) -> None:
        """Scenario: a batch holds a good update and a counter update without delta. We expect an error and no write at all."""
        good: ViewUpdate = counter_update(CS, "c2", "o1", 1, 300, {"ordersPlaced": 1}, offset=1)
        bad = good._replace(delta=None)
        with pytest.raises(InvalidUpdateError):
            store.apply([order_update("o1", 1, 100, "PLACED", offset=0), bad], position={ORDER_TOPIC: {0: 1}})
        assert store.get("order-status", "o1") is None
        assert store.position() == {}

    @settings(max_examples=100, deadline=None, suppress_health_check=_PER_WRITER)
    @given(
        changes=st.lists(
            st.tuples(st.integers(0, 50), st.integers(-500, 500), st.sampled_from(["c1", "c2", "c3"])), min_size=1, max_size=25
        ),
        data=st.data(),
    )
    def test_counters_as_of_equal_brute_force_sums(self, changes: list[tuple[int, int, str]], data: st.DataObject) -> None:
        """Scenario: counter changes arrive in any order, in any batches, some twice. We expect every as-of answer,
        history and ranking to equal the sum of exactly the deltas with change_valid_from <= T."""
        updates = [
            counter_update(CS, key, f"o{i}", 1, t * 10, {"lifetimeValueMinor": v, "ordersPlaced": 1}, offset=i)
            for i, (t, v, key) in enumerate(changes)
        ]
        arrival = data.draw(st.permutations(updates))
        arrival = arrival + data.draw(st.lists(st.sampled_from(updates), max_size=5))  # redeliveries
        cuts = sorted(data.draw(st.lists(st.integers(0, len(arrival)), max_size=4)))
        with tempfile.TemporaryDirectory() as tmp:
            store = self.open_store(Path(tmp) / "s")
            try:
                for lo, hi in zip([0, *cuts], [*cuts, len(arrival)], strict=True):
                    store.apply(arrival[lo:hi], position={})
                for key in ("c1", "c2", "c3"):
                    mine = [(t * 10, amount) for t, amount, k in changes if k == key]
                    times = sorted({ms for ms, _ in mine})
                    for at_ms in range(-10, 520, 5):
                        seen = [(ms, amount) for ms, amount in mine if ms <= at_ms]
                        expected = customer_row(key, placed=len(seen), ltv=sum(amount for _, amount in seen),
                                                valid_from_ms=max(ms for ms, _ in seen)) if seen else None
                        got = store.get_as_of(CS, key, at_ms)
                        assert (got.row if got else None) == expected, (key, at_ms)
                        if got is not None:
                            later = [ms for ms in times if ms > at_ms]
                            assert got.valid_from_ms == max(ms for ms in times if ms <= at_ms)
                            assert got.valid_to_ms == (later[0] if later else None)
                    assert [version.valid_from_ms for version in store.history(CS, key)] == times
                for as_of in (None, 0, 95, 250, 500):
                    horizon = 10**9 if as_of is None else as_of
                    totals = {}
                    for key in ("c1", "c2", "c3"):
                        amounts = [amount for t, amount, k in changes if k == key and t * 10 <= horizon]
                        if amounts:
                            totals[key] = sum(amounts)
                    expected_rank = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
                    got_rank = [(r.key, r.row["lifetimeValueMinor"]) for r in store.scan_index(CS, "lifetimeValue", as_of_ms=as_of, limit=2)]
                    assert [v for _, v in got_rank] == [v for _, v in expected_rank], as_of
                    assert set(got_rank) <= set(totals.items())
            finally:
                store.close()

    def test_counter_row_is_aligned_to_the_published_row_when_history_was_compacted(self, store: WritableProjectionStore) -> None:
        """Scenario: the first record seen for a key carries a row folded from changes we never saw (compacted away).
        We expect the latest row to equal the published row and as-of before that record to be None."""
        published = {"customerId": "c1", "ordersPlaced": 7, "ordersDelivered": 3, "ordersCancelled": 1,
                     "lifetimeValueMinor": 900, "openOrders": 3, "validFrom": 5000}
        update = counter_update(CS, "c1", "o9", 4, 5000, {"ordersDelivered": 1, "openOrders": -1, "lifetimeValueMinor": 100},
                                offset=0, row=published)
        store.apply([update], position={})
        assert dict(present(store.get(CS, "c1")).row) == published
        assert store.get_as_of(CS, "c1", 4999) is None
        follow = counter_update(CS, "c1", "o10", 1, 6000, {"ordersPlaced": 1, "openOrders": 1}, offset=1,
                                row={**published, "ordersPlaced": 8, "openOrders": 4, "validFrom": 6000})
        store.apply([follow], position={})
        assert present(store.get(CS, "c1")).row["ordersPlaced"] == 8

    def test_a_change_at_the_latest_time_joins_that_version(self, store: WritableProjectionStore) -> None:
        """Scenario: two orders' changes of one customer at the same time, in two applies, then each again.
        We expect one version at that time holding both, and the redeliveries not counted."""
        store.apply([counter_update(CS, "c1", "o1", 1, 300, {"ordersPlaced": 1, "lifetimeValueMinor": 10}, offset=0)], position={})
        assert store.apply([counter_update(CS, "c1", "o2", 1, 300, {"ordersPlaced": 1, "lifetimeValueMinor": 5}, offset=1)], position={}) == 1
        assert store.apply([counter_update(CS, "c1", "o2", 1, 300, {"ordersPlaced": 1, "lifetimeValueMinor": 5}, offset=1)], position={}) == 0
        assert store.apply([counter_update(CS, "c1", "o1", 1, 300, {"ordersPlaced": 1, "lifetimeValueMinor": 10}, offset=0)], position={}) == 0
        history = store.history(CS, "c1")
        assert [(v.valid_from_ms, dict(v.row), v.valid_to_ms) for v in history] == [
            (300, customer_row("c1", placed=2, ltv=15, valid_from_ms=300), None)]
        assert history[0].source == SourcePosition("orders", 0, 1001)

    def test_a_correction_is_kept_when_an_earlier_change_re_derives_the_row(self, store: WritableProjectionStore) -> None:
        """Scenario: the first record of c1 carries a row folded from changes compacted away; then a change
        earlier than it arrives. We expect the earlier version to hold only that change, and the latest
        row the published one plus it."""
        published = {"customerId": "c1", "ordersPlaced": 7, "ordersDelivered": 3, "ordersCancelled": 1,
                     "lifetimeValueMinor": 900, "openOrders": 3, "validFrom": 5000}
        store.apply([counter_update(CS, "c1", "o9", 4, 5000, {"ordersDelivered": 1, "openOrders": -1, "lifetimeValueMinor": 100},
                                    offset=0, row=published)], position={})
        assert store.apply([counter_update(CS, "c1", "o1", 1, 4000, {"ordersPlaced": 1, "openOrders": 1}, offset=1)], position={}) == 1
        assert [(v.valid_from_ms, dict(v.row)) for v in store.history(CS, "c1")] == [
            (4000, {"customerId": "c1", "ordersPlaced": 1, "ordersDelivered": 0, "ordersCancelled": 0,
                    "lifetimeValueMinor": 0, "openOrders": 1, "validFrom": 4000}),
            (5000, {"customerId": "c1", "ordersPlaced": 8, "ordersDelivered": 3, "ordersCancelled": 1,
                    "lifetimeValueMinor": 900, "openOrders": 4, "validFrom": 5000}),
        ]

    def test_ranking_index_now_and_as_of(self, store: WritableProjectionStore) -> None:
        """Scenario: three customers' lifetime values change over time; two tie. We expect the ranking now and
        as of each time largest first, ties by key, and ``limit`` to cut it."""
        store.apply([counter_update(CS, "c1", "o1", 1, 100, {"lifetimeValueMinor": 100}, offset=0),
                     counter_update(CS, "c2", "o2", 1, 200, {"lifetimeValueMinor": 300}, offset=1),
                     counter_update(CS, "c3", "o3", 1, 300, {"lifetimeValueMinor": 100}, offset=2)], position={})
        store.apply([counter_update(CS, "c1", "o4", 1, 400, {"lifetimeValueMinor": 500}, offset=3)], position={})
        ranked = lambda as_of, limit=10: [(r.key, r.row["lifetimeValueMinor"])  # noqa: E731
                                         for r in store.scan_index(CS, "lifetimeValue", as_of_ms=as_of, limit=limit)]
        assert ranked(None) == [("c1", 600), ("c2", 300), ("c3", 100)]
        assert ranked(99) == []
        assert ranked(250) == [("c2", 300), ("c1", 100)]
        assert ranked(350) == [("c2", 300), ("c1", 100), ("c3", 100)]
        assert ranked(400) == [("c1", 600), ("c2", 300), ("c3", 100)]
        assert ranked(350, limit=2) == [("c2", 300), ("c1", 100)]
        assert ranked(None, limit=0) == []

    # -- positions ---------------------------------------------------------------------

    def test_position_is_stored_with_the_data_and_records_below_it_are_skipped(self, store: WritableProjectionStore) -> None:
        """Scenario: a batch is applied, then redelivered. We expect the position stored and the redelivery a no-op."""
        batch = [order_update("o1", 1, 100, "PLACED", offset=0), order_update("o2", 1, 110, "PLACED", offset=1)]
        assert store.apply(batch, position={ORDER_TOPIC: {0: 2}}) == 2
        assert store.position() == {ORDER_TOPIC: {0: 2}}
        assert store.apply(batch, position={ORDER_TOPIC: {0: 2}}) == 0
        assert store.apply([], position={ORDER_TOPIC: {0: 1}}) == 0
        assert store.position() == {ORDER_TOPIC: {0: 2}}, "a position never moves back"
        assert store.source_position("order-status") == {"orders": {0: 11}}
        assert len(store.history("order-status", "o1")) == 1

    def test_restart_resumes_from_the_stored_position(self, store: WritableProjectionStore, tmp_path: Path) -> None:
        """Scenario: apply, close, reopen, redeliver, continue. We expect the same rows and position and no double count."""
        store.apply([counter_update(CS, "c1", "o1", 1, 100, {"ordersPlaced": 1}, offset=0)], position={"view.customer-summary": {0: 1}})
        store = self.reopen(store, tmp_path / "store")
        try:
            assert store.position() == {"view.customer-summary": {0: 1}}
            redelivered = counter_update(CS, "c1", "o1", 1, 100, {"ordersPlaced": 1}, offset=0)
            following = counter_update(CS, "c1", "o2", 1, 200, {"ordersPlaced": 1}, offset=1)
            assert store.apply([redelivered, following], position={"view.customer-summary": {0: 2}}) == 1
            assert present(store.get(CS, "c1")).row["ordersPlaced"] == 2
            assert present(store.get_as_of(CS, "c1", 150)).row["ordersPlaced"] == 1
        finally:
            store.close()

    def test_source_position_is_per_view(self, store: WritableProjectionStore) -> None:
        """Scenario: order-status changes from orders partition 0, a customer change from partition 1.
        We expect each view's source position to be one past its own highest source offset."""
        store.apply([order_update("o1", 1, 100, "PLACED", offset=0), order_update("o2", 1, 100, "PLACED", offset=3)], position={})
        store.apply([counter_update(CS, "c1", "o1", 1, 100, {"ordersPlaced": 1}, offset=5, partition=1)], position={})
        assert store.source_position("order-status") == {"orders": {0: 31}}
        assert store.source_position(CS) == {"orders": {1: 1006}}
        assert store.source_position("product-sales") == {}

    def test_a_closed_store_refuses_writes(self, tmp_path: Path) -> None:
        """Scenario: apply after close. We expect StoreError, and the data to be there when opened again."""
        store = self.open_store(tmp_path / "closed")
        store.apply([order_update("o1", 1, 100, "PLACED", offset=0)], position={ORDER_TOPIC: {0: 1}})
        store.close()
        with pytest.raises(StoreError):
            store.apply([order_update("o2", 1, 100, "PLACED", offset=1)], position={ORDER_TOPIC: {0: 2}})
        again = self.open_store(tmp_path / "closed")
        try:
            assert again.get("order-status", "o1") is not None and again.get("order-status", "o2") is None
            assert again.position() == {ORDER_TOPIC: {0: 1}}
        finally:
            again.close()

    # -- indexes -----------------------------------------------------------------------

    def test_status_index_now_and_as_of(self, store: WritableProjectionStore) -> None:
        """Scenario: o1 ships at 200, o2 at 300, o3 never. We expect the SHIPPED index to follow time exactly."""
        updates = []
        for i, (key, shipped_at) in enumerate([("o1", 200), ("o2", 300), ("o3", None)]):
            updates.append(order_update(key, 1, 100 + i, "PLACED", offset=3 * i))
            if shipped_at is not None:
                updates.append(order_update(key, 2, shipped_at, "SHIPPED", offset=3 * i + 1))
        store.apply(updates, position={})
        shipped = lambda as_of: [r.key for r in store.scan_index("order-status", "status", "SHIPPED", as_of_ms=as_of)]  # noqa: E731
        assert shipped(None) == ["o1", "o2"]
        assert shipped(199) == [] and shipped(200) == ["o1"] and shipped(10**6) == ["o1", "o2"]
        placed = [r.key for r in store.scan_index("order-status", "status", "PLACED", as_of_ms=250)]
        assert placed == ["o2", "o3"]
        assert [r.key for r in store.scan_index("order-status", "status", "PLACED")] == ["o3"]
        assert len(store.scan_index("order-status", "status", "SHIPPED", limit=1)) == 1
        as_of_row = store.scan_index("order-status", "status", "PLACED", as_of_ms=250)[0]
        assert (as_of_row.valid_from_ms, as_of_row.valid_to_ms) == (101, 300)

    @settings(max_examples=60, deadline=None, suppress_health_check=_PER_WRITER)
    @given(
        orders=st.lists(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["PLACED", "SHIPPED", "CANCELLED"])), min_size=1, max_size=5),
                        min_size=1, max_size=6),
        data=st.data(),
    )
    def test_status_index_as_of_equals_brute_force(self, orders: list[list[tuple[int, str]]], data: st.DataObject) -> None:
        """Scenario: orders whose event times step back and forth, interleaved across batches. We expect
        the status index as of any T to list exactly the orders whose version valid at T has that status."""
        per_order: list[tuple[str, list[tuple[int, int, str]]]] = []
        for i, events in enumerate(orders):
            running = -1  # every event time here is >= 0
            versions = []
            for seq, (t, status) in enumerate(events, start=1):
                running = max(running, t * 10)
                versions.append((seq, running, status))
            per_order.append((f"o{i}", versions))
        positioned: list[ViewUpdate] = [order_update(key, seq, vf, status, offset=0) for key, versions in per_order for seq, vf, status in versions]
        stream = [u._replace(record_position=None) for u in positioned]
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=3)))
        with tempfile.TemporaryDirectory() as tmp:
            store = self.open_store(Path(tmp) / "s")
            try:
                for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=False):
                    store.apply(stream[lo:hi], position={})
                for as_of in (None, -1, 0, 55, 120, 300, 10**6):
                    horizon = 10**9 if as_of is None else as_of
                    for status in ("PLACED", "SHIPPED", "CANCELLED"):
                        expected = set()
                        for key, versions in per_order:
                            visible = [v for v in versions if v[1] <= horizon]
                            if visible and visible[-1][2] == status:
                                expected.add(key)
                        got = store.scan_index("order-status", "status", status, as_of_ms=as_of, limit=100)
                        assert {r.key for r in got} == expected, (as_of, status)
                        assert all(r.row["status"] == status for r in got)
                        ends = [float("inf") if r.valid_to_ms is None else r.valid_to_ms for r in got]
                        assert ends == sorted(ends), "as of T: in the order the versions ended, current last"
                        assert all(r.valid_from_ms <= horizon and (r.valid_to_ms is None or r.valid_to_ms > horizon) for r in got)
            finally:
                store.close()

    def test_index_errors(self, store: WritableProjectionStore) -> None:
        """Scenario: an unknown index, an equality index without value. We expect UnknownIndexError for both."""
        with pytest.raises(UnknownIndexError, match="status"):
            store.scan_index("order-status", "colour", "red")
        with pytest.raises(UnknownIndexError):
            store.scan_index("order-status", "status")
