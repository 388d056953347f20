"""The batch engine's state of one source partition: order rows and the offset they are folded to, in one RocksDB.

One directory per source partition, so a partition's state moves with it and is dropped
with it. Keys (raw bytes):

- the stage's own keys (:mod:`pipelines.batch.stages`; e.g. ``r`` + orderId for an order
  row), each holding one JSON value (orjson); they never start with ``m:``;
- ``m:applied``: the next offset of the partition the rows are folded to (8 bytes,
  big-endian), i.e. every record below it is in the rows, none at or above it;
- ``m:stream``: the partition's stream time after the record before ``applied``
  (8 bytes, big-endian; absent: none decoded yet).

Rows and the meta keys are written in one WriteBatch (:meth:`PartitionStore.commit`),
so a store is always a fold of exactly the records below ``applied``.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import orjson
from rocksdict import BlockBasedOptions, Cache, Checkpoint, Options, WriteBatch, WriteBufferManager

from pipelines.errors import PipelineStateError
from state.rocks_open import open_rdict, write_options

__all__ = ["PartitionStore"]

_APPLIED = b"m:applied"
_STREAM = b"m:stream"


#: Memory all the partition stores of one process share, however many partitions it is given
#: (bytes): RocksDB's block cache, and its memtables (a write buffer manager flushes the
#: largest memtable when they pass the bound). Small, because a bound the engine reaches only
#: on a long backlog is memory that grows with the backlog: with 64 MiB each, peak RSS went from
#: 314 MiB at 250k events to 463 MiB at 2M; with these, 303 to 366, at the same speed
#: (scripts/bench_memory.py). The rows a fold reads are mostly recent, in the memtables or the
#: OS page cache; 16 MiB of memtables instead of 32 saved nothing.
BLOCK_CACHE_BYTES = 8 * 1024 * 1024
MEMTABLE_BYTES = 32 * 1024 * 1024


@functools.cache
def _shared_memory() -> tuple[Cache, WriteBufferManager]:
    """The process's one block cache and write buffer manager (built on first use, not at import)."""
    return Cache(BLOCK_CACHE_BYTES), WriteBufferManager(MEMTABLE_BYTES, False)


def _options() -> Options:
    cache, write_buffers = _shared_memory()
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(8 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(write_buffers)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    options.set_block_based_table_factory(table)
    return options


class PartitionStore:
    """Rows of one partition plus staged (not yet committed) changes.

    Reads see staged rows first (:meth:`get`). :meth:`commit` writes the staged rows and
    the new ``applied`` offset atomically; :meth:`discard` forgets them (an aborted
    transaction). Not thread-safe: one engine loop owns it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_rdict(path, _options(), read_only=False, error=PipelineStateError, what="batch partition store")
        self._write = write_options(wal=True)
        #: Staged rows (not None), serialised only at commit: a row changed by several events of one
        #: checkpoint is encoded once.
        self._rows: dict[bytes, Any] = {}
        raw_applied = self._db.get(_APPLIED)
        #: Next offset the committed rows are folded to (0: nothing folded).
        self.applied: int = 0 if raw_applied is None else int.from_bytes(raw_applied, "big")
        raw_stream = self._db.get(_STREAM)
        #: Stream time after ``applied`` (None: no record decoded), including staged records.
        self.stream_time_ms: int | None = None if raw_stream is None else int.from_bytes(raw_stream, "big", signed=True)
        self._committed_stream_time_ms = self.stream_time_ms

    def get(self, key: bytes) -> Any:
        """The value under ``key``, staged or committed (None: never written)."""
        row = self._rows.get(key)
        if row is not None:
            return row
        stored = self._db.get(key)
        return None if stored is None else orjson.loads(stored)

    def put(self, key: bytes, value: Any) -> None:
        """Stage ``value`` (not None) under ``key``, to be written by :meth:`commit`."""
        self._rows[key] = value

    @property
    def staged_count(self) -> int:
        """Rows staged since the last commit (held in memory until then)."""
        return len(self._rows)

    def commit(self, next_offset: int) -> None:
        """Write the staged rows, ``applied = next_offset`` and the stream time in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        dumps = orjson.dumps
        for key, value in self._rows.items():
            batch.put(key, dumps(value))
        batch.put(_APPLIED, next_offset.to_bytes(8, "big"))
        if self.stream_time_ms is not None:
            batch.put(_STREAM, self.stream_time_ms.to_bytes(8, "big", signed=True))
        self._db.write(batch, self._write)
        self.applied = next_offset
        self._committed_stream_time_ms = self.stream_time_ms
        self._rows.clear()

    def discard(self) -> None:
        """Forget every staged row and stream time (their transaction was aborted)."""
        self._rows.clear()
        self.stream_time_ms = self._committed_stream_time_ms

    def checkpoint(self, dest: Path) -> None:
        """A consistent copy of the committed store in new directory ``dest`` (a RocksDB checkpoint:
        table files hard-linked where they can be). Staged rows are not in it."""
        try:
            Checkpoint(self._db).create_checkpoint(str(dest))
        except Exception as exc:  # rocksdict raises a plain Exception carrying RocksDB's message
            raise PipelineStateError(f"cannot checkpoint {self.path} to {dest}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def destroy(self) -> None:
        """Close and delete the store (its state belongs to no committed offset we can trust)."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
