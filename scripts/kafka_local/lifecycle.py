"""``up``, ``down`` and ``status`` of the local broker: the steps, in order, under the run dir's lock."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scripts.kafka_local.config import _running_bootstrap, render_server_properties
from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.files import _keep_out_of_git, _locked, _write_atomic
from scripts.kafka_local.jars import fetch_jars
from scripts.kafka_local.messages import _log_tail_block, _now, _say
from scripts.kafka_local.paths import HOST, KAFKA_VERSION, LOG4J2_TEMPLATE, LocalKafkaPaths
from scripts.kafka_local.ports import _check_ports, _port_free
from scripts.kafka_local.process import _HEAP_RE, _KILL_WAIT_S, _find_java, _is_alive, _our_pid, _start_broker, _stop_pid
from scripts.kafka_local.readiness import _wait_ready
from scripts.kafka_local.storage import _format_storage_once


def up(
    *,
    port: int = 9092,
    controller_port: int = 9093,
    paths: LocalKafkaPaths | None = None,
    heap: str = "512m",
    timeout_s: float = 90.0,
    console: Any = None,
) -> str:
    """Start the local broker unless ours is already running; return its bootstrap.

    Steps:
    1. If a broker we started is running, wait until it answers and return.
    2. Refuse ports that something else listens on.
    3. Fetch the jars (cached), write server.properties and log4j2.properties.
    4. Format the data dir once, keeping its cluster id.
    5. Start java detached (own session, so it outlives the caller), log to
       the run dir, write the pid file.
    6. Wait until it answers a metadata request; ``timeout_s`` counts from the
       start of the JVM (or from step 1). On failure the broker is stopped and
       KafkaLocalError carries the last lines of its log.
    """
    paths = paths or LocalKafkaPaths()
    _check_ports(port, controller_port)
    if not _HEAP_RE.match(heap):
        raise KafkaLocalError(f"invalid heap size {heap!r}: use a JVM size such as 512m or 1g")
    bootstrap = f"{HOST}:{port}"
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    _keep_out_of_git(paths.run_dir)
    with _locked(paths.lock_file):
        # Step 1
        pid = _our_pid(paths)
        if pid is not None:
            running_at = _running_bootstrap(paths)
            if running_at != bootstrap:
                raise KafkaLocalError(
                    f"the local broker is already running at {running_at} (pid {pid}); "
                    f"run `rewind kafka down` before starting it at {bootstrap}"
                )
            running_pid = pid
            try:
                _wait_ready(bootstrap, timeout_s=timeout_s, alive=lambda: _is_alive(running_pid))
            except KafkaLocalError as exc:
                raise KafkaLocalError(
                    f"the local broker (pid {pid}) is running but {exc}; "
                    f"run `rewind kafka down` and try again" + _log_tail_block(paths)
                ) from exc
            return bootstrap
        paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours

        # Step 2
        for p in (port, controller_port):
            if not _port_free(p):
                raise KafkaLocalError(
                    f"port {HOST}:{p} is in use by another process, not by a broker started "
                    f"from {paths.run_dir}; stop that process or choose other ports"
                )

        # Step 3
        fetch_jars(paths, console=console)
        java = _find_java()
        _write_atomic(
            paths.server_properties,
            render_server_properties(port=port, controller_port=controller_port, data_dir=paths.data_dir),
        )
        _write_atomic(paths.log4j2_properties, LOG4J2_TEMPLATE.read_text())

        # Step 4
        _format_storage_once(paths, java)

        # Step 5
        _say(console, f"Starting Kafka {KAFKA_VERSION} at {bootstrap} (log: {paths.log_file}) ...")
        pid = _start_broker(paths, java, heap)

        # Step 6
        try:
            _wait_ready(bootstrap, timeout_s=timeout_s, alive=lambda: _is_alive(pid))
        except KafkaLocalError as exc:
            stopped = _stop_pid(pid, timeout_s=_KILL_WAIT_S)
            if stopped:
                paths.pid_file.unlink(missing_ok=True)
            raise KafkaLocalError(
                f"the local broker did not start: {exc}" + _log_tail_block(paths)
            ) from exc
    return bootstrap


def down(*, paths: LocalKafkaPaths | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the broker we started: SIGTERM, wait, SIGKILL only after ``timeout_s``.

    Returns whether a broker of ours was running. The data dir is kept.
    """
    paths = paths or LocalKafkaPaths()
    if not paths.run_dir.is_dir():
        return False
    with _locked(paths.lock_file):
        pid = _our_pid(paths)
        if pid is None:
            paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours
            return False
        started_s = time.monotonic()
        if not _stop_pid(pid, timeout_s=timeout_s):
            raise KafkaLocalError(f"the local broker (pid {pid}) did not exit even after SIGKILL")
        paths.pid_file.unlink(missing_ok=True)
        # Kafka logs nothing at INFO when it stops; say so for whoever reads the log.
        with contextlib.suppress(OSError), open(paths.log_file, "a") as log:
            log.write(f"# {_now()} stopped by down() in {time.monotonic() - started_s:.1f} s\n")
        return True


def status(*, paths: LocalKafkaPaths | None = None) -> dict[str, Any]:
    """``{"running", "pid", "bootstrap", "log"}`` of the broker we started.

    Cheap: looks at the pid file and the process only, does not contact Kafka.
    """
    paths = paths or LocalKafkaPaths()
    pid = _our_pid(paths)
    return {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": _running_bootstrap(paths) if pid is not None else None,
        "log": str(paths.log_file),
    }
