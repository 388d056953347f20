"""Served directories: build beside, publish by rename, swap by an atomic symlink flip."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.errors import ConfigError
from scripts.cli_common import build_settings
from state.errors import ReplayError, SwapError
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


VIEW = "order-status"


def generation(root: Path, i: int, view: str = VIEW) -> Path:
    """Generation ``i`` of ``view``, built and published the way a replay does (names ordered by i)."""
    target = root / view / f"gen-{1_700_000_000_000 + i}-{i:08x}"
    tmp = build_paths(target)
    output(tmp, view)
    publish(tmp, target)
    return target


def generations_on_disk(root: Path, view: str = VIEW) -> list[Path]:
    return sorted(p for p in (root / view).iterdir() if p.name.startswith("gen-"))


def test_swap_with_keep_prunes_to_the_newest_generations(tmp_path: Path) -> None:
    """Scenario: 5 generations published and swapped in turn with keep_generations=2. We expect exactly 2 left
    on disk, the served one and its rollback target among them, and each swap to report what it pruned."""
    pruned: list[Path] = []
    gens = []
    for i in range(5):
        gens.append(generation(tmp_path, i))
        pruned += swap_view(tmp_path, VIEW, gens[-1], keep_generations=2).pruned
    assert generations_on_disk(tmp_path) == gens[3:]
    assert served_dir(tmp_path, VIEW) == gens[4].resolve()
    assert (tmp_path / VIEW / PREVIOUS).resolve() == gens[3].resolve()
    assert pruned == gens[:3]
    assert not [p for p in (tmp_path / VIEW).iterdir() if p.name.startswith(".pruning-")]


def test_keep_one_still_keeps_the_rollback_target(tmp_path: Path) -> None:
    """Scenario: 3 generations swapped in turn with keep_generations=1. We expect the served one and 'previous'
    kept (a reader that opened 'previous' before the swap may still read it), the oldest deleted."""
    gens = []
    for i in range(3):
        gens.append(generation(tmp_path, i))
        swap_view(tmp_path, VIEW, gens[-1], keep_generations=1)
    assert generations_on_disk(tmp_path) == gens[1:]


def test_swap_without_keep_prunes_nothing(tmp_path: Path) -> None:
    """Scenario: 4 generations swapped in turn without keep_generations. We expect all of them still on disk."""
    gens = [generation(tmp_path, i) for i in range(4)]
    for g in gens:
        assert swap_view(tmp_path, VIEW, g).pruned == ()
    assert generations_on_disk(tmp_path) == gens


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_generations_must_be_at_least_one(tmp_path: Path, keep: int) -> None:
    """Scenario: keep_generations below 1, to prune and to swap_view. We expect a ConfigError saying >= 1,
    nothing deleted and nothing flipped."""
    gens = [generation(tmp_path, i) for i in range(3)]
    swap_view(tmp_path, VIEW, gens[0])
    with pytest.raises(ConfigError, match=r"keep_generations must be an integer >= 1"):
        prune(tmp_path, VIEW, keep_generations=keep)
    with pytest.raises(ConfigError, match=r"keep_generations must be an integer >= 1"):
        swap_view(tmp_path, VIEW, gens[2], keep_generations=keep)
    assert served_dir(tmp_path, VIEW) == gens[0].resolve()
    assert generations_on_disk(tmp_path) == gens


def test_keep_generations_setting_is_validated_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: the setting from an option (0), from the environment (0), and unset. We expect a one-line
    ConfigError naming the field and REWIND_REPLAY_KEEP_GENERATIONS, and a default of 3."""
    monkeypatch.delenv("REWIND_REPLAY_KEEP_GENERATIONS", raising=False)
    assert build_settings().replay_keep_generations == 3
    with pytest.raises(ConfigError, match=r"^invalid replay_keep_generations \(REWIND_REPLAY_KEEP_GENERATIONS\): "
                                          r"Input should be greater than or equal to 1$"):
        build_settings(replay_keep_generations=0)
    monkeypatch.setenv("REWIND_REPLAY_KEEP_GENERATIONS", "0")
    with pytest.raises(ConfigError, match=r"^invalid replay_keep_generations \(REWIND_REPLAY_KEEP_GENERATIONS\): "):
        build_settings()
    monkeypatch.setenv("REWIND_REPLAY_KEEP_GENERATIONS", "5")
    assert build_settings().replay_keep_generations == 5


def test_prune_never_deletes_what_is_not_a_generation_of_the_view(tmp_path: Path) -> None:
    """Scenario: old-named gen-* entries that are not replay outputs of the view (no manifest, a file, another
    view's output, a link, a build in progress) beside 4 real generations; prune with keep 1. We expect every
    foreign entry untouched (and not counted), and only the real old generations deleted."""
    base = tmp_path / VIEW
    gens = [generation(tmp_path, i) for i in range(4)]
    no_manifest = base / "gen-1-nomanifest"
    (no_manifest / "data").mkdir(parents=True)
    (no_manifest / "data" / "important.bin").write_bytes(b"x")
    a_file = base / "gen-2-file"
    a_file.write_text("not a directory")
    other_view = output(base / "gen-3-other", "customer-summary")
    elsewhere = output(tmp_path / "elsewhere" / "gen-4-target")
    a_link = base / "gen-5-link"
    a_link.symlink_to(elsewhere, target_is_directory=True)
    building = base / "gen-6-building.tmp"
    output(building)
    for g in gens:
        swap_view(tmp_path, VIEW, g)
    assert prune(tmp_path, VIEW, keep_generations=1) == gens[:2]
    assert (no_manifest / "data" / "important.bin").read_bytes() == b"x"
    assert a_file.read_text() == "not a directory"
    assert other_view.is_dir() and a_link.is_symlink() and elsewhere.is_dir() and building.is_dir()
    assert generations_on_disk(tmp_path) == sorted([no_manifest, a_file, other_view, a_link, building, *gens[2:]])


def test_prune_keeps_an_older_generation_current_points_at(tmp_path: Path) -> None:
    """Scenario: 5 generations; current rolled back to the second oldest (previous: the newest), then prune with
    keep 2; and again with current pointed at the oldest by hand and no 'previous'. We expect the served
    generation kept each time besides the newest 2, everything else deleted."""
    gens = [generation(tmp_path, i) for i in range(5)]
    swap_view(tmp_path, VIEW, gens[4])
    result = swap_view(tmp_path, VIEW, gens[1], keep_generations=2)  # rollback
    assert result.pruned == (gens[0], gens[2])
    assert generations_on_disk(tmp_path) == [gens[1], gens[3], gens[4]]
    assert served_dir(tmp_path, VIEW) == gens[1].resolve()

    (tmp_path / VIEW / PREVIOUS).unlink()
    (tmp_path / VIEW / CURRENT).unlink()
    (tmp_path / VIEW / CURRENT).symlink_to(gens[1].name)
    newer = [generation(tmp_path, i) for i in (5, 6)]
    assert prune(tmp_path, VIEW, keep_generations=2) == [gens[3], gens[4]]
    assert generations_on_disk(tmp_path) == [gens[1], *newer]
    assert served_dir(tmp_path, VIEW) == gens[1].resolve()


def test_prune_finishes_an_interrupted_prune_and_orders_by_time(tmp_path: Path) -> None:
    """Scenario: a generation half-deleted by a crashed prune (left as .pruning-gen-...), and generations named
    gen-9-... and gen-10-... (10 served, no previous); prune with keep 1. We expect the leftover removed, and
    gen-9 deleted as the older one (ordered by the time in the name, not as text)."""
    base = tmp_path / VIEW
    (base / ".pruning-gen-1-deadbeef" / "view").mkdir(parents=True)
    nine = output(base / "gen-9-aaaaaaaa")
    ten = output(base / "gen-10-aaaaaaaa")
    swap_view(tmp_path, VIEW, ten)
    assert prune(tmp_path, VIEW, keep_generations=1) == [nine]
    assert not (base / ".pruning-gen-1-deadbeef").exists()
    assert generations_on_disk(tmp_path) == [ten]
