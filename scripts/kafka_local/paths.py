"""Where the local broker's files live, and the constants the other modules share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Must match <kafka.version> in scripts/kafka/pom.xml (a unit test checks it);
# it names the jar cache so that two versions never share a classpath.
KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"

# scripts/ is the parent of this package, and the repo root is its parent.
_SCRIPTS_DIR = Path(__file__).resolve().parent.parent
PROJECT_ROOT = _SCRIPTS_DIR.parent
POM_FILE = _SCRIPTS_DIR / "kafka" / "pom.xml"
LOG4J2_TEMPLATE = _SCRIPTS_DIR / "kafka" / "log4j2.properties"

# How often to look again while waiting: for a process to exit, for Kafka to answer.
_POLL_INTERVAL_S = 0.1


def _default_run_dir() -> Path:
    return PROJECT_ROOT / ".run" / "kafka"


def _default_lib_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "rewind" / f"kafka-{KAFKA_VERSION}" / "lib"


@dataclass(frozen=True)
class LocalKafkaPaths:
    """Where the local broker keeps its jars, data, config, log and pid."""

    run_dir: Path = field(default_factory=_default_run_dir)
    lib_dir: Path = field(default_factory=_default_lib_dir)

    def __post_init__(self) -> None:
        # Absolute paths: they go into the java command line, which is how
        # down() recognises the process as ours.
        object.__setattr__(self, "run_dir", Path(self.run_dir).expanduser().resolve())
        object.__setattr__(self, "lib_dir", Path(self.lib_dir).expanduser().resolve())

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
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / ".lock"

    @property
    def jars_marker(self) -> Path:
        """Written last by fetch_jars; holds the pom's digest."""
        return self.lib_dir / ".complete"
