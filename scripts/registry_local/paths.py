"""Where the local registry's files live, and the constants the other modules share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from scripts.kafka_local.paths import PROJECT_ROOT

# 3.0.9 is the newest release that runs on Java 17 (3.3.x needs 21+).
REGISTRY_VERSION = "3.0.9"
HOST = "127.0.0.1"
DEFAULT_PORT = 18081
DEFAULT_MANAGEMENT_PORT = 19001
# The Confluent-compatible API under the HTTP port; clients (confluent-kafka's
# SchemaRegistryClient) take this as their "url".
CCOMPAT_PATH = "/apis/ccompat/v7"

# How often to look again while waiting: for a process to exit, for the registry to answer.
_POLL_INTERVAL_S = 0.1


def registry_url(port: int) -> str:
    """The Confluent-compatible URL of a local registry on ``port``."""
    return f"http://{HOST}:{port}{CCOMPAT_PATH}"


def _default_run_dir() -> Path:
    return PROJECT_ROOT / ".run" / "registry"


def _default_dist_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "rewind" / f"apicurio-registry-{REGISTRY_VERSION}"


@dataclass(frozen=True)
class LocalRegistryPaths:
    """Where the local registry keeps its distribution, database, log and pid."""

    run_dir: Path = field(default_factory=_default_run_dir)
    dist_dir: Path = field(default_factory=_default_dist_dir)

    def __post_init__(self) -> None:
        # Absolute paths: they go into the java command line, which is how
        # down() recognises the process as ours.
        object.__setattr__(self, "run_dir", Path(self.run_dir).expanduser().resolve())
        object.__setattr__(self, "dist_dir", Path(self.dist_dir).expanduser().resolve())

    @property
    def runner_jar(self) -> Path:
        """The Quarkus runner; its lib/ sits next to it."""
        return self.dist_dir / f"apicurio-registry-app-{REGISTRY_VERSION}-runner.jar"

    @property
    def dist_marker(self) -> Path:
        """Written last by fetch_registry; holds the archive's SHA-256."""
        return self.dist_dir / ".complete"

    @property
    def data_dir(self) -> Path:
        """The H2 database files; kept across down/up."""
        return self.run_dir / "data"

    @property
    def jdbc_url(self) -> str:
        # WRITE_DELAY=0: a registered schema is on disk when the request
        # returns (H2's default writes up to 1 s later), so even a SIGKILL
        # after `up` cannot lose an id that a producer has already used.
        return f"jdbc:h2:file:{self.data_dir / 'registry'};WRITE_DELAY=0"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "registry.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "registry.pid"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / ".lock"
