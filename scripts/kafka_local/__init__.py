"""A local single-node Apache Kafka broker (KRaft), run from Maven Central jars.

Used by ``rewind kafka up|down|status`` and by the integration-test command
when no ``KAFKA_BOOTSTRAP_SERVERS`` is given. One JVM runs a combined
broker+controller node on 127.0.0.1, configured so that a single node can do
everything the project needs, Kafka transactions included (every internal
topic gets replication factor 1 and min.isr 1).

Files:

- jars: ``~/.cache/rewind/kafka-<version>/lib`` (outside git, shared by all
  checkouts), fetched once with ``mvn`` from ``scripts/kafka/pom.xml``;
- everything else under the run dir, ``<project root>/.run/kafka`` by default:
  ``data/`` (the Kafka log dir, formatted once and kept across restarts),
  ``cluster.id``, ``server.properties``, ``log4j2.properties``, ``broker.log``
  and ``broker.pid``.

Only a process this package started (pid file, and a command line naming
``kafka.Kafka`` with this run dir's ``server.properties``) is ever signalled.
"""

from __future__ import annotations

from scripts.kafka_local.config import new_cluster_id, render_server_properties
from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.jars import fetch_jars
from scripts.kafka_local.lifecycle import down, status, up
from scripts.kafka_local.paths import KAFKA_VERSION, LOG4J2_TEMPLATE, PROJECT_ROOT, LocalKafkaPaths
from scripts.kafka_local.readiness import wait_until_ready

__all__ = [
    "KAFKA_VERSION",
    "LOG4J2_TEMPLATE",
    "PROJECT_ROOT",
    "KafkaLocalError",
    "LocalKafkaPaths",
    "down",
    "fetch_jars",
    "new_cluster_id",
    "render_server_properties",
    "status",
    "up",
    "wait_until_ready",
]
