"""Waiting until a broker answers metadata requests and its group coordinator is loaded."""

from __future__ import annotations

import time
from collections.abc import Callable

from scripts.kafka_local.errors import KafkaLocalError
from scripts.local_service import POLL_INTERVAL_S, poll_until_ready


def wait_until_ready(bootstrap: str, *, timeout_s: float) -> None:
    """Return once Kafka at ``bootstrap`` answers a metadata request.

    The port accepts connections before the broker serves requests, so this
    asks for metadata (list_topics) until it succeeds with at least one
    broker. Raises KafkaLocalError after ``timeout_s``.
    """
    _wait_ready(bootstrap, timeout_s=timeout_s, alive=None)


def _wait_ready(bootstrap: str, *, timeout_s: float, alive: Callable[[], bool] | None) -> None:
    # Imported here so that status/down and the unit tests need no librdkafka.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin = AdminClient({
        "bootstrap.servers": bootstrap,
        # Connection-refused errors are expected while the JVM starts; keep
        # librdkafka from printing them to stderr.
        "log_level": 0,
        # Retry the connection often so readiness is seen within ~0.5 s.
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
    })

    def answers_metadata(call_timeout_s: float) -> tuple[bool, str]:
        try:
            metadata = admin.list_topics(timeout=call_timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            return False, error.str() if hasattr(error, "str") else str(error)
        return (True, "") if metadata.brokers else (False, "metadata listed no brokers")

    # Short per-call timeout: a ready local broker answers in milliseconds.
    poll_until_ready(
        answers_metadata, deadline=deadline, timeout_s=timeout_s, call_timeout_s=0.5, alive=alive,
        what="broker", not_ready=f"Kafka at {bootstrap} did not answer", error=KafkaLocalError,
    )
    _wait_group_coordinator(bootstrap, deadline=deadline)


def _wait_group_coordinator(bootstrap: str, *, deadline: float) -> None:
    """Return once a consumer group's committed offsets can be read.

    A freshly formatted broker answers metadata before __consumer_offsets is
    created and loaded; until then every group call fails with NOT_COORDINATOR
    or COORDINATOR_LOAD_IN_PROGRESS. Asking once here means `up` returns a
    broker that pipelines (and their lag checks) can use at once.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rewind-readiness", "log_level": 0})
    try:
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            try:
                consumer.committed([TopicPartition("__rewind_readiness", 0)], timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                last_error = str(exc.args[0] if exc.args else exc)
            time.sleep(POLL_INTERVAL_S)
        raise KafkaLocalError(f"Kafka at {bootstrap} answers metadata but its group coordinator is not ready ({last_error})")
    finally:
        consumer.close()
