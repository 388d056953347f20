"""A broker outage longer than the one that used to kill `rewind run` (~65 s): pipelines and the replica ride it out.

The broker is a private one (tests.integration.private_broker): the session broker is shared and never stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.readback import data_end_offsets
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_customers, expected_order_status, mismatched_keys
from state.rocks_store import open_store
from tests.integration.private_broker import PrivateBroker, private_broker
from tests.integration.support import LIVE_ENGINES, PipelineProcess, committed_total, for_engine, group_caught_up, isolated_settings, latest_rows, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ("order-status", "customer-summary")
OUTAGE_S = 72.0  # longer than the ~65 s after which a pipeline used to exit with a traceback (a 60 s transaction timeout)
REPORT_S = 10.0  # --outage-report-s of the pipelines


class ServeProcess:
    """`rewind serve` as a child process, its output in a file."""

    def __init__(self, settings: RewindSettings, replica_dir: Path, log_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.replica_dir, self.log_path = replica_dir, log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.cli", "serve", "--port", str(self.port), "--view-topic-prefix", settings.view_topic_prefix,
                 "--replica-dir", str(replica_dir), "--kafka-bootstrap-servers", settings.bootstrap()],
                cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
            )

    def health(self) -> dict[str, Any] | None:
        """The /healthz body with its status code under "code" (None while it does not answer)."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
        except httpx.HTTPError:
            return None
        return {**response.json(), "code": response.status_code}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with private_broker(tmp_path / "kafka") as broker:
        yield broker


def test_pipelines_and_replica_ride_out_a_72_s_outage(broker: PrivateBroker, unique_name: str, tmp_path: Path) -> None:
    """Scenario: order-status and customer-summary on both live engines, and `rewind serve`, run while the broker is killed (SIGKILL) mid-way
    through the log and kept down for 72 s, then restarted; the rest of the log is produced after it returns.
    We expect every process alive throughout, one "unreachable" line per report interval (no log storm), /healthz
    degraded with the reason during the outage and ok after, and the views and the replica equal to the oracle
    (nothing lost, nothing counted twice)."""
    settings = isolated_settings(broker.bootstrap, unique_name, tmp_path, commit_interval_s=1.0)
    workload = generate(WorkloadConfig(seed=41, orders=6000, days=7, poison_rate=0.01))
    write_oracle(workload, tmp_path / "oracle.sqlite", topic=settings.orders_topic)
    with Oracle.open(tmp_path / "oracle.sqlite") as oracle:
        expected = {"order-status": expected_order_status(oracle), "customer-summary": expected_customers(oracle)}
    first_part = int(len(workload.records) * 0.7)
    produce_workload(settings, workload.records[:first_part], progress=False)

    # Both engines in one outage (each with its own view topics and DLQ): one 72 s outage tests both.
    runs = [(engine, view) for engine in LIVE_ENGINES for view in VIEWS]
    engine_settings = {engine: for_engine(settings, engine) for engine in LIVE_ENGINES}
    groups = {run: f"{settings.orders_topic}-{run[0]}-{run[1]}" for run in runs}
    pipelines = {run: PipelineProcess.start(engine_settings[run[0]], run[1], group=groups[run], state_dir=tmp_path / run[0] / run[1],
                                            log_dir=tmp_path / "logs", extra_args=("--outage-report-s", str(REPORT_S))) for run in runs}
    served = engine_settings[LIVE_ENGINES[-1]]  # the replica follows one engine's view topics
    serve = ServeProcess(served, tmp_path / "replica", tmp_path / "serve.log")
    try:
        # Mid-way: every pipeline has committed part of the log, and the replica answers.
        for run in runs:
            def started(run: tuple[str, str] = run) -> bool:
                assert pipelines[run].alive(), pipelines[run].output_tail()
                return committed_total(broker.bootstrap, groups[run], settings.orders_topic) > first_part // 10

            wait_until(started, timeout_s=240, what=f"{run} to commit part of the log", interval_s=0.5)
        wait_until(lambda: (serve.health() or {}).get("status") == "ok", timeout_s=60, what="rewind serve to answer ok")

        # The outage.
        lines_before = {run: len(_lines(p.log_path)) for run, p in pipelines.items()}
        serve_lines_before = len(serve.log().splitlines())
        broker.stop(hard=True)
        killed = time.monotonic()

        def degraded() -> dict[str, Any] | None:
            health = serve.health()
            return health if health is not None and health["status"] == "degraded" else None

        health = wait_until(degraded, timeout_s=OUTAGE_S / 2, what="/healthz to say degraded", interval_s=1)
        assert health["code"] == 200 and f"broker {broker.bootstrap} unreachable for" in health["reason"], health
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))  # holding the broker down, not synchronising
        for run, process in pipelines.items():
            assert process.alive(), f"{run} exited during the outage:\n{process.output_tail()}"
        assert serve.alive(), serve.log()[-3000:]
        health = serve.health()
        assert health is not None and health["status"] == "degraded" and health["replica"]["broker_unreachable_s"] >= OUTAGE_S / 2, health

        # Once per interval, not a storm: the lines the pipelines and the replica wrote while the broker was down.
        down_s = time.monotonic() - killed
        for run, process in pipelines.items():
            during = _lines(process.log_path)[lines_before[run]:]
            reports = [line for line in during if "unreachable for" in line]
            assert 1 <= len(reports) <= down_s / REPORT_S + 2, "\n".join(during)
            assert "Traceback" not in "\n".join(during)
            assert len(during) <= len(reports) + 20, "\n".join(during)  # progress lines and a line per failed run, no more
        serve_during = serve.log().splitlines()[serve_lines_before:]
        serve_reports = [line for line in serve_during if "unreachable for" in line]
        assert 1 <= len(serve_reports) <= down_s / 30 + 2 and len(serve_during) <= len(serve_reports) + 5, "\n".join(serve_during)

        # The broker returns, and the rest of the log arrives.
        broker.start()
        produce_workload(settings, workload.records[first_part:], progress=False)
        for run in runs:
            def caught_up(run: tuple[str, str] = run) -> bool:
                assert pipelines[run].alive(), pipelines[run].output_tail()
                return group_caught_up(broker.bootstrap, groups[run], settings.orders_topic)

            wait_until(caught_up, timeout_s=300, what=f"{run} to catch up after the outage", interval_s=1)
        for engine, view in runs:
            topic = view_topic(view, prefix=engine_settings[engine].view_topic_prefix)

            def matches(topic: str = topic, view: str = view) -> bool:
                return not mismatched_keys(latest_rows(broker.bootstrap, topic), expected[view])

            wait_until(matches, timeout_s=120, what=f"{engine} {view} to equal the oracle", interval_s=2)

        ends = {view_topic(v, prefix=served.view_topic_prefix): data_end_offsets(broker.bootstrap, view_topic(v, prefix=served.view_topic_prefix))
                for v in VIEWS}

        def replica_caught_up() -> bool:
            health = serve.health()
            if health is None or health["status"] != "ok":
                return False
            position = health["position"]
            return all(position.get(t, {}).get(str(p), 0) >= end for t, parts in ends.items() for p, end in parts.items())

        wait_until(replica_caught_up, timeout_s=120, what="the replica to catch up, /healthz ok", interval_s=1)
        final = serve.health()
        assert final is not None and final["reason"] is None and final["code"] == 200, final
        stats = {run: process.terminate() for run, process in pipelines.items()}
        for run, counters in stats.items():
            assert counters["events_in"] == counters["applied"] + counters["duplicates"] + counters["dead_lettered"], (run, counters)
        assert serve.terminate() == 0, serve.log()[-3000:]
    finally:
        for process in pipelines.values():
            if process.alive():
                process.kill9()
        if serve.alive():
            serve.proc.kill()
            serve.proc.wait()

    # The replica holds what the views hold: compare its rows with the oracle, key by key.
    store = open_store(tmp_path / "replica", read_only=True)
    try:
        for view, rows in expected.items():
            replica_rows = {key: {"row": found.row} for key in rows if (found := store.get(view, key)) is not None}
            assert not mismatched_keys(replica_rows, rows), f"{view}: {mismatched_keys(replica_rows, rows)[:5]}"
    finally:
        store.close()
