"""The pure parts of the local-broker script: config rendering, cluster ids, paths, and the safety checks that run before any JVM starts."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import socket
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scripts import kafka_local as kl

PROJECT_ROOT = Path(__file__).resolve().parents[3]


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


@pytest.fixture
def paths(tmp_path: Path) -> kl.LocalKafkaPaths:
    return kl.LocalKafkaPaths(run_dir=tmp_path / "run", lib_dir=tmp_path / "lib")


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
    monkeypatch.setattr(kl.uuid, "uuid4", lambda: next(draws))
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
    assert kl._bootstrap_from_properties(text) == "127.0.0.1:29092"
    assert kl._bootstrap_from_properties("# nothing here\n") is None


# ---------------------------------------------------------------- files shipped with the script


def test_kafka_version_matches_the_pom() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(PROJECT_ROOT / "scripts" / "kafka" / "pom.xml").getroot()
    assert root.findtext("m:properties/m:kafka.version", namespaces=ns) == kl.KAFKA_VERSION == "4.1.1"


def test_log4j2_template_logs_warnings_and_the_started_line_to_stderr() -> None:
    props = _props(kl.LOG4J2_TEMPLATE.read_text())
    assert props["rootLogger.level"] == "WARN"
    assert props["appender.err.target"] == "SYSTEM_ERR"
    assert props["logger.ready.name"] == "kafka.server.KafkaRaftServer"  # logs "Kafka Server started"
    assert props["logger.ready.level"] == "INFO"


# ---------------------------------------------------------------- paths


def test_default_paths_keep_data_in_the_project_and_jars_in_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    paths = kl.LocalKafkaPaths()
    assert paths.run_dir == PROJECT_ROOT / ".run" / "kafka"
    assert paths.lib_dir == Path.home().resolve() / ".cache" / "rewind" / "kafka-4.1.1" / "lib"
    assert paths.data_dir.parent == paths.server_properties.parent == paths.pid_file.parent == paths.run_dir
    assert paths.log_file.parent == paths.log4j2_properties.parent == paths.cluster_id_file.parent == paths.run_dir


def test_paths_are_absolute_and_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = kl.LocalKafkaPaths(run_dir=Path("rel/run"), lib_dir=Path("rel/lib"))
    assert paths.run_dir == tmp_path.resolve() / "rel" / "run"
    assert paths.lib_dir.is_absolute()
    with pytest.raises(dataclasses.FrozenInstanceError):
        paths.run_dir = tmp_path  # type: ignore[misc]


# ---------------------------------------------------------------- checks before any JVM starts


def test_status_of_a_fresh_run_dir_is_not_running(paths: kl.LocalKafkaPaths) -> None:
    assert kl.status(paths=paths) == {
        "running": False, "pid": None, "bootstrap": None, "log": str(paths.run_dir / "broker.log"),
    }
    assert kl.down(paths=paths) is False


def test_a_pid_file_naming_another_process_is_never_signalled(paths: kl.LocalKafkaPaths) -> None:
    """Scenario: the pid file names a live process that is not our broker (this test). We expect it untouched."""
    paths.run_dir.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n")
    assert kl.status(paths=paths)["running"] is False
    assert kl.down(paths=paths, timeout_s=0.1) is False  # we are still here, so nothing was killed
    assert not paths.pid_file.exists()  # the stale pid file is gone


def test_up_refuses_a_port_someone_else_listens_on(paths: kl.LocalKafkaPaths) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        with pytest.raises(kl.KafkaLocalError, match=f"port 127.0.0.1:{taken} is in use by another process"):
            kl.up(port=taken, controller_port=taken + 1 if taken < 65535 else taken - 1, paths=paths)
    assert not paths.pid_file.exists()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"heap": "lots"}, "invalid heap size"),
        ({"port": 9092, "controller_port": 9092}, "must differ"),
        ({"port": 0}, "invalid port 0"),
    ],
)
def test_up_rejects_bad_arguments_before_starting_anything(
    paths: kl.LocalKafkaPaths, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(kl.KafkaLocalError, match=message):
        kl.up(paths=paths, **kwargs)  # type: ignore[arg-type]
    assert not paths.pid_file.exists()


def test_fetch_jars_is_a_no_op_when_the_marker_matches_the_pom(
    paths: kl.LocalKafkaPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # mvn would not be found
    paths.lib_dir.mkdir(parents=True)
    paths.jars_marker.write_text(kl._pom_digest() + "\n")
    kl.fetch_jars(paths)  # returns without mvn


def test_fetch_jars_without_mvn_says_how_to_get_it(paths: kl.LocalKafkaPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    paths.lib_dir.mkdir(parents=True)
    paths.jars_marker.write_text("digest of some older pom\n")  # stale marker: a fetch is needed
    with pytest.raises(kl.KafkaLocalError, match="mvn not found on PATH"):
        kl.fetch_jars(paths)


def test_formatted_data_dir_is_never_reformatted(paths: kl.LocalKafkaPaths) -> None:
    """Scenario: data/meta.properties exists. We expect no StorageTool run, and its cluster id kept in cluster.id."""
    paths.data_dir.mkdir(parents=True)
    (paths.data_dir / "meta.properties").write_text("node.id=1\nversion=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAQ\n")
    paths.cluster_id_file.write_text("BBBBBBBBBBBBBBBBBBBBBB\n")
    kl._format_storage_once(paths, java="/nonexistent/java")  # would fail if it ran
    assert paths.cluster_id_file.read_text().strip() == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_error_tails_drop_colour_codes_and_blank_lines() -> None:
    text = "\x1b[0mfirst\n\n\x1b[1;31m[ERROR] second\x1b[m\n" + "".join(f"line {i}\n" for i in range(30))
    tail = kl._tail(text)
    assert "\x1b" not in tail
    assert tail.splitlines() == [f"line {i}" for i in range(10, 30)]
    assert kl._tail("\x1b[0mfirst\n\n[ERROR] second\n") == "first\n[ERROR] second"
