"""The KRaft data dir: formatted once with Kafka's StorageTool, its cluster id kept in cluster.id."""

from __future__ import annotations

import re
import subprocess

from scripts.kafka_local.config import _parse_properties, new_cluster_id
from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.paths import LocalKafkaPaths
from scripts.kafka_local.process import _classpath
from scripts.local_service import tail, write_atomic

_STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
_FORMAT_TIMEOUT_S = 120.0
_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{21}$")


def _format_storage_once(paths: LocalKafkaPaths, java: str) -> None:
    """Format the data dir unless it already is; the cluster id stays with it.

    Reformatting with another cluster id would make the broker refuse its own
    data, so an existing meta.properties is never touched.
    """
    meta = paths.data_dir / "meta.properties"
    if meta.is_file():
        cluster_id = _parse_properties(meta.read_text()).get("cluster.id")
        if cluster_id and _read_cluster_id(paths) != cluster_id:
            write_atomic(paths.cluster_id_file, cluster_id + "\n")
        return
    cluster_id = _read_cluster_id(paths) or new_cluster_id()
    write_atomic(paths.cluster_id_file, cluster_id + "\n")
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        java, f"-Dlog4j2.configurationFile={paths.log4j2_properties}",
        "-cp", _classpath(paths), _STORAGE_TOOL_MAIN,
        "format", "-t", cluster_id, "-c", str(paths.server_properties), "--standalone",
    ]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=_FORMAT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaLocalError(f"formatting {paths.data_dir} took over {_FORMAT_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise KafkaLocalError(
            f"could not format the Kafka data dir {paths.data_dir} (exit {proc.returncode}):\n"
            + tail(proc.stdout)
        )


def _read_cluster_id(paths: LocalKafkaPaths) -> str | None:
    try:
        cluster_id = paths.cluster_id_file.read_text().strip()
    except OSError:
        return None
    return cluster_id if _CLUSTER_ID_RE.match(cluster_id) else None
