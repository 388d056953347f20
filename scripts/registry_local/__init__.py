"""A local Apicurio Registry 3.0.9 (Confluent-compatible schema registry), run from Maven Central's archive.

Used by ``rewind registry up|down|status``. One JVM (``-Xmx256m``, serial GC,
C1 only) serves HTTP on 127.0.0.1; clients use its Confluent-compatible API
at ``http://127.0.0.1:<port>/apis/ccompat/v7``. Every ``up`` sets the global
compatibility level explicitly (BACKWARD_TRANSITIVE by default; Apicurio's
own default is NONE).

Storage: Apicurio's SQL storage on an embedded H2 database, kept in a file
under the run dir rather than in memory (Apicurio's default). Confluent-framed
events carry the registry's schema id, and the Kafka log under ``.run/kafka``
outlives a broker restart; a registry that forgot its schemas on restart
would hand out ids again from 1, so an old event could name another schema.

Files:

- distribution: ``~/.cache/rewind/apicurio-registry-<version>/`` (outside
  git, shared by all checkouts): the ``-runner.jar`` and its ``lib/``,
  downloaded once and checked against a pinned SHA-256 (see ``dist``);
- everything else under the run dir, ``<project root>/.run/registry`` by
  default: ``data/`` (the H2 database, kept across down/up; delete it to
  start empty), ``registry.log`` (the previous one as ``registry.log.1``),
  ``registry.pid`` and ``tmp/``.

Only a process this package started (pid file, and a command line naming
this run dir) is ever signalled.
"""

from __future__ import annotations

from scripts.registry_local.api import DEFAULT_COMPATIBILITY, TransitiveLevel, get_global_compatibility, set_global_compatibility
from scripts.registry_local.dist import ARCHIVE_SHA256, ARCHIVE_URL, fetch_registry
from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.lifecycle import RegistryStatus, down, status, up
from scripts.registry_local.paths import (
    CCOMPAT_PATH,
    DEFAULT_MANAGEMENT_PORT,
    DEFAULT_PORT,
    PROJECT_ROOT,
    REGISTRY_VERSION,
    LocalRegistryPaths,
    registry_url,
)
from scripts.registry_local.readiness import wait_until_ready

__all__ = [
    "ARCHIVE_SHA256",
    "ARCHIVE_URL",
    "CCOMPAT_PATH",
    "DEFAULT_COMPATIBILITY",
    "DEFAULT_MANAGEMENT_PORT",
    "DEFAULT_PORT",
    "PROJECT_ROOT",
    "REGISTRY_VERSION",
    "LocalRegistryPaths",
    "RegistryLocalError",
    "RegistryStatus",
    "TransitiveLevel",
    "down",
    "fetch_registry",
    "get_global_compatibility",
    "registry_url",
    "set_global_compatibility",
    "status",
    "up",
    "wait_until_ready",
]
