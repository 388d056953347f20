"""The fold state of a replay output: what a later replay needs to continue from it.

A view store holds view rows and their versions; continuing a fold also needs every
order's own row (the order fold's state: lastSeq, status, items, ...), because a
re-keyed view's next change comes out of the order fold. This small RocksDB keeps:

* ``o u32(partition) orderId`` -> order row (JSON): one per order, grouped by partition
  so a worker finds the orders of its partitions (and a spill, :mod:`state.replay.orderrows`,
  has the same layout);
* ``v key`` -> view row (JSON): the current row of each key of a re-keyed view (the
  parent's fold state; order-status needs none: its rows are the order rows).

Values are orjson: exact for 64-bit ints (money is integer minor units).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import orjson
from rocksdict import BlockBasedOptions, Checkpoint, Options, WriteBatch

from pipelines.projections import Row
from state.errors import ReplayError
from state.rocks_open import open_rdict, raw_items, write_options

__all__ = ["FoldStateDB"]

_ORDER = b"o"
_VIEW = b"v"
_U32 = struct.Struct(">I")
_BATCH = 10_000


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    # A replay worker looks up every new order (mostly absent) in its spill and the seed.
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    return options


class FoldStateDB:
    """Order rows per partition and re-keyed view rows, in one RocksDB directory."""

    def __init__(self, path: Path, *, read_only: bool = False, wal: bool = True) -> None:
        """``wal=False`` skips RocksDB's write-ahead log: for a directory thrown away unless
        :meth:`close` (which flushes) is reached, as a replay's spills and build are."""
        self.path = Path(path)
        self._read_only = read_only
        self._db = open_rdict(self.path, _options(), read_only=read_only, error=ReplayError, what="fold state")
        self._write_options = write_options(wal=wal)

    def _write(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        batch = WriteBatch(raw_mode=True)
        n = 0
        for key, value in items:
            batch.put(key, value)
            n += 1
            if n % _BATCH == 0:
                self._db.write(batch, self._write_options)
                batch = WriteBatch(raw_mode=True)
        self._db.write(batch, self._write_options)

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in raw_items(self._db, from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key, value

    def put_order_rows(self, partition: int, rows: Mapping[str, Row]) -> None:
        """Store (replace) the rows of these orders of ``partition``."""
        prefix = _ORDER + _U32.pack(partition)
        dumps = orjson.dumps
        self._write((prefix + order_id.encode(), dumps(row)) for order_id, row in rows.items())

    def order_row(self, partition: int, order_id: str) -> Row | None:
        """One order's row (None: not stored)."""
        data = self._db.get(_ORDER + _U32.pack(partition) + order_id.encode())
        return None if data is None else orjson.loads(data)

    def copy_order_rows(self, source: FoldStateDB) -> None:
        """Store (replace) every order row of ``source``, as it is stored there."""
        self._write(source._scan(_ORDER))

    def order_rows(self, partition: int) -> dict[str, Row]:
        """Every order row of ``partition`` (orderId -> row)."""
        prefix = _ORDER + _U32.pack(partition)
        skip = len(prefix)
        loads = orjson.loads
        return {key[skip:].decode(): loads(value) for key, value in self._scan(prefix)}

    def put_view_rows(self, rows: Mapping[str, Row]) -> None:
        """Store (replace) these rows of the re-keyed view."""
        dumps = orjson.dumps
        self._write((_VIEW + key.encode(), dumps(row)) for key, row in rows.items())

    def view_rows(self) -> dict[str, Row]:
        """Every row of the re-keyed view (key -> row)."""
        loads = orjson.loads
        return {key[1:].decode(): loads(value) for key, value in self._scan(_VIEW)}

    def checkpoint(self, dest: Path) -> None:
        """A consistent copy in new directory ``dest`` (RocksDB checkpoint: SST files hard-linked)."""
        try:
            Checkpoint(self._db).create_checkpoint(str(dest))
        except Exception as exc:
            raise ReplayError(f"cannot checkpoint fold state {self.path} to {dest}: {exc}") from exc

    def close(self) -> None:
        """Flush and release the database (without a WAL, the flush is what saves the writes:
        its failure is raised, after the database is released)."""
        try:
            if not self._read_only:
                self._db.flush()
        except Exception as exc:
            self._db.close()
            raise ReplayError(f"cannot flush fold state {self.path}: {exc}") from exc
        self._db.close()
