"""Where the local registry's files live, and the constants the other modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from scripts.local_service.paths import HOST, PROJECT_ROOT, ServicePaths, user_cache_dir

# 3.0.9 is the newest release that runs on Java 17 (3.3.x needs 21+).
REGISTRY_VERSION = "3.0.9"
DEFAULT_PORT = 18081
DEFAULT_MANAGEMENT_PORT = 19001
# The Confluent-compatible API under the HTTP port; clients (confluent-kafka's
# SchemaRegistryClient) take this as their "url".
CCOMPAT_PATH = "/apis/ccompat/v7"

__all__ = [
    "CCOMPAT_PATH", "DEFAULT_MANAGEMENT_PORT", "DEFAULT_PORT", "HOST", "PROJECT_ROOT", "REGISTRY_VERSION",
    "LocalRegistryPaths", "registry_url",
]


def registry_url(port: int) -> str:
    """The Confluent-compatible URL of a local registry on ``port``."""
    return f"http://{HOST}:{port}{CCOMPAT_PATH}"


def _default_run_dir() -> Path:
    return PROJECT_ROOT / ".run" / "registry"


def _default_dist_dir() -> Path:
    return user_cache_dir(f"apicurio-registry-{REGISTRY_VERSION}")


@dataclass(frozen=True)
class LocalRegistryPaths(ServicePaths):
    """Where the local registry keeps its distribution, database, log (registry.log) and pid (registry.pid).

    Both dirs are made absolute: they go into the java command line, which
    is how down() recognises the process as ours.
    """

    PID_NAME: ClassVar[str] = "registry.pid"
    LOG_NAME: ClassVar[str] = "registry.log"
    ABSOLUTE_FIELDS: ClassVar[tuple[str, ...]] = ("run_dir", "dist_dir")

    run_dir: Path = field(default_factory=_default_run_dir)
    dist_dir: Path = field(default_factory=_default_dist_dir)

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
