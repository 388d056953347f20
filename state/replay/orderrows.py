"""The order rows of one replay worker's fold: the recent ones in memory, the rest on disk.

A replay folds every order it reads, so keeping every order row in a dict grows the
worker by a few kB per order, without bound. Orders are short-lived (placed, paid,
shipped, delivered within days of event time), and a partition is read in roughly
event-time order, so the orders placed longest ago are the ones least likely to get
another event. :class:`OrderRows` keeps at most ``max_in_memory`` rows in a dict and
moves the oldest inserted ones, in bulk, to a RocksDB of its own (the *spill*, laid
out like the fold state: :class:`~state.replay.foldstate.FoldStateDB`); a row looked up
and not in memory is read back from the spill, then from the seed snapshot's fold state.
Which rows are in memory changes how fast, never what, the fold decides.

Every row in memory or in the spill was changed by this replay: at the end
:meth:`OrderRows.close` spills the rest, and the spill holds exactly the rows the
replay's fold state must save (:meth:`~state.replay.foldstate.FoldStateDB.copy_order_rows`).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from pipelines.projections import Row
from state.replay.foldstate import FoldStateDB

__all__ = ["OrderRows"]


class OrderRows:
    """orderId -> order row of one worker's partitions (a partition is needed to find a row on disk)."""

    def __init__(self, spill_dir: Path | None = None, *, seed: FoldStateDB | None = None, max_in_memory: int = 50_000) -> None:
        """``spill_dir``: where to spill (None: keep every row in memory); ``seed``: the fold
        state to read rows this replay has not changed from (a snapshot's)."""
        self._rows: dict[str, Row] = {}
        self._partition: dict[str, int] = {}
        self._spill_dir = None if spill_dir is None else Path(spill_dir)
        self._spill: FoldStateDB | None = None
        #: orderIds in the spill: a replay meets most orders first as new ones, and a set
        #: lookup is far cheaper than RocksDB's (bloom filter and all) for every one of them.
        self._spilled: set[str] = set()
        self._seed = seed
        self._max = max(1, max_in_memory)
        #: Rows written to the spill so far (one row may count more than once).
        self.spilled = 0

    def get(self, order_id: str, partition: int) -> Row | None:
        """The order's current row (None: the order has none yet)."""
        row = self._rows.get(order_id)
        if row is not None:
            return row
        if self._spill is not None and order_id in self._spilled:
            row = self._spill.order_row(partition, order_id)
            if row is not None:
                return row
        if self._seed is not None:
            return self._seed.order_row(partition, order_id)
        return None

    def put(self, order_id: str, partition: int, row: Row) -> None:
        """Set the order's row (this replay changed it)."""
        rows = self._rows
        if order_id not in rows and len(rows) >= self._max and self._spill_dir is not None:
            # In bulk: one spill write per max/2 new orders, not one per order.
            self._evict(len(rows) - self._max // 2 + 1)
        rows[order_id] = row
        self._partition[order_id] = partition

    def __len__(self) -> int:
        return len(self._rows)

    def in_memory(self) -> dict[str, Row]:
        """A copy of the rows held in memory (every changed row, while nothing is spilled)."""
        return dict(self._rows)

    def _evict(self, n: int) -> None:
        """Spill the ``n`` rows inserted first (dicts keep insertion order)."""
        rows, partitions = self._rows, self._partition
        victims = list(islice(rows, n))
        by_partition: dict[int, dict[str, Row]] = {}
        for order_id in victims:
            by_partition.setdefault(partitions.pop(order_id), {})[order_id] = rows.pop(order_id)
        self._write(by_partition)

    def _write(self, by_partition: dict[int, dict[str, Row]]) -> None:
        assert self._spill_dir is not None
        if self._spill is None:
            # No WAL: a spill is read back only by this replay, after close() has flushed it.
            self._spill = FoldStateDB(self._spill_dir, wal=False)
        for partition, changed in by_partition.items():
            self._spill.put_order_rows(partition, changed)
            self._spilled.update(changed)
            self.spilled += len(changed)

    def close(self) -> None:
        """Spill every row still in memory and close the spill: it then holds every row this
        replay changed (without a spill directory: just forget the rows)."""
        if self._spill_dir is None:
            self._rows.clear()
            self._partition.clear()
            return
        if self._rows or self._spill is None:  # an empty spill says that nothing changed
            self._evict(len(self._rows))
        self._spilled.clear()
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def discard(self) -> None:
        """Close the spill without writing what is in memory (a replay that stops or fails)."""
        self._rows.clear()
        self._partition.clear()
        self._spilled.clear()
        if self._spill is not None:
            self._spill.close()
            self._spill = None
