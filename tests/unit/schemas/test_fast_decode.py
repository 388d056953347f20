"""The fast decoder returns exactly what the codec returns, and raises exactly what it raises."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import EventCodec
from schemas.errors import CodecError
from schemas.fast_decode import FastDecoder
from scripts.workload import WorkloadConfig, generate

CODEC = EventCodec()
FAST = FastDecoder(CODEC)
SAMPLE = [r.value for r in generate(WorkloadConfig(seed=5, orders=300, days=7, poison_rate=0.1)).records]


def outcome(decode: Any, data: bytes) -> Any:
    try:
        return decode(data)
    except CodecError as exc:
        return (type(exc).__name__, str(exc))


def test_every_shipped_schema_has_a_fast_reader() -> None:
    """Scenario: the decoder starts. We expect no schema to fall back to the codec (else replay is slow)."""
    assert FAST.fallback_fingerprints == ()


def test_workload_records_decode_identically() -> None:
    """Scenario: a workload with every event type and every poison kind. We expect identical results."""
    assert [outcome(FAST.decode, v) for v in SAMPLE] == [outcome(CODEC.decode, v) for v in SAMPLE]


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, len(SAMPLE) - 1), cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3))
def test_damaged_records_decode_identically(index: int, cut: int, flips: list[tuple[int, int]]) -> None:
    """Scenario: a record cut short and/or with bytes changed. We expect the codec's answer or its error."""
    data = bytearray(SAMPLE[index][: max(cut, 0) or None])
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    raw = bytes(data)
    assert outcome(FAST.decode, raw) == outcome(CODEC.decode, raw)


@settings(max_examples=200, deadline=None)
@given(extra=st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_the_codecs_error(extra: bytes) -> None:
    """Scenario: valid bytes followed by more. We expect the codec's CodecError."""
    raw = SAMPLE[0] + extra
    assert outcome(FAST.decode, raw) == outcome(CODEC.decode, raw)
    assert isinstance(outcome(FAST.decode, raw), tuple)


def test_bodies_behind_another_types_fingerprint_decode_identically() -> None:
    """Scenario: every type's body behind every other type's fingerprint. We expect the codec's error each time, never an event."""
    by_type: dict[str, bytes] = {}
    for value in SAMPLE:
        outcome_ = outcome(CODEC.decode, value)
        if isinstance(outcome_, dict):
            by_type.setdefault(outcome_["envelope"]["eventType"], value)
    assert len(by_type) == 9
    for header_type, header_of in by_type.items():
        for body_type, body_of in by_type.items():
            raw = header_of[:10] + body_of[10:]
            fast, slow = outcome(FAST.decode, raw), outcome(CODEC.decode, raw)
            assert fast == slow
            assert isinstance(fast, dict) == (header_type == body_type), (header_type, body_type, fast)
