"""Which offsets a replay reads, per mode, against a fake broker whose records are listed by hand."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from schemas.errors import CodecError
from state.errors import ReplayError
from state.replay.logfacts import LogFacts
from state.replay.plan import plan_replay
from state.replay.workers import split_partitions


def facts_over(occurred: dict[int, list[int | None]], *, range_records: int) -> LogFacts:
    """In-memory log facts over records whose values are their occurredAt (None: undecodable)."""
    def read(ranges: Mapping[int, tuple[int, int]]) -> Iterator[tuple[int, int, bytes | None]]:
        for p, (start, stop) in ranges.items():
            for offset in range(start, stop):
                t = occurred[p][offset]
                yield p, offset, b"junk" if t is None else str(t).encode()
    return LogFacts(None, read=read, decode=decode_time, range_records=range_records)


def decode_time(value: bytes) -> dict[str, Any]:
    """The fake codec: a value is its occurredAt in decimal; anything else does not decode."""
    if not value.isdigit():
        raise CodecError("not a number")
    return {"envelope": {"occurredAt": int(value)}}


class FakeLog:
    """Partitions as lists of record timestamps (offset = index), like offsets_for_times sees them."""

    def __init__(self, partitions: dict[int, list[int]], *, low: int = 0) -> None:
        self._partitions = partitions
        self._low = low

    def partitions(self, topic: str) -> list[int]:
        return sorted(self._partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        return self._low, len(self._partitions[partition])

    def offsets_for_times(self, topic: str, timestamps_ms: Mapping[int, int]) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for p, ts in timestamps_ms.items():
            out[p] = next((i for i, t in enumerate(self._partitions[p]) if t >= ts), None)
        return out


# Partition 0: a late record (900 arrives after 2500); partition 1 ends before T + L.
LOG = FakeLog({0: [100, 2000, 2500, 900, 3000, 5000], 1: [100, 200], 2: []})


def test_as_of_without_facts_reads_to_the_high_watermarks() -> None:
    """Scenario: as of T=2000 with no log facts. We expect every partition read to its end (exact, nothing proven)."""
    plan = plan_replay(LOG, "t", mode="as-of", as_of_ms=2000)
    assert dict(plan.stop_offsets) == {0: 6, 1: 2, 2: 0} and not plan.stop_proven
    assert dict(plan.offsets_at_as_of_ms or {}) == {0: 2, 1: 2, 2: 0}


def test_as_of_with_facts_stops_where_they_prove_it_safe() -> None:
    """Scenario: as of T=2000, one-record ranges, timestamps equal to occurredAt. We expect partition 0 to stop
    after the late 900 (offset 3), not before it; partitions read to their ends otherwise."""
    facts = facts_over({0: [100, 2000, 2500, 900, 3000, 5000], 1: [100, 200], 2: []}, range_records=1)
    plan = plan_replay(LOG, "t", mode="as-of", as_of_ms=2000, facts=facts)
    assert dict(plan.stop_offsets) == {0: 4, 1: 2, 2: 0} and plan.stop_proven


def test_as_of_is_not_fooled_by_record_timestamps() -> None:
    """Scenario: a record stamped hours ahead of its neighbours (offset 1), and one stamped by the wall clock
    although it occurred at 1500 (offset 3). We expect the stop after offset 3: the facts judge by occurredAt."""
    stamped = FakeLog({0: [100, 9_000_000, 1200, 1_800_000_000_000, 2500, 2600]})
    occurred: dict[int, list[int | None]] = {0: [100, 9_000_000, 1200, 1500, 2500, 2600]}
    plan = plan_replay(stamped, "t", mode="as-of", as_of_ms=2000, facts=facts_over(occurred, range_records=1))
    assert dict(plan.stop_offsets) == {0: 4}
    assert dict(plan.offsets_at_as_of_ms or {}) == {0: 1}  # where a timestamp-based stop would have cut


def test_to_end_stops_at_high_watermarks_and_up_to_before_the_first_record_after_t() -> None:
    """Scenario: the other two modes. We expect high watermarks, and offsets_for_times(T + 1)."""
    assert dict(plan_replay(LOG, "t", mode="to-end", as_of_ms=None).stop_offsets) == {0: 6, 1: 2, 2: 0}
    # up to 2000: the record at 2000 is in (inclusive), 2500 is the first one after.
    assert dict(plan_replay(LOG, "t", mode="up-to", as_of_ms=2000).stop_offsets) == {0: 2, 1: 2, 2: 0}
    assert dict(plan_replay(LOG, "t", mode="up-to", as_of_ms=1999).stop_offsets) == {0: 1, 1: 2, 2: 0}
    assert dict(plan_replay(LOG, "t", mode="up-to", as_of_ms=99).stop_offsets) == {0: 0, 1: 0, 2: 0}


def test_a_log_that_lost_its_beginning_cannot_be_replayed() -> None:
    """Scenario: retention deleted the first records. We expect a ReplayError, not a silently partial view."""
    with pytest.raises(ReplayError, match="no longer holds its first records"):
        plan_replay(FakeLog({0: [1, 2]}, low=1), "t", mode="to-end", as_of_ms=None)


def test_partitions_are_split_by_records_to_read() -> None:
    """Scenario: uneven partitions over two workers. We expect every non-empty partition once, loads balanced."""
    plan = plan_replay(FakeLog({0: [1] * 10, 1: [1] * 6, 2: [1] * 5, 3: []}), "t", mode="to-end", as_of_ms=None)
    groups = split_partitions(plan, 2)
    assert sorted(r.partition for g in groups for r in g) == [0, 1, 2]
    assert sorted(sum(r.stop - r.start for r in g) for g in groups) == [10, 11]
