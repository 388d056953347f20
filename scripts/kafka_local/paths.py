"""Where the local broker's files live, and the constants the other modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from scripts.local_service.paths import PROJECT_ROOT, SCRIPTS_DIR, ServicePaths, user_cache_dir

# Must match <kafka.version> in scripts/kafka/pom.xml (a unit test checks it);
# it names the jar cache so that two versions never share a classpath.
KAFKA_VERSION = "4.1.1"

POM_FILE = SCRIPTS_DIR / "kafka" / "pom.xml"
LOG4J2_TEMPLATE = SCRIPTS_DIR / "kafka" / "log4j2.properties"

__all__ = ["KAFKA_VERSION", "LOG4J2_TEMPLATE", "POM_FILE", "PROJECT_ROOT", "LocalKafkaPaths"]


def _default_run_dir() -> Path:
    return PROJECT_ROOT / ".run" / "kafka"


def _default_lib_dir() -> Path:
    return user_cache_dir(f"kafka-{KAFKA_VERSION}") / "lib"


@dataclass(frozen=True)
class LocalKafkaPaths(ServicePaths):
    """Where the local broker keeps its jars, data, config, log (broker.log) and pid (broker.pid).

    Both dirs are made absolute: they go into the java command line, which
    is how down() recognises the process as ours.
    """

    PID_NAME: ClassVar[str] = "broker.pid"
    LOG_NAME: ClassVar[str] = "broker.log"
    ABSOLUTE_FIELDS: ClassVar[tuple[str, ...]] = ("run_dir", "lib_dir")

    run_dir: Path = field(default_factory=_default_run_dir)
    lib_dir: Path = field(default_factory=_default_lib_dir)

    @property
    def data_dir(self) -> Path:
        """Kafka's log.dirs; formatted once, kept across down/up."""
        return self.run_dir / "data"

    @property
    def cluster_id_file(self) -> Path:
        return self.run_dir / "cluster.id"

    @property
    def server_properties(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def log4j2_properties(self) -> Path:
        return self.run_dir / "log4j2.properties"

    @property
    def jars_marker(self) -> Path:
        """Written last by fetch_jars; holds the pom's digest."""
        return self.lib_dir / ".complete"
