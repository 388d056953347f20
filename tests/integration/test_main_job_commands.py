"""The main job with the order service as its source, small, on the real broker."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from pipelines.settings import RewindSettings
from scripts.main_job import run_main_job


def test_a_small_main_job_through_the_order_service_agrees_with_the_oracle_and_the_event_store(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """Scenario: `rewind demo --source service` on 60 orders: the service and its relay as child processes, the commands sent, the
    pipelines run. We expect no failed check (views = oracle = event store, bad input refused and unwritten) and both children stopped."""
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    settings = RewindSettings(kafka_bootstrap_servers=kafka_bootstrap, commit_interval_s=0.5)
    failures = run_main_job(settings, orders=60, seed=7, console=console, source="service", workers=4, run_id=unique_name, run_root=tmp_path)
    text = out.getvalue()
    assert failures == [], text
    for needle in ("commands accepted by the order service", "published all", "wrote nothing", "lastSeq and status", "stopped on SIGTERM"):
        assert needle in text, text
