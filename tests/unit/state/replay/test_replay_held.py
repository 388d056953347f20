"""Held changes are released exactly in a heap's (valid_from, arrival) order, below each watermark."""

from __future__ import annotations

import heapq
import random
from typing import Any

from state.replay.held import HeldChanges


def test_releases_match_a_heap_on_valid_from_then_arrival() -> None:
    rnd = random.Random(3)
    held = HeldChanges()
    heap: list[tuple[int, int, Any]] = []
    n = 0
    for step in range(200):
        batch: list[Any] = [("k", {}, f"o{n + i}", 1, rnd.randint(step, step + 30), 0, n + i) for i in range(rnd.randint(0, 12))]
        held.add(batch)
        for change in batch:
            n += 1
            heapq.heappush(heap, (change[4], n, change))
        if step % 17 == 16:
            limit = rnd.randint(1, 20)
            first = [heapq.heappop(heap)[2] for _ in range(min(limit, len(heap)))]
            assert held.release_first(limit) == first
        watermark = step + rnd.randint(-5, 10)
        expected: list[Any] = []
        while heap and heap[0][0] < watermark:
            expected.append(heapq.heappop(heap)[2])
        assert held.release(watermark) == expected
        assert len(held) == len(heap) and sorted(held, key=lambda c: c[6]) == sorted((c for _, _, c in heap), key=lambda c: c[6])
    assert held.release(2**63) == [heapq.heappop(heap)[2] for _ in range(len(heap))]
