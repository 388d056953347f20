"""The errors of ``pipelines/``: the broker, topics and view names. All derive from :class:`~schemas.errors.RewindError`."""

from __future__ import annotations

from schemas.errors import RewindError

__all__ = [
    "BrokerUnreachableError",
    "InstanceFencedError",
    "PipelineStateError",
    "TopicError",
    "UnknownViewError",
]


class BrokerUnreachableError(RewindError):
    """No Kafka broker answered at the bootstrap address within the deadline.

    Start one with `rewind kafka up`, or point KAFKA_BOOTSTRAP_SERVERS at a running cluster.
    """


class TopicError(RewindError):
    """A topic could not be created or has the wrong shape (e.g. partition count differs from the one asked for)."""


class UnknownViewError(RewindError):
    """The view name is not a known projection; the message lists the known ones."""


class PipelineStateError(RewindError):
    """A pipeline's state store cannot be opened or does not belong to the group's committed offsets."""


class InstanceFencedError(RewindError):
    """Another process took over this pipeline instance's identity (transactional id / static member id)."""
