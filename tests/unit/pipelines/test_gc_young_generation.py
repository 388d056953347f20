"""gc_young_generation_of: the thresholds hold inside the block and come back after it, also after an error."""

from __future__ import annotations

import gc

import pytest

from pipelines.gc_pause import gc_young_generation_of


def test_thresholds_inside_the_block_and_restored_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="boom"), gc_young_generation_of(50_000):
        assert gc.get_threshold()[0] == 50_000
        assert gc.isenabled()  # collecting less often, not switched off
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
