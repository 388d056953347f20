"""What every local service the project runs (Kafka broker, schema registry) does the same way.

``scripts.kafka_local`` and ``scripts.registry_local`` each keep only what is
theirs (the command line, config files, URLs, ports, readiness probe,
messages); this package holds the mechanics they share:

- ``paths``: the project root, ``127.0.0.1``, the user cache dir, and
  ``ServicePaths`` (an absolute run dir with its lock, pid and log files);
- ``files``: an advisory lock, atomic writes, a git-ignored run dir;
- ``process``: java, a detached start with a pid file and a log, liveness,
  a process's command line, whether the pid file names one of ours, and
  SIGTERM-then-SIGKILL with deadlines;
- ``ports``: port ranges and the bind test;
- ``readiness``: polling a probe until ready, a deadline, or the process exits;
- ``cache``: filling a cache dir once, under a lock, through a staging dir
  and a completion marker;
- ``lifecycle``: the ``down`` every service has;
- ``messages``: log tails, timestamps, console lines.

Errors are raised as the calling package's own exception class (passed in as
``error``), so that callers of ``kafka_local`` see ``KafkaLocalError`` and
callers of ``registry_local`` see ``RegistryLocalError``, as before.
"""

from __future__ import annotations

from scripts.local_service.cache import fill_cache_once
from scripts.local_service.files import keep_out_of_git, locked, write_atomic
from scripts.local_service.lifecycle import abandon_start, stop_ours
from scripts.local_service.messages import log_tail_block, now, say, tail
from scripts.local_service.paths import HOST, POLL_INTERVAL_S, PROJECT_ROOT, ServicePaths, user_cache_dir
from scripts.local_service.ports import check_ports, port_free, require_free_ports
from scripts.local_service.process import KILL_WAIT_S, cmdline, find_java, is_alive, our_pid, start_detached, stop_pid
from scripts.local_service.readiness import poll_until_ready

__all__ = [
    "HOST",
    "KILL_WAIT_S",
    "POLL_INTERVAL_S",
    "PROJECT_ROOT",
    "ServicePaths",
    "abandon_start",
    "check_ports",
    "cmdline",
    "fill_cache_once",
    "find_java",
    "is_alive",
    "keep_out_of_git",
    "locked",
    "log_tail_block",
    "now",
    "our_pid",
    "poll_until_ready",
    "port_free",
    "require_free_ports",
    "say",
    "start_detached",
    "stop_ours",
    "stop_pid",
    "tail",
    "user_cache_dir",
    "write_atomic",
]
