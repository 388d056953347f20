"""The broker JVM as a process: java, classpath, start, stop, liveness, and whether a pid is ours."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.files import _write_atomic
from scripts.kafka_local.messages import _now
from scripts.kafka_local.paths import _POLL_INTERVAL_S, LocalKafkaPaths

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
_KILL_WAIT_S = 10.0
_HEAP_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")

# Popen objects of brokers started by this process, so that _is_alive() can
# reap one that exited (a zombie still answers os.kill(pid, 0)).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaLocalError(
            "java not found: install a JDK/JRE 17+ (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )
    return java


def _classpath(paths: LocalKafkaPaths) -> str:
    # The JVM expands "dir/*" itself (to the jars only); no shell is involved.
    return str(paths.lib_dir / "*")


def _start_broker(paths: LocalKafkaPaths, java: str, heap: str) -> int:
    cmd = [
        java, f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={paths.log4j2_properties}",
        "-cp", _classpath(paths), _BROKER_MAIN, str(paths.server_properties),
    ]
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
            # broker lives on after the CLI process exits.
            start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    # Outliving the caller is the point; don't let Popen.__del__ warn about it.
    warnings.filterwarnings(
        "ignore", message=f"subprocess {proc.pid} is still running", category=ResourceWarning
    )
    _write_atomic(paths.pid_file, f"{proc.pid}\n")
    return proc.pid


def _stop_pid(pid: int, *, timeout_s: float) -> bool:
    """SIGTERM (Kafka shuts down cleanly), then SIGKILL after timeout_s; True once gone."""
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
    # A broker started by this very process turns into a zombie when it
    # exits, which os.kill(pid, 0) still reports as alive: reap it first,
    # through its Popen so that Popen knows it has exited.
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


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    # No /proc (macOS): ps prints the command line space-joined.
    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return []
    return out.split()


def _our_pid(paths: LocalKafkaPaths) -> int | None:
    """The pid in the pid file if that process is alive and is our broker."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _is_alive(pid):
        return None
    argv = _cmdline(pid)
    # Both checks: a reused pid, or another checkout's broker, is not ours.
    if _BROKER_MAIN in argv and str(paths.server_properties) in argv:
        return pid
    return None
