"""Where the local broker keeps its files: data in the project, jars in the user cache, absolute and frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scripts import kafka_local as kl

PROJECT_ROOT = Path(__file__).resolve().parents[4]


def test_default_paths_keep_data_in_the_project_and_jars_in_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    paths = kl.LocalKafkaPaths()
    assert paths.run_dir == PROJECT_ROOT / ".run" / "kafka"
    assert paths.lib_dir == Path.home().resolve() / ".cache" / "rewind" / "kafka-4.1.1" / "lib"
    assert paths.data_dir.parent == paths.server_properties.parent == paths.pid_file.parent == paths.run_dir
    assert paths.log_file.parent == paths.log4j2_properties.parent == paths.cluster_id_file.parent == paths.run_dir


def test_paths_are_absolute_and_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = kl.LocalKafkaPaths(run_dir=Path("rel/run"), lib_dir=Path("rel/lib"))
    assert paths.run_dir == tmp_path.resolve() / "rel" / "run"
    assert paths.lib_dir.is_absolute()
    with pytest.raises(dataclasses.FrozenInstanceError):
        paths.run_dir = tmp_path  # type: ignore[misc]  # the frozen dataclass must refuse this
