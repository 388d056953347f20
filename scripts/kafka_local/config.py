"""The broker's server.properties (rendering and reading back) and KRaft cluster ids."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from scripts.kafka_local.paths import LocalKafkaPaths
from scripts.local_service import HOST

_INTERNAL_TOPIC_PARTITIONS = 4  # default 50: slow first use on a 2-core machine


def new_cluster_id() -> str:
    """A random KRaft cluster id: 22 chars of unpadded urlsafe base64.

    Same shape as Kafka's ``Uuid.randomUuid().toString()``; an id starting
    with '-' is drawn again because the command-line tools would read it as
    an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_server_properties(*, port: int, controller_port: int, data_dir: Path) -> str:
    """server.properties for one combined broker+controller node on 127.0.0.1."""
    settings: list[tuple[str, object, str]] = [
        ("process.roles", "broker,controller", "one JVM is both broker and KRaft controller"),
        ("node.id", 1, ""),
        ("controller.quorum.bootstrap.servers", f"{HOST}:{controller_port}",
         "dynamic quorum: storage is formatted with --standalone"),
        ("listeners", f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
         "loopback only: nothing outside this machine can reach it"),
        ("advertised.listeners", f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}", ""),
        ("inter.broker.listener.name", "PLAINTEXT", ""),
        ("controller.listener.names", "CONTROLLER", ""),
        ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT", ""),
        ("log.dirs", str(data_dir), ""),
        ("num.partitions", 1, "default for auto-created topics"),
        ("default.replication.factor", 1, ""),
        ("min.insync.replicas", 1, ""),
        ("auto.create.topics.enable", "true", ""),
        ("offsets.topic.replication.factor", 1, "default 3: no __consumer_offsets on one node"),
        ("offsets.topic.num.partitions", _INTERNAL_TOPIC_PARTITIONS, "default 50: slow first use on 2 cores"),
        ("transaction.state.log.replication.factor", 1, "default 3: no __transaction_state on one node"),
        ("transaction.state.log.min.isr", 1, "default 2: InitProducerId would fail on one node"),
        ("transaction.state.log.num.partitions", _INTERNAL_TOPIC_PARTITIONS, "default 50"),
        ("share.coordinator.state.topic.replication.factor", 1, "default 3"),
        ("share.coordinator.state.topic.min.isr", 1, "default 2"),
        ("share.coordinator.state.topic.num.partitions", _INTERNAL_TOPIC_PARTITIONS, "default 50"),
        ("group.initial.rebalance.delay.ms", 0, "default 3000: first consumer waits for nobody"),
        ("log.cleaner.dedupe.buffer.size", 32 * 1024 * 1024,
         "default 128 MiB of heap; compacted topics here are small"),
    ]
    lines = [
        "# Written by scripts/kafka_local/ on every `up`; edits are overwritten.",
        "# Single-node KRaft: every internal topic has replication factor 1 and",
        "# min.isr 1, so consumer groups and transactions work on one node.",
    ]
    for key, value, why in settings:
        if why:
            lines.append(f"# {why}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _parse_properties(text: str) -> dict[str, str]:
    """key=value lines; enough for the files this package writes."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = value.strip()
    return result


def _bootstrap_from_properties(text: str) -> str | None:
    """host:port of the PLAINTEXT listener in a rendered server.properties."""
    listeners = _parse_properties(text).get("advertised.listeners", "")
    for listener in listeners.split(","):
        name, sep, address = listener.strip().partition("://")
        if sep and name == "PLAINTEXT":
            return address
    return None


def _running_bootstrap(paths: LocalKafkaPaths) -> str | None:
    # server.properties is only rewritten while no broker of ours runs, so it
    # is the config the running broker was started with.
    try:
        return _bootstrap_from_properties(paths.server_properties.read_text())
    except OSError:
        return None
