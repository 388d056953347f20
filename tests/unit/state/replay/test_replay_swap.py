"""Served directories: build beside, publish by rename, swap by an atomic symlink flip."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ReplayError, SwapError
from state.replay.output import ReplayManifest, write_manifest
from state.replay.swap import CURRENT, PREVIOUS, build_paths, new_generation_dir, prune, publish, served_dir, swap_view


def output(path: Path, view: str = "order-status") -> Path:
    """A minimal finished replay output (a manifest is what makes a directory one)."""
    path.mkdir(parents=True)
    write_manifest(path, ReplayManifest(
        view=view, topic="orders", partitions=1, mode="to-end", as_of_ms=None, next_offsets={0: 1}, max_timestamp_ms={0: 1},
        watermark_ms=None, max_valid_from_ms=1, complete=True, cut_orders=0, fold_fingerprint="f",
    ))
    return path


def test_build_publish_swap_and_rollback_link(tmp_path: Path) -> None:
    """Scenario: two replays swapped in one after the other. We expect current -> the second, previous -> the first."""
    first = new_generation_dir(tmp_path, "order-status")
    tmp = build_paths(first)
    output(tmp)
    publish(tmp, first)
    assert first.is_dir() and not tmp.exists()
    assert swap_view(tmp_path, "order-status", first).previous is None
    second = output(new_generation_dir(tmp_path, "order-status"))
    result = swap_view(tmp_path, "order-status", second)
    assert (result.current, result.previous) == (second.resolve(), first.resolve())
    assert served_dir(tmp_path, "order-status") == second.resolve()
    assert (tmp_path / "order-status" / PREVIOUS).resolve() == first.resolve()
    assert (tmp_path / "order-status" / CURRENT).is_symlink()


def test_swap_refuses_what_is_not_a_finished_output_of_the_view(tmp_path: Path) -> None:
    """Scenario: a half-built directory, and another view's output. We expect SwapError and nothing flipped."""
    (tmp_path / "half").mkdir()
    with pytest.raises(SwapError):
        swap_view(tmp_path, "order-status", tmp_path / "half")
    with pytest.raises(SwapError, match="replay of customer-summary"):
        swap_view(tmp_path, "order-status", output(tmp_path / "other", "customer-summary"))
    assert served_dir(tmp_path, "order-status") is None


def test_builds_never_overwrite_and_clear_crashed_leftovers(tmp_path: Path) -> None:
    """Scenario: --into an existing directory, and a leftover .tmp of a crashed build. We expect a refusal,
    and the leftover removed."""
    existing = output(tmp_path / "x")
    with pytest.raises(ReplayError, match="exists"):
        build_paths(existing)
    leftover = tmp_path / "y.tmp"
    (leftover / "junk").mkdir(parents=True)
    assert build_paths(tmp_path / "y") == leftover and not leftover.exists()


def test_prune_keeps_current_and_previous(tmp_path: Path) -> None:
    """Scenario: three generations swapped in turn. We expect prune to delete only the oldest."""
    gens = [output(tmp_path / "order-status" / f"gen-{i}") for i in range(3)]
    for g in gens:
        swap_view(tmp_path, "order-status", g)
    assert prune(tmp_path, "order-status") == [gens[0]]
    assert gens[1].exists() and gens[2].exists()
