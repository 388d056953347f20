"""Range facts of the log: what is scanned, what is proven, what survives on disk (no broker)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from state.replay.logfacts import LogFacts, RangeFact, facts_path
from tests.unit.state.replay.test_replay_plan import decode_time


class Log:
    """Records per partition as occurredAt values (None: undecodable); counts what is read."""

    def __init__(self, partitions: dict[int, list[int | None]]) -> None:
        self.partitions = partitions
        self.reads: list[dict[int, tuple[int, int]]] = []

    def read(self, ranges: Mapping[int, tuple[int, int]]) -> Iterator[tuple[int, int, bytes | None]]:
        self.reads.append(dict(ranges))
        for p, (start, stop) in ranges.items():
            for offset in range(start, stop):
                t = self.partitions[p][offset]
                yield p, offset, b"junk" if t is None else str(t).encode()


def open_facts(log: Log, path: Path | None, *, range_records: int = 2) -> LogFacts:
    return LogFacts(path, read=log.read, decode=decode_time, range_records=range_records)


def test_ranges_hold_the_smallest_event_time_and_skip_undecodable_records() -> None:
    """Scenario: five records in ranges of two, one undecodable. We expect [0,2) min 300, [2,4) min 50, [4,5) None."""
    log = Log({0: [300, 400, None, 50, None]})
    facts = open_facts(log, None)
    facts.extend({0: 5})
    assert facts.ranges[0] == [RangeFact(0, 2, 300), RangeFact(2, 4, 50), RangeFact(4, 5, None)]


def test_stop_is_the_start_of_the_trailing_run_of_ranges_after_t() -> None:
    """Scenario: ranges with minima 100, 900, 3000, 5000 (pairs of records). We expect, as of 2000, a stop at
    offset 4; as of 99, at 0; as of 6000, at the high watermark (nothing proven)."""
    log = Log({0: [100, 200, 900, 1000, 3000, 3100, 5000, 5100]})
    facts = open_facts(log, None)
    facts.extend({0: 8})
    assert facts.stop_offset(0, as_of_ms=2000, high=8) == 4
    assert facts.stop_offset(0, as_of_ms=99, high=8) == 0
    assert facts.stop_offset(0, as_of_ms=6000, high=8) == 8
    assert facts.stop_offset(0, as_of_ms=3000, high=8) == 6  # inclusive: an event at exactly T is visible


def test_a_range_is_judged_by_its_smallest_event_not_its_first() -> None:
    """Scenario: a late event (900) inside a range that starts after T. We expect the stop after that range."""
    log = Log({0: [100, 5000, 900, 5100, 5200]})
    facts = open_facts(log, None)
    facts.extend({0: 5})
    assert facts.stop_offset(0, as_of_ms=2000, high=5) == 4


def test_without_facts_up_to_high_nothing_is_proven() -> None:
    """Scenario: facts up to offset 4, a replay planned up to 6. We expect the high watermark."""
    log = Log({0: [100, 200, 5000, 5000, 5000, 5000]})
    facts = open_facts(log, None)
    facts.extend({0: 4})
    assert facts.stop_offset(0, as_of_ms=1000, high=6) == 6
    assert facts.stop_offset(0, as_of_ms=1000, high=4) == 2


def test_facts_persist_and_only_the_new_tail_is_scanned(tmp_path: Path) -> None:
    """Scenario: facts scanned and saved, reopened, then the log grows. We expect the reopened facts to
    scan nothing up to the old end, and only the new records after it."""
    path = facts_path(tmp_path, "orders", "id-1")
    log = Log({0: [100, 200, 300], 1: [7]})
    first = open_facts(log, path)
    first.extend({0: 3, 1: 1})
    assert json.loads(path.read_text())["partitions"]["0"] == [[0, 2, 100], [2, 3, 300]]
    log.partitions[0] += [50, 60]
    again = open_facts(log, path)
    assert again.ranges == first.ranges
    again.extend({0: 5, 1: 1})
    assert log.reads[-1] == {0: (3, 5)} and again.records_scanned == 2
    assert again.ranges[0][-1] == RangeFact(3, 5, 50)
    assert open_facts(log, path).stop_offset(0, as_of_ms=60, high=5) == 5


def test_a_damaged_or_gapped_file_is_ignored_and_rescanned(tmp_path: Path) -> None:
    """Scenario: a fact file that is not JSON, then one whose ranges do not start at 0. We expect both to
    be ignored (rescanned from 0), never trusted."""
    path = facts_path(tmp_path, "orders", "id-1")
    log = Log({0: [100, 200, 300]})
    path.write_text("{not json")
    assert open_facts(log, path).ranges == {}
    path.write_text(json.dumps({"version": 1, "partitions": {"0": [[1, 3, 9999]]}}))
    facts = open_facts(log, path)
    assert facts.ranges == {}
    facts.extend({0: 3})
    assert log.reads[-1] == {0: (0, 3)}


def test_another_topic_id_has_other_facts(tmp_path: Path) -> None:
    """Scenario: a topic deleted and created again under its name. We expect another fact file."""
    assert facts_path(tmp_path, "orders", "id-1") != facts_path(tmp_path, "orders", "id-2")


def test_two_writers_merge_and_the_longer_coverage_wins(tmp_path: Path) -> None:
    """Scenario: one process saves facts to offset 4 while another, opened earlier, saves facts to offset 2.
    We expect the file to keep the facts to offset 4."""
    path = facts_path(tmp_path, "orders", "id-1")
    log = Log({0: [1, 2, 3, 4]})
    early = open_facts(log, path)
    late = open_facts(log, path)
    late.extend({0: 4})
    early.extend({0: 2})
    assert open_facts(log, path).covered_end(0) == 4
