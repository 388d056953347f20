"""The broker's config: cluster ids, the rendered server.properties, and the shipped log4j2 template."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import pytest

from scripts import kafka_local as kl
from scripts.kafka_local import config


def _props(text: str) -> dict[str, str]:
    """A minimal .properties reader, independent of the module under test; fails on duplicate keys."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        assert key.strip() not in result, f"duplicate key {key!r}"
        result[key.strip()] = value.strip()
    return result


# ---------------------------------------------------------------- cluster id


def test_cluster_id_is_22_chars_of_urlsafe_base64_of_16_bytes() -> None:
    for _ in range(500):
        cluster_id = kl.new_cluster_id()
        assert len(cluster_id) == 22
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_cluster_id_starting_with_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: the first random UUID encodes to '-...'. We expect a second draw to be used."""
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # top 6 bits 111110 = 62 = '-'
    other = uuid.UUID(bytes=b"\x00" * 15 + b"\x01")
    draws = iter([dash_first, other])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))  # config.new_cluster_id calls uuid.uuid4()
    assert base64.urlsafe_b64encode(dash_first.bytes).decode().startswith("-")
    assert kl.new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_cluster_ids_are_unique() -> None:
    assert len({kl.new_cluster_id() for _ in range(1000)}) == 1000


# ---------------------------------------------------------------- server.properties


def test_server_properties_listeners_use_the_given_ports_on_loopback(tmp_path: Path) -> None:
    props = _props(kl.render_server_properties(port=19092, controller_port=19093, data_dir=tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "data")
    # StorageTool rejects --standalone together with a static voter list.
    assert "controller.quorum.voters" not in props


def test_server_properties_make_transactions_and_groups_work_on_one_node(tmp_path: Path) -> None:
    props = _props(kl.render_server_properties(port=9092, controller_port=9093, data_dir=tmp_path))
    expected = {
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
    }
    assert {key: props.get(key) for key in expected} == expected
    # Retention stays at Kafka's defaults; topics that need more set it themselves.
    assert not any(key.startswith("log.retention") for key in props)


def test_bootstrap_is_read_back_from_rendered_properties(tmp_path: Path) -> None:
    text = kl.render_server_properties(port=29092, controller_port=29093, data_dir=tmp_path)
    assert config._bootstrap_from_properties(text) == "127.0.0.1:29092"
    assert config._bootstrap_from_properties("# nothing here\n") is None


# ---------------------------------------------------------------- log4j2 template shipped with the package


def test_log4j2_template_logs_warnings_and_the_started_line_to_stderr() -> None:
    props = _props(kl.LOG4J2_TEMPLATE.read_text())
    assert props["rootLogger.level"] == "WARN"
    assert props["appender.err.target"] == "SYSTEM_ERR"
    assert props["logger.ready.name"] == "kafka.server.KafkaRaftServer"  # logs "Kafka Server started"
    assert props["logger.ready.level"] == "INFO"
