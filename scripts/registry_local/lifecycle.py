"""``up``, ``down`` and ``status`` of the local registry: the steps, in order, under the run dir's lock."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from scripts.local_service import (
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
)
from scripts.registry_local.api import DEFAULT_COMPATIBILITY, TransitiveLevel, get_global_compatibility, set_global_compatibility
from scripts.registry_local.dist import fetch_registry
from scripts.registry_local.errors import RegistryLocalError
from scripts.registry_local.paths import DEFAULT_MANAGEMENT_PORT, DEFAULT_PORT, REGISTRY_VERSION, LocalRegistryPaths, registry_url
from scripts.registry_local.process import _our_pid, _running_port, _start_registry
from scripts.registry_local.readiness import _wait_ready

_WHAT = "registry"
_STATUS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RegistryStatus:
    """What ``status`` found. Every field but ``log`` and ``data_dir`` is None when the registry is stopped."""

    running: bool
    pid: int | None
    #: The Confluent-compatible URL clients use (REWIND_SCHEMA_REGISTRY_URL).
    url: str | None
    #: The global compatibility level; None also when the registry did not answer within 2 s.
    compatibility: str | None
    log: Path
    data_dir: Path


def up(
    *,
    port: int = DEFAULT_PORT,
    management_port: int = DEFAULT_MANAGEMENT_PORT,
    paths: LocalRegistryPaths | None = None,
    compatibility: TransitiveLevel = DEFAULT_COMPATIBILITY,
    timeout_s: float = 90.0,
    console: Any = None,
) -> str:
    """Start the local registry unless ours is already running; return its Confluent-compatible URL.

    Steps:
    1. If a registry we started is running, wait until it is ready, then go to step 5.
    2. Refuse an HTTP port that something else listens on.
    3. Fetch the distribution (cached).
    4. Start java detached (own session, so it outlives the caller), log to
       the run dir, write the pid file, wait until ``/health/ready`` says UP;
       ``timeout_s`` counts from the start of the JVM (or from step 1).
    5. Set the global compatibility level to ``compatibility`` (Apicurio's
       default is NONE) and read it back.
    On a failure in steps 4-5 of a registry started here, it is stopped and
    RegistryLocalError carries the last lines of its log.
    """
    paths = paths or LocalRegistryPaths()
    check_ports(port, management_port, pair="the registry's HTTP and management ports", error=RegistryLocalError)
    if compatibility not in get_args(TransitiveLevel):
        raise RegistryLocalError(f"invalid compatibility level {compatibility!r}: use one of {', '.join(get_args(TransitiveLevel))}")
    url = registry_url(port)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    keep_out_of_git(paths.run_dir)
    with locked(paths.lock_file):
        # Step 1
        pid = _our_pid(paths)
        if pid is not None:
            running_port = _running_port(pid)
            if running_port != port:
                raise RegistryLocalError(
                    f"the local registry is already running on port {running_port} (pid {pid}); "
                    f"run `rewind registry down` before starting it on port {port}"
                )
            running_pid = pid
            try:
                _wait_ready(port, timeout_s=timeout_s, alive=lambda: is_alive(running_pid))
                set_global_compatibility(port, compatibility)  # Step 5
            except RegistryLocalError as exc:
                raise RegistryLocalError(
                    f"the local registry (pid {pid}) is running but {exc}; "
                    f"run `rewind registry down` and try again" + log_tail_block(paths.log_file, what=_WHAT)
                ) from exc
            return url
        paths.pid_file.unlink(missing_ok=True)  # stale: process gone or not ours

        # Step 2. Only the HTTP port: Apicurio 3.0.9 never opens the management port.
        require_free_ports(
            (port,), what=_WHAT, run_dir=paths.run_dir, advice="choose another port (--port)", error=RegistryLocalError
        )

        # Step 3
        fetch_registry(paths, console=console)
        java = find_java(error=RegistryLocalError)

        # Step 4
        say(console, f"Starting Apicurio Registry {REGISTRY_VERSION} at {url} (log: {paths.log_file}) ...")
        pid = _start_registry(paths, java, port=port, management_port=management_port)
        try:
            _wait_ready(port, timeout_s=timeout_s, alive=lambda: is_alive(pid))
            set_global_compatibility(port, compatibility)  # Step 5
        except RegistryLocalError as exc:
            abandon_start(pid, pid_file=paths.pid_file)
            raise RegistryLocalError(f"the local registry did not start: {exc}" + log_tail_block(paths.log_file, what=_WHAT)) from exc
    return url


def down(*, paths: LocalRegistryPaths | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the registry we started: SIGTERM, wait, SIGKILL only after ``timeout_s``.

    Returns whether a registry of ours was running; calling it again is a
    no-op that returns False. The database (data dir) is kept.
    """
    paths = paths or LocalRegistryPaths()
    return stop_ours(
        paths, find_pid=lambda: _our_pid(paths), timeout_s=timeout_s, what=_WHAT, error=RegistryLocalError
    )


def status(*, paths: LocalRegistryPaths | None = None) -> RegistryStatus:
    """Whether the registry we started runs, its URL, and its global compatibility level.

    Looks at the pid file and the process, then asks the registry for its
    level (at most 2 s); a registry that does not answer is reported running
    with ``compatibility=None``.
    """
    paths = paths or LocalRegistryPaths()
    pid = _our_pid(paths)
    port = _running_port(pid) if pid is not None else None
    level: str | None = None
    if port is not None:
        with contextlib.suppress(RegistryLocalError):
            level = get_global_compatibility(port, timeout_s=_STATUS_TIMEOUT_S)
    return RegistryStatus(
        running=pid is not None,
        pid=pid,
        url=registry_url(port) if port is not None else None,
        compatibility=level,
        log=paths.log_file,
        data_dir=paths.data_dir,
    )
