"""Poison records: what each kind is, where it sits, and that it is really bad."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from schemas.codec import EventCodec
from schemas.errors import CodecError, UnknownSchemaError
from scripts.workload import Emitted, Status, Workload, next_status

CODEC = EventCodec()


def _poison(workload: Workload, kind: str) -> list[tuple[int, Emitted]]:
    return [(i, r) for i, r in enumerate(workload.records) if r.poison is not None and r.poison.kind == kind]


def test_share_and_kinds(poisoned: Workload) -> None:
    """Scenario: poison_rate 3%. We expect about 3% extra records, of all four kinds, with unique stable ids."""
    good = sum(1 for _ in poisoned.good())
    poison = [r.poison for r in poisoned.records if r.poison is not None]
    assert 0.02 * good < len(poison) < 0.04 * good
    assert set(Counter(p.kind for p in poison)) == {"undecodable", "unknown_schema", "impossible_transition", "duplicate"}
    assert len({p.poison_id for p in poison}) == len(poison)
    assert all(p.reason for p in poison)


def test_undecodable_does_not_decode(poisoned: Workload) -> None:
    """Scenario: every undecodable record. We expect garbage without the marker, or a good record of its order cut short."""
    kinds: Counter[str] = Counter()
    for _, r in _poison(poisoned, "undecodable"):
        with pytest.raises(CodecError):
            CODEC.decode(r.value)
        same_order = [g.value for g in poisoned.good() if g.order_id == r.order_id]
        if r.value[:2] != b"\xc3\x01":
            kinds["garbage"] += 1
        else:
            assert any(len(v) > len(r.value) and v.startswith(r.value) for v in same_order)
            kinds["cut"] += 1
        assert r.key == r.order_id.encode() and same_order
    assert kinds["garbage"] and kinds["cut"]


def test_unknown_schema_has_an_unknown_fingerprint(poisoned: Workload) -> None:
    for _, r in _poison(poisoned, "unknown_schema"):
        assert r.value[:2] == b"\xc3\x01"
        assert CODEC.registry.by_fingerprint(r.value[2:10]) is None
        with pytest.raises(UnknownSchemaError):
            CODEC.decode(r.value)


def test_duplicates_repeat_an_earlier_record_of_the_same_order(poisoned: Workload) -> None:
    """Scenario: every duplicate. We expect the exact key, bytes and timestamp of a good record emitted before it,
    arriving within the lateness bound of its occurredAt."""
    seen: dict[tuple[bytes, bytes], int] = {}
    duplicates = 0
    for r in poisoned.records:
        if r.poison is None:
            seen[(r.key, r.value)] = r.timestamp_ms
        elif r.poison.kind == "duplicate":
            duplicates += 1
            assert (r.key, r.value) in seen, r.poison
            assert seen[(r.key, r.value)] == r.timestamp_ms
            assert r.arrival_ms - r.timestamp_ms <= poisoned.config.max_lateness_ms
    assert duplicates > 0


def test_impossible_transitions_are_illegal_where_they_sit(poisoned: Workload) -> None:
    """Scenario: fold each order's records in emission order, rejecting illegal ones without advancing the seq.
    We expect every impossible_transition rejected, carrying the next seq, followed by the real event with that
    seq (or by nothing), and every good event accepted."""
    status: dict[str, Status | None] = {}
    last_seq: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = {}  # order -> seq of a rejected impossible event still waiting for its real one
    impossible = 0
    for r in poisoned.records:
        if r.poison is not None and r.poison.kind == "impossible_transition":
            impossible += 1
            event = CODEC.decode(r.value)  # well-formed
            assert event["envelope"]["seq"] == r.seq == last_seq[r.order_id] + 1
            assert next_status(status.get(r.order_id), r.event_type or "") is None, r.poison.reason
            assert r.poison.reason.startswith(f"{r.event_type} is not allowed")
            assert r.order_id not in pending
            pending[r.order_id] = r.seq or 0
            lo = min(g.timestamp_ms for g in poisoned.good() if g.order_id == r.order_id)
            assert r.timestamp_ms >= lo - 60_000  # inside the order's timeline
        elif r.poison is None:
            after = next_status(status.get(r.order_id), r.event_type or "")
            assert after is not None and r.seq == last_seq[r.order_id] + 1
            if r.order_id in pending:
                assert pending.pop(r.order_id) == r.seq
            status[r.order_id], last_seq[r.order_id] = after, r.seq or 0
    assert impossible > 0
    # Whatever is still pending was injected after its order's last event.
    for order_id, seq in pending.items():
        assert seq == last_seq[order_id] + 1


def test_impossible_transition_sits_right_before_its_real_event(poisoned: Workload) -> None:
    """Among the order's records, the one after an impossible event (poison aside) is the real one with its seq."""
    by_order: dict[str, list] = defaultdict(list)
    for r in poisoned.records:
        by_order[r.order_id].append(r)
    for records in by_order.values():
        for i, r in enumerate(records):
            if r.poison is None or r.poison.kind != "impossible_transition":
                continue
            following = [x for x in records[i + 1 :] if x.poison is None]
            if following:
                assert following[0].seq == r.seq
