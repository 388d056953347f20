"""The apply fast paths (state.rocks_apply) keep the key format and the duplicate detection of the plain code."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rocksdict import AccessType, Options, Rdict

from pipelines.projections import Change, get_projection
from state import keys as K
from state.contracts import SourcePosition, ViewUpdate
from state.indexes import indexes_of
from state.records import StoredVersion
from state.rocks_apply import _current_entry, _index_keys, _index_value, _RowKeys, _versioned_entry
from state.rocks_open import raw_items
from state.rocks_store import open_store

T0 = 1_700_000_000_000


def _dump(path: Path) -> dict[bytes, bytes]:
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return dict(raw_items(db, from_key=b""))
    finally:
        db.close()


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
        (ix,) = _index_keys(view)
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
    before = _dump(tmp_path / "s")
    store = open_store(tmp_path / "s")
    shuffled = updates[:]
    random.Random(1).shuffle(shuffled)
    for start in range(0, len(shuffled), 50):
        assert store.apply(shuffled[start : start + 50], position={}) == 0
    assert store.counts.skipped_duplicate == len(updates)
    store.close()
    assert _dump(tmp_path / "s") == before


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
