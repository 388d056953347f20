"""The KRaft data dir is formatted once; its cluster id wins over cluster.id."""

from __future__ import annotations

from scripts import kafka_local as kl
from scripts.kafka_local import storage


def test_formatted_data_dir_is_never_reformatted(paths: kl.LocalKafkaPaths) -> None:
    """Scenario: data/meta.properties exists. We expect no StorageTool run, and its cluster id kept in cluster.id."""
    paths.data_dir.mkdir(parents=True)
    (paths.data_dir / "meta.properties").write_text("node.id=1\nversion=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAQ\n")
    paths.cluster_id_file.write_text("BBBBBBBBBBBBBBBBBBBBBB\n")
    storage._format_storage_once(paths, java="/nonexistent/java")  # would fail if it ran
    assert paths.cluster_id_file.read_text().strip() == "AAAAAAAAAAAAAAAAAAAAAQ"
