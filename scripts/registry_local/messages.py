"""The registry log's last lines, for the message of a failed start."""

from __future__ import annotations

from scripts.kafka_local.messages import _tail
from scripts.registry_local.paths import LocalRegistryPaths


def _log_tail_block(paths: LocalRegistryPaths) -> str:
    try:
        text = paths.log_file.read_text(errors="replace")
    except OSError:
        return f"\n(no registry log at {paths.log_file})"
    return f"\n--- last lines of {paths.log_file} ---\n{_tail(text)}"
