"""The registry JVM as a process: java, start, stop, liveness, whether a pid is ours, and its ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

from scripts.kafka_local.files import _write_atomic
from scripts.kafka_local.messages import _now
from scripts.kafka_local.process import _cmdline
from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.paths import _POLL_INTERVAL_S, HOST, LocalRegistryPaths

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
_KILL_WAIT_S = 10.0

# Popen objects of registries started by this process, so that _is_alive()
# can reap one that exited (a zombie still answers os.kill(pid, 0)).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RegistryLocalError(
            "java not found: install a JDK/JRE 17+ (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    return java


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
    cmd = _registry_command(paths, java, port=port, management_port=management_port)
    (paths.run_dir / "tmp").mkdir(exist_ok=True)
    paths.data_dir.mkdir(exist_ok=True)
    # Keep the previous run's log for post-mortems; the tail shown on failure
    # is then this run's only.
    if paths.log_file.exists():
        paths.log_file.replace(paths.log_file.with_name(paths.log_file.name + ".1"))
    with open(paths.log_file, "wb") as log:
        log.write(f"# {_now()} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=paths.run_dir,
            # Own session: no SIGHUP/SIGINT from the caller's terminal, and the
            # registry lives on after the CLI process exits.
            start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    # Outliving the caller is the point; don't let Popen.__del__ warn about it.
    warnings.filterwarnings("ignore", message=f"subprocess {proc.pid} is still running", category=ResourceWarning)
    _write_atomic(paths.pid_file, f"{proc.pid}\n")
    return proc.pid


def _stop_pid(pid: int, *, timeout_s: float) -> bool:
    """SIGTERM (Quarkus shuts down and closes the database), then SIGKILL after timeout_s; True once gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_exit(pid, _KILL_WAIT_S):
            return False
    _STARTED.pop(pid, None)
    return True


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL_S)
    return True


def _is_alive(pid: int) -> bool:
    # A registry started by this very process turns into a zombie when it
    # exits, which os.kill(pid, 0) still reports as alive: reap it first.
    proc = _STARTED.get(pid)
    if proc is not None and proc.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _our_pid(paths: LocalRegistryPaths) -> int | None:
    """The pid in the pid file if that process is alive and is the registry of this run dir."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _is_alive(pid):
        return None
    argv = _cmdline(pid)
    if f"{_RUN_DIR_PROP}{paths.run_dir}" in argv:
        return pid
    return None


def _running_port(pid: int) -> int | None:
    """The HTTP port a registry of ours was started with, read from its command line."""
    for arg in _cmdline(pid):
        if arg.startswith(_HTTP_PORT_PROP):
            with contextlib.suppress(ValueError):
                return int(arg.removeprefix(_HTTP_PORT_PROP))
    return None
