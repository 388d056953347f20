"""The registry JVM: its command line, whether a pid is our registry, and its port (the mechanics are in local_service.process)."""

from __future__ import annotations

import contextlib

from scripts.local_service import cmdline, our_pid, start_detached
from scripts.registry_local.paths import HOST, LocalRegistryPaths

# An argv element that names the run dir: how down() and status() know a
# process as the registry started from this run dir (and not a reused pid,
# nor another checkout's registry).
_RUN_DIR_PROP = "-Drewind.registry.run-dir="
_HTTP_PORT_PROP = "-Dquarkus.http.port="
# Small heap, serial GC and C1 only: it serves a handful of requests, and it
# must not compete with the broker and the benchmarks on a 2-core machine.
# OOM ends the JVM at once instead of leaving a half-dead registry on the port.
_JVM_FLAGS = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
)

def _registry_command(paths: LocalRegistryPaths, java: str, *, port: int, management_port: int) -> list[str]:
    return [
        java, *_JVM_FLAGS,
        f"{_RUN_DIR_PROP}{paths.run_dir}",
        f"-Dquarkus.http.host={HOST}", f"{_HTTP_PORT_PROP}{port}",
        # 3.0.9 is built without Quarkus' management interface (health is
        # served on the HTTP port) so this port stays closed; set anyway so
        # that a newer build never opens its default 0.0.0.0:9000.
        f"-Dquarkus.management.host={HOST}", f"-Dquarkus.management.port={management_port}",
        # File-backed H2 instead of the default in-memory one (see __init__).
        "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
        f"-Dapicurio.datasource.url={paths.jdbc_url}",
        # Vert.x caches files under java.io.tmpdir; keep them in the run dir.
        f"-Djava.io.tmpdir={paths.run_dir / 'tmp'}",
        "-jar", str(paths.runner_jar),
    ]


def _start_registry(paths: LocalRegistryPaths, java: str, *, port: int, management_port: int) -> int:
    """Start the registry detached (see local_service.start_detached); return its pid, also in the pid file."""
    cmd = _registry_command(paths, java, port=port, management_port=management_port)
    (paths.run_dir / "tmp").mkdir(exist_ok=True)
    paths.data_dir.mkdir(exist_ok=True)
    return start_detached(cmd, cwd=paths.run_dir, log_file=paths.log_file, pid_file=paths.pid_file)


def _our_pid(paths: LocalRegistryPaths) -> int | None:
    """The pid in the pid file if that process is alive and is the registry of this run dir."""
    return our_pid(paths.pid_file, is_ours=lambda argv: f"{_RUN_DIR_PROP}{paths.run_dir}" in argv)


def _running_port(pid: int) -> int | None:
    """The HTTP port a registry of ours was started with, read from its command line."""
    for arg in cmdline(pid):
        if arg.startswith(_HTTP_PORT_PROP):
            with contextlib.suppress(ValueError):
                return int(arg.removeprefix(_HTTP_PORT_PROP))
    return None
