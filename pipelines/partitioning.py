"""Where a key belongs: the Java client's partitioner, ``toPositive(murmur2(key)) % partitions``.

Kafka's ``BuiltInPartitioner.partitionForKey`` (and librdkafka's ``murmur2`` /
``murmur2_random`` partitioners, which the workload producer and Quix Streams use) place
a keyed record on ``(murmur2(key) & 0x7fffffff) % partition_count``, so every event of
one order lands on one partition. The kernel (:mod:`pipelines.kernel`) dead-letters a
record found anywhere else as ``WrongPartition``.

:func:`murmur2` is Kafka's ``Utils.murmur2`` (MurmurHash2, seed ``0x9747b28c``), checked
against Kafka's own test vectors and librdkafka's partitioner in
``tests/unit/pipelines/test_partitioning.py``. In Python it costs about a quarter of a
whole event's kernel work (~15k CPU instructions), so :func:`partition_for` remembers the
hash of recently seen keys and an order pays for it about once, at its first event: the
answer never depends on the memo, only the cost does.
"""

from __future__ import annotations

import struct
from itertools import islice

__all__ = ["murmur2", "partition_for", "MEMO_KEYS"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
#: Little-endian 32-bit blocks, one Struct per block count of the usual key lengths (an orderId is ~11 bytes).
_BLOCKS = [struct.Struct(f"<{n}I") for n in range(64)]

#: How many keys' hashes :func:`partition_for` remembers (about 110 bytes each: ~14 MB), per process.
#: An order's events span days of the log; 2^17 keys kept one miss per order on a 400k-event workload.
MEMO_KEYS = 1 << 17

_memo: dict[bytes, int] = {}


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2(data)``: the 32-bit MurmurHash2 of ``data`` as a *signed* Java int."""
    n = len(data)
    h = _SEED ^ n
    blocks = n >> 2
    if blocks:
        # struct reads the blocks in C: a third of the cost of assembling them byte by byte.
        words = _BLOCKS[blocks].unpack_from(data) if blocks < len(_BLOCKS) else struct.unpack_from(f"<{blocks}I", data)
        for k in words:
            k = k * _M & _MASK
            # Only h's low 32 bits matter and xor works bit by bit, so one mask serves both products.
            h = (h * _M ^ (k ^ k >> 24) * _M) & _MASK
    end = blocks << 2
    if n != end:
        # The 1-3 tail bytes, little-endian: what the Java switch's fall-through xors in (data[end] lowest).
        h = (h ^ int.from_bytes(data[end:], "little")) * _M & _MASK
    h = (h ^ h >> 13) * _M & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partition_count: int) -> int:
    """The partition the Java client (and librdkafka's ``murmur2``/``murmur2_random``) puts ``key`` on,
    among ``partition_count`` (>= 1) partitions."""
    positive = _memo.get(key)
    if positive is None:
        positive = murmur2(key) & 0x7FFFFFFF
        if len(_memo) >= MEMO_KEYS:
            # Forget the older half (dicts keep insertion order): the keys of orders placed longest ago.
            for old in list(islice(_memo, len(_memo) // 2)):
                del _memo[old]
        _memo[key] = positive
    return positive % partition_count
