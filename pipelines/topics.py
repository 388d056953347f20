"""Topic names and topic administration: one place that derives every topic name Rewind uses."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.errors import BrokerUnreachableError, TopicError

__all__ = [
    "orders_partition_count",
    "ORDERS_TOPIC_CONFIG",
    "DLQ_TOPIC_CONFIG",
    "VIEW_TOPIC_CONFIG",
    "view_topic",
    "admin_client",
    "check_reachable",
    "ensure_topic",
]

#: Kafka rolls a segment once its first record's timestamp is older than segment.ms.
#: Records stamped with a days-old event time would roll a new segment on every append
#: (thousands of tiny files), so event-time topics get a roll age far beyond any history.
_EVENT_TIME_SEGMENT_MS = str(10 * 365 * 24 * 3600 * 1000)

#: The source of truth keeps everything: the simulated history is days old on
#: arrival, and a time-based retention would delete it at once. CreateTime = occurredAt
#: so offsets_for_times finds event-time positions.
ORDERS_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "segment.ms": _EVENT_TIME_SEGMENT_MS}
#: Poison events are kept for inspection and redrive, never expired.
DLQ_TOPIC_CONFIG = {"retention.ms": "-1", "segment.ms": _EVENT_TIME_SEGMENT_MS}
#: A view topic holds the latest row per key. Its records are stamped on append
#: (validFrom travels in the value), so compaction and segment rolling follow wall-clock
#: time; min.compaction.lag.ms keeps every version for an hour, long enough for a read
#: replica that is briefly behind to see all of them.
VIEW_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "retention.ms": "-1",
    "message.timestamp.type": "LogAppendTime",
    "min.compaction.lag.ms": str(3600 * 1000),
}


def view_topic(view_name: str, *, prefix: str = "") -> str:
    """The compacted topic that publishes ``view_name``'s rows: ``<prefix>view.<name>``.

    The prefix (setting REWIND_VIEW_TOPIC_PREFIX, empty by default) lets tests and
    side-by-side deployments keep their view topics apart.
    """
    return f"{prefix}view.{view_name}"


def admin_client(bootstrap: str) -> AdminClient:
    """An AdminClient for ``bootstrap`` that gives up quickly on an unreachable broker."""
    # log_level 0: an unreachable broker is reported once by check_reachable, not as librdkafka log spam.
    return AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 5000, "log_level": 0})


def check_reachable(bootstrap: str, *, timeout_s: float = 15.0) -> None:
    """Raise :class:`BrokerUnreachableError` unless a broker answers a metadata request within ``timeout_s``."""
    try:
        admin_client(bootstrap).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnreachableError(
            f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s "
            "(start one with `rewind kafka up` or set KAFKA_BOOTSTRAP_SERVERS)"
        ) from exc


def ensure_topic(
    bootstrap: str,
    name: str,
    *,
    partitions: int,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> bool:
    """Create topic ``name`` unless it exists; return True if it was created.

    An existing topic with a different partition count raises :class:`TopicError`
    because key -> partition placement (and so per-order ordering) depends on it.
    """
    check_reachable(bootstrap, timeout_s=timeout_s)
    admin = admin_client(bootstrap)
    existing = admin.list_topics(timeout=timeout_s).topics.get(name)
    if existing is not None and existing.error is None:
        if len(existing.partitions) != partitions:
            raise TopicError(f"topic {name} has {len(existing.partitions)} partitions, expected {partitions}")
        return False
    # replication_factor=-1: the broker default, so the same call suits one local node and a real cluster.
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=-1, config=config or {})],
        operation_timeout=timeout_s,
    )
    try:
        futures[name].result(timeout=timeout_s)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return False
        raise TopicError(f"could not create topic {name}: {exc}") from exc
    return True


def orders_partition_count(bootstrap: str, topic: str, *, timeout_s: float) -> int:
    """The orders topic's partition count; :class:`TopicError` (one line) when it does not exist."""
    # All topics, not list_topics(topic): asking for one topic by name makes a broker with
    # auto.create.topics.enable create it (a mistyped topic would become an empty one-partition topic).
    found = admin_client(bootstrap).list_topics(timeout=timeout_s).topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise TopicError(f"orders topic {topic!r} does not exist on {bootstrap} (REWIND_ORDERS_TOPIC / --orders-topic)")
    return len(found.partitions)
