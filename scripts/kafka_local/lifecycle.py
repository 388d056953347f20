"""``up``, ``down`` and ``status`` of the local broker: the steps, in order, under the run dir's lock."""

from __future__ import annotations

from typing import Any

from scripts.kafka_local.config import _running_bootstrap, render_server_properties
from scripts.kafka_local.errors import KafkaLocalError
from scripts.kafka_local.jars import fetch_jars
from scripts.kafka_local.paths import KAFKA_VERSION, LOG4J2_TEMPLATE, LocalKafkaPaths
from scripts.kafka_local.process import _HEAP_RE, _our_pid, _start_broker
from scripts.kafka_local.readiness import _wait_ready
from scripts.kafka_local.storage import _format_storage_once
from scripts.local_service import (
    HOST,
    abandon_start,
    check_ports,
    find_java,
    is_alive,
    keep_out_of_git,
    locked,
    log_tail_block,
    require_free_ports,
    say,
    stop_ours,
    write_atomic,
)

_WHAT = "broker"


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
    check_ports(port, controller_port, pair="the broker and controller ports", error=KafkaLocalError)
    if not _HEAP_RE.match(heap):
        raise KafkaLocalError(f"invalid heap size {heap!r}: use a JVM size such as 512m or 1g")
    bootstrap = f"{HOST}:{port}"
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    keep_out_of_git(paths.run_dir)
    with locked(paths.lock_file):
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
                _wait_ready(bootstrap, timeout_s=timeout_s, alive=lambda: is_alive(running_pid))
            except KafkaLocalError as exc:
                raise KafkaLocalError(
                    f"the local broker (pid {pid}) is running but {exc}; "
                    f"run `rewind kafka down` and try again" + log_tail_block(paths.log_file, what=_WHAT)
                ) from exc
            return bootstrap
        paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours

        # Step 2
        require_free_ports(
            (port, controller_port), what=_WHAT, run_dir=paths.run_dir, advice="choose other ports",
            error=KafkaLocalError,
        )

        # Step 3
        fetch_jars(paths, console=console)
        java = find_java(error=KafkaLocalError)
        write_atomic(
            paths.server_properties,
            render_server_properties(port=port, controller_port=controller_port, data_dir=paths.data_dir),
        )
        write_atomic(paths.log4j2_properties, LOG4J2_TEMPLATE.read_text())

        # Step 4
        _format_storage_once(paths, java)

        # Step 5
        say(console, f"Starting Kafka {KAFKA_VERSION} at {bootstrap} (log: {paths.log_file}) ...")
        pid = _start_broker(paths, java, heap)

        # Step 6
        try:
            _wait_ready(bootstrap, timeout_s=timeout_s, alive=lambda: is_alive(pid))
        except KafkaLocalError as exc:
            abandon_start(pid, pid_file=paths.pid_file)
            raise KafkaLocalError(
                f"the local broker did not start: {exc}" + log_tail_block(paths.log_file, what=_WHAT)
            ) from exc
    return bootstrap


def down(*, paths: LocalKafkaPaths | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the broker we started: SIGTERM, wait, SIGKILL only after ``timeout_s``.

    Returns whether a broker of ours was running. The data dir is kept.
    """
    paths = paths or LocalKafkaPaths()
    return stop_ours(
        paths, find_pid=lambda: _our_pid(paths), timeout_s=timeout_s, what=_WHAT, error=KafkaLocalError
    )


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
