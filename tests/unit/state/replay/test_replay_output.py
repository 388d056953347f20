"""What a replay output records: the manifest round-trips, and the watermark is what was proven read."""

from __future__ import annotations

from pathlib import Path

import pytest

from state.errors import ReplayError
from state.replay.engine import _watermark_ms
from state.replay.output import MANIFEST_NAME, ReplayManifest, fold_fingerprint, read_manifest, write_manifest
from state.replay.plan import ReplayMode, ReplayPlan


def plan(mode: ReplayMode, *, as_of: int | None, stop: dict[int, int], high: dict[int, int]) -> ReplayPlan:
    return ReplayPlan(topic="t", mode=mode, as_of_ms=as_of, start_offsets=dict.fromkeys(stop, 0),
                      stop_offsets=stop, high_watermarks=high)


def test_manifest_round_trips(tmp_path: Path) -> None:
    """Scenario: a manifest written and read back. We expect equality, and partitions as ints again."""
    manifest = ReplayManifest(
        view="customer-summary", topic="orders", partitions=2, mode="as-of", as_of_ms=5, next_offsets={0: 10, 1: 0},
        max_timestamp_ms={0: 99}, watermark_ms=4, max_valid_from_ms=5, complete=False, cut_orders=3, fold_fingerprint="abc",
        counters={"events_in": 10}, created_at_ms=1, seeded_from="snap-1",
    )
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert not (tmp_path / (MANIFEST_NAME + ".tmp")).exists()


def test_a_directory_without_manifest_is_not_an_output(tmp_path: Path) -> None:
    """Scenario: a half-built directory. We expect a ReplayError naming it."""
    with pytest.raises(ReplayError, match="not a replay output"):
        read_manifest(tmp_path)


def test_fold_fingerprint_follows_the_fold_code(tmp_path: Path) -> None:
    """Scenario: a copy of the fold code, then one edited byte. We expect the same, then another fingerprint."""
    root = Path(__file__).resolve().parents[4]
    for rel in ("pipelines/projections", "state/replay"):
        (tmp_path / rel).mkdir(parents=True)
    for src in (root / "pipelines/projections").glob("*.py"):
        (tmp_path / "pipelines/projections" / src.name).write_bytes(src.read_bytes())
    (tmp_path / "state/replay/fold.py").write_bytes((root / "state/replay/fold.py").read_bytes())
    (tmp_path / "pipelines/kernel.py").write_bytes((root / "pipelines/kernel.py").read_bytes())
    assert fold_fingerprint(tmp_path) == fold_fingerprint(root)
    (tmp_path / "state/replay/fold.py").write_bytes((root / "state/replay/fold.py").read_bytes() + b"#")
    assert fold_fingerprint(tmp_path) != fold_fingerprint(root)


def test_watermark_of_an_as_of_replay_is_t() -> None:
    """Scenario: as of T=5000, one partition stopped early, one read to its end. We expect T: the stops are proven."""
    p = plan("as-of", as_of=5000, stop={0: 3, 1: 8}, high={0: 9, 1: 8})
    assert _watermark_ms(p, {0: 5500, 1: 7000}) == 5000


def test_watermark_to_the_end_is_the_greatest_timestamp_read_and_up_to_proves_nothing() -> None:
    """Scenario: a replay to the end, then an up-to build. We expect the greatest timestamp read, then None."""
    assert _watermark_ms(plan("to-end", as_of=None, stop={0: 5, 1: 5}, high={0: 5, 1: 5}), {0: 100, 1: 300}) == 300
    assert _watermark_ms(plan("to-end", as_of=None, stop={0: 0}, high={0: 0}), {}) is None
    assert _watermark_ms(plan("up-to", as_of=200, stop={0: 2}, high={0: 5}), {0: 100}) is None
