"""The broker JVM: its command line, its classpath, and whether a pid is our broker (the mechanics are in local_service.process)."""

from __future__ import annotations

import re

from scripts.kafka_local.paths import LocalKafkaPaths
from scripts.local_service import our_pid, start_detached

_BROKER_MAIN = "kafka.Kafka"
# Kafka's own G1 settings from bin/kafka-run-class.sh; OOM ends the JVM at
# once instead of leaving a half-dead broker that still holds the ports.
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
_HEAP_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def _classpath(paths: LocalKafkaPaths) -> str:
    # The JVM expands "dir/*" itself (to the jars only); no shell is involved.
    return str(paths.lib_dir / "*")


def _start_broker(paths: LocalKafkaPaths, java: str, heap: str) -> int:
    """Start the broker detached (see local_service.start_detached); return its pid, also in the pid file."""
    cmd = [
        java, f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={paths.log4j2_properties}",
        "-cp", _classpath(paths), _BROKER_MAIN, str(paths.server_properties),
    ]
    return start_detached(cmd, cwd=paths.run_dir, log_file=paths.log_file, pid_file=paths.pid_file)


def _our_pid(paths: LocalKafkaPaths) -> int | None:
    """The pid in the pid file if that process is alive and is our broker."""
    # Both checks: a reused pid, or another checkout's broker, is not ours.
    return our_pid(
        paths.pid_file, is_ours=lambda argv: _BROKER_MAIN in argv and str(paths.server_properties) in argv
    )
