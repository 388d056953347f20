"""The apply fast paths (state.rocks_apply) keep the key format and the duplicate detection of the plain code."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from pipelines.projections import Change, get_projection
from state import keys as K
from state.contracts import SourcePosition, ViewUpdate
from state.errors import StoreError
from state.indexes import indexes_of
from state.records import StoredVersion, decode_latest
from state.rocks_apply import LatestCache, _current_entry, _index_value, _RowKeys, _versioned_entry, index_keys
from state.rocks_store import open_store
from tests.unit.state.state_builders import dump_store

T0 = 1_700_000_000_000


def test_row_keys_equal_the_key_module() -> None:
    """Scenario: prefixes and keys built once per group. We expect exactly the bytes of state.keys."""
    for view, key in [("order-status", "o-1"), ("product-sales", "SKU-ü"), ("customer-summary", "")]:
        rk = _RowKeys(view, key)
        assert rk.latest == K.latest_key(view, key)
        assert rk.versions == K.version_prefix(view, key)
        assert rk.changes == K.change_prefix(view, key)
        assert rk.version_key(-5) == K.version_key(view, key, -5)
        assert rk.change_key(T0, "o-9", 3) == K.change_key(view, key, T0, "o-9", 3)


def test_index_entries_equal_the_key_module() -> None:
    """Scenario: index entries built from cached prefixes. We expect exactly the bytes of state.keys."""
    rows: dict[str, dict[str, Any]] = {
        "order-status": {"status": "SHIPPED"}, "product-sales": {"revenueMinor": -42}, "customer-summary": {"lifetimeValueMinor": 7}}
    for view, row in rows.items():
        (spec,) = indexes_of(view)
        (ix,) = index_keys(view)
        version = StoredVersion(T0, row, None, None)
        value = _index_value(ix, version)
        assert value is not None
        rk = _RowKeys(view, "k1")
        for valid_to in (None, T0 + 5):
            entry = _versioned_entry(ix, rk.key_lp, value, T0, valid_to)
            if spec.kind == "equality":
                assert entry == (K.versioned_equality_key(view, spec.name, "SHIPPED", "k1", valid_to), K.enc_int(T0))
            else:
                expected_value = b"" if valid_to is None else K.enc_int(valid_to)
                assert entry == (K.versioned_ranking_key(view, spec.name, row[spec.field], "k1", T0), expected_value)
        current = _current_entry(ix, rk.key_lp, value, T0)
        if spec.kind == "equality":
            assert current == K.current_equality_key(view, spec.name, "SHIPPED", "k1", T0)
        else:
            assert current == K.current_ranking_key(view, spec.name, row[spec.field], "k1")
        assert _index_value(ix, StoredVersion(T0, {}, None, None)) is None


def _counter_updates(n: int, *, seed: int) -> list[ViewUpdate]:
    rng = random.Random(seed)
    projection = get_projection("product-sales")
    rows: dict[str, dict] = {}
    out = []
    for i in range(n):
        key = f"sku-{rng.randrange(7)}"
        valid_from_ms = T0 + i * 10 - rng.randrange(300)  # often out of order: re-derivation
        delta = {"unitsOrdered": 1, "revenueMinor": rng.randrange(1, 100)}
        row = projection.apply(rows.get(key), Change(key, delta, f"o-{i}", 1, valid_from_ms))
        rows[key] = row
        source = SourcePosition("orders", 0, i)
        out.append(ViewUpdate("product-sales", key, row, row["validFrom"], valid_from_ms, delta, f"o-{i}", 1, source, None))
    return out


def test_redelivered_changes_are_all_found_and_change_nothing(tmp_path: Path) -> None:
    """Scenario: counter changes, out of event-time order, applied in batches, then every batch again
    (no record_position, so only the duplicate check stops them), in another order.
    We expect every redelivery counted as a duplicate and the store byte-identical."""
    updates = _counter_updates(400, seed=5)
    store = open_store(tmp_path / "s")
    for start in range(0, len(updates), 37):
        store.apply(updates[start : start + 37], position={})
    store.close()
    before = dump_store(tmp_path / "s")
    store = open_store(tmp_path / "s")
    shuffled = updates[:]
    random.Random(1).shuffle(shuffled)
    for start in range(0, len(shuffled), 50):
        assert store.apply(shuffled[start : start + 50], position={}) == 0
    assert store.counts.skipped_duplicate == len(updates)
    store.close()
    assert dump_store(tmp_path / "s") == before


def test_a_change_later_than_the_row_is_new_and_an_earlier_one_is_checked(tmp_path: Path) -> None:
    """Scenario: a change after the row's latest version, and a redelivered change before it.
    We expect the first applied, the second recognised as stored."""
    updates = _counter_updates(30, seed=9)
    store = open_store(tmp_path / "s")
    store.apply(updates[:20], position={})
    late = updates[20]._replace(change_valid_from_ms=T0 + 10**6, order_id="o-late")
    assert store.apply([late, updates[3]], position={}) == 1
    assert store.counts.skipped_duplicate == 1
    store.close()


def _in_order_counter_updates(n: int, *, seed: int, publisher_base: dict[str, dict[str, Any]] | None = None) -> list[ViewUpdate]:
    """Counter updates in event-time order, as a replay sink releases them: several changes
    share a time (ties arrive in no particular orderId order), rows folded by the publisher
    (from ``publisher_base`` rows when given: a publisher that saw other history)."""
    rng = random.Random(seed)
    projection = get_projection("product-sales")
    rows: dict[str, dict[str, Any]] = dict(publisher_base or {})
    out = []
    for i in range(n):
        key = f"sku-{rng.randrange(5)}"
        valid_from_ms = T0 + (i // 3) * 10
        order_id = f"o-{rng.randrange(10_000):05d}"
        delta = {"unitsOrdered": rng.randrange(1, 4), "revenueMinor": rng.randrange(1, 100)}
        row = projection.apply(rows.get(key), Change(key, delta, order_id, 1, valid_from_ms))
        rows[key] = row
        source = SourcePosition("orders", i % 3, i)
        out.append(ViewUpdate("product-sales", key, row, row["validFrom"], valid_from_ms, delta, order_id, 1, source, source))
    return out


def _build(path: Path, batches: list[list[ViewUpdate]]) -> dict[bytes, bytes]:
    store = open_store(path)
    for number, batch in enumerate(batches):
        store.apply(batch, position={"orders": {0: number + 1}})
    store.close()
    return dump_store(path)


def _without_published_rows(monkeypatch: Any) -> None:
    import state.rocks_apply as rocks_apply

    monkeypatch.setattr(rocks_apply, "_published_versions", lambda *args: None)


def test_versions_taken_from_published_rows_equal_the_fold(tmp_path: Path, monkeypatch: Any) -> None:
    """Scenario: counter changes in event-time order (the replay's case), ties at one time
    arriving out of orderId order, in batches. We expect the store byte-identical to the one
    that folds every change itself (the published rows are only a shortcut)."""
    import state.rocks_apply as rocks_apply

    updates = _in_order_counter_updates(600, seed=3)
    batches = [updates[start : start + 41] for start in range(0, len(updates), 41)]
    taken = []
    published_versions = rocks_apply._published_versions

    def counted(*args: Any) -> Any:
        found = published_versions(*args)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(rocks_apply, "_published_versions", counted)
    fast = _build(tmp_path / "fast", batches)
    assert all(taken) and len(taken) >= len(batches)  # the shortcut was taken for every group
    _without_published_rows(monkeypatch)
    assert _build(tmp_path / "folded", batches) == fast


def test_published_rows_that_disagree_with_the_store_are_not_taken(tmp_path: Path, monkeypatch: Any) -> None:
    """Scenario: a publisher whose rows include history this store never saw (a compacted
    view topic), and groups arriving out of event-time order. We expect the store to fold
    (with its correction changes) exactly as it does with the shortcut turned off, its latest
    row being the last one published."""
    seen_elsewhere = {"sku-1": {"sku": "sku-1", "unitsOrdered": 50, "revenueMinor": 900, "validFrom": T0 - 5}}
    updates = _in_order_counter_updates(300, seed=4, publisher_base=seen_elsewhere)
    shuffled = updates[:]
    random.Random(2).shuffle(shuffled)
    batches = [shuffled[start : start + 29] for start in range(0, len(shuffled), 29)]
    fast = _build(tmp_path / "fast", batches)
    _without_published_rows(monkeypatch)
    assert _build(tmp_path / "folded", batches) == fast
    store = open_store(tmp_path / "fast")
    latest = store.get("product-sales", "sku-1")
    store.close()
    assert latest is not None
    # The contract: the latest row's counters equal those published with the last change applied.
    published = [u.row for u in shuffled if u.key == "sku-1"][-1]
    assert {f: latest.row[f] for f in ("unitsOrdered", "revenueMinor")} == {f: published[f] for f in ("unitsOrdered", "revenueMinor")}
    assert published["unitsOrdered"] > 50


def test_latest_cache_is_bounded_and_keeps_only_committed_versions(tmp_path: Path, monkeypatch: Any) -> None:
    """Scenario: a store whose latest-version cache holds 3 rows; many rows written; then a
    batch whose write fails. We expect at most 3 cached rows, every cached row equal to the
    database's latest record, and nothing of the failed batch cached or stored."""
    store = open_store(tmp_path / "s")
    store._latest_cache = LatestCache(max_rows=3)
    updates = _in_order_counter_updates(60, seed=8)
    store.apply(updates[:40], position={"orders": {0: 1}})
    cached = dict(store._latest_cache._rows)
    assert 0 < len(cached) <= 3
    for latest_key, version in cached.items():
        raw = store._db.get(latest_key)
        assert raw is not None and decode_latest(raw) == version

    def failing_write(*_args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_db", _FailingWrites(store._db, failing_write))
    with pytest.raises(StoreError):
        store.apply(updates[40:], position={"orders": {0: 2}})
    assert dict(store._latest_cache._rows) == cached
    monkeypatch.undo()
    assert store.position() == {"orders": {0: 1}}
    store.close()


class _FailingWrites:
    """The database with its ``write`` replaced (everything else passes through)."""

    def __init__(self, db: Any, write: Any) -> None:
        self._db = db
        self.write = write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_equality_append_writes_what_the_general_append_writes() -> None:
    """Scenario: order-status versions (one, and three) appended onto a base with the same and
    with another status, and onto no base. We expect the equality-index append to leave exactly
    the keys and values the general append leaves."""
    from state.encoded_writes import RecordingBatch
    from state.rocks_apply import ApplyCounts, KeyApplier

    def final(ops: list[bytes | None]) -> dict[bytes, bytes]:
        state: dict[bytes, bytes] = {}
        for i in range(0, len(ops), 2):
            key, value = ops[i], ops[i + 1]
            assert key is not None
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        return state

    source = SourcePosition("orders", 1, 42)
    for base_status, statuses in ((None, ["PLACED"]), ("PLACED", ["PAID"]), ("PAID", ["PAID"]), ("PAID", ["PAID", "SHIPPED", "SHIPPED"])):
        base = None if base_status is None else StoredVersion(T0, {"status": base_status, "lastSeq": 1}, source, 1)
        new = [StoredVersion(T0 + 5 * (i + 1), {"status": status, "lastSeq": i + 2}, source, i + 2) for i, status in enumerate(statuses)]
        results = []
        for method in ("_append_equality", "_append_general"):
            batch = RecordingBatch()
            applier = KeyApplier(None, batch, ApplyCounts(), latest_of=lambda _key: None)
            rk = _RowKeys("order-status", "o-1")
            if base is not None:  # the base's own entries, as its append left them
                applier._append_general("order-status", rk, None, [base])
            getattr(applier, method)("order-status", rk, base, new)
            results.append(final(batch.ops))
        assert results[0] == results[1] and len(results[0]) >= 4, (base_status, statuses)
