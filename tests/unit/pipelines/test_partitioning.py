"""The placement rule: Kafka's murmur2 partitioner, against Kafka's own test vectors and against librdkafka."""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import confluent_kafka
import pytest

from pipelines import partitioning
from pipelines.partitioning import murmur2, partition_for

# Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2), and the values
# Akka's Murmur2Spec took from Kafka's Utils.murmur2 for keys of every tail length.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize("key,expected", sorted(JAVA_MURMUR2.items()))
def test_murmur2_is_kafkas(key: bytes, expected: int) -> None:
    """Scenario: Kafka's own murmur2 test vectors. We expect the same signed 32-bit values."""
    assert murmur2(key) == expected


def test_partition_for_is_to_positive_mod_count() -> None:
    """Scenario: keys whose hash is negative and positive. We expect (hash & 0x7fffffff) % count, Kafka's toPositive."""
    assert partition_for(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert partition_for(b"abc", 12) == 479470107 % 12
    assert partition_for(b"anything", 1) == 0


def _librdkafka_murmur2() -> object:
    libs = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
    if not libs:
        pytest.skip("no bundled librdkafka (a confluent-kafka built against a system one)")
    fn = ctypes.CDLL(str(libs[0])).rd_kafka_msg_partitioner_murmur2
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p]
    return fn


def test_partition_for_agrees_with_librdkafka_on_random_keys() -> None:
    """Scenario: 5,000 random keys of 1-400 bytes and partition counts 1-200, placed by librdkafka's murmur2 partitioner
    (the one the workload producer and Quix use; it reads neither the topic handle nor the opaques, so none are passed).
    We expect the same partition every time."""
    placed = _librdkafka_murmur2()
    rng = random.Random(12)
    for _ in range(5000):
        key, count = rng.randbytes(rng.choice((rng.randrange(1, 41), rng.randrange(41, 400)))), rng.randrange(1, 201)
        assert partition_for(key, count) == placed(None, key, len(key), count, None, None), (key, count)  # type: ignore[operator]  # a ctypes function


def test_the_memo_changes_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: a memo of 8 keys, filled and cleared many times over by 100 keys asked for twice.
    We expect every answer equal to murmur2's, and the memo never above its bound."""
    monkeypatch.setattr(partitioning, "MEMO_KEYS", 8)
    monkeypatch.setattr(partitioning, "_memo", {})
    keys = [f"ord-{n:07d}".encode() for n in range(100)]
    for key in keys + keys:
        assert partition_for(key, 12) == (murmur2(key) & 0x7FFFFFFF) % 12
        assert len(partitioning._memo) <= 8
