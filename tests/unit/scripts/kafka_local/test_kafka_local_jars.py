"""The Kafka jars: the version matches the pom, and fetch_jars needs mvn only when the pom changed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scripts import kafka_local as kl
from scripts.kafka_local import jars

PROJECT_ROOT = Path(__file__).resolve().parents[4]


def test_kafka_version_matches_the_pom() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(PROJECT_ROOT / "scripts" / "kafka" / "pom.xml").getroot()
    assert root.findtext("m:properties/m:kafka.version", namespaces=ns) == kl.KAFKA_VERSION == "4.1.1"


def test_fetch_jars_is_a_no_op_when_the_marker_matches_the_pom(
    paths: kl.LocalKafkaPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # mvn would not be found
    paths.lib_dir.mkdir(parents=True)
    paths.jars_marker.write_text(jars._pom_digest() + "\n")
    kl.fetch_jars(paths)  # returns without mvn


def test_fetch_jars_without_mvn_says_how_to_get_it(paths: kl.LocalKafkaPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    paths.lib_dir.mkdir(parents=True)
    paths.jars_marker.write_text("digest of some older pom\n")  # stale marker: a fetch is needed
    with pytest.raises(kl.KafkaLocalError, match="mvn not found on PATH"):
        kl.fetch_jars(paths)
