"""A long broker outage, measured (issue 12, point 3): pipelines and the replica ride it out, then catch up exactly.

On a private broker of its own (``scripts.kafka_local.private_broker``; the local and test
brokers are never touched): produce 70% of a workload, run ``rewind run`` for each view and
``rewind serve``, kill -9 the broker once every pipeline has committed part of the log, keep it
down ``--outage-s`` seconds (5 minutes by default), start it again, produce the remaining 30%,
and wait until everything caught up. Then it prints the figures:

- whether every process stayed alive, and how each failed run ended (from the logs);
- "unreachable" lines and all lines each process logged while the broker was down;
- /healthz during the outage (status, code, reason) and after;
- time to resume (first new commit after the broker answered) and to catch up, per pipeline;
- the views and the replica against the workload's oracle (mismatched keys; counters equal
  means nothing was counted twice).

    .venv/bin/python -m scripts.outage_drill                 # 5-minute outage
    .venv/bin/python -m scripts.outage_drill --outage-s 90 --orders 5000

Exit code 0 when every process survived and every view and the replica equal the oracle, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import typer

from pipelines.live.supervisor import PipelineChild, committed_total, group_lag
from pipelines.readback import data_end_offsets, latest_by_key
from pipelines.settings import RewindSettings
from pipelines.topics import view_topic
from scripts.kafka_local.private_broker import private_broker
from scripts.workload import Oracle, WorkloadConfig, generate, produce_workload, write_oracle
from scripts.workload.expected_views import expected_customers, expected_order_status, mismatched_keys
from state.rocks_store import open_store

__all__ = ["main"]

_EXPECTED: dict[str, Callable[[Oracle], dict[str, dict[str, Any]]]] = {
    "order-status": expected_order_status,
    "customer-summary": expected_customers,
}

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _wait(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
    return result


def _health(port: int) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except httpx.HTTPError:
        return None
    return {**response.json(), "code": response.status_code}


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


@app.command()
def main(
    outage_s: float = typer.Option(300.0, min=1.0, help="How long the broker stays down, seconds."),
    orders: int = typer.Option(12_000, min=100, help="Orders in the workload (about 5 events each)."),
    report_s: float = typer.Option(30.0, min=1.0, help="--outage-report-s of the pipelines."),
    views: str = typer.Option("order-status,customer-summary", help=f"Comma-separated views to run: any of {', '.join(_EXPECTED)}."),
    run_dir: Path | None = typer.Option(None, help="Where the broker, state, logs and oracle go (default: a new temporary directory)."),
) -> None:
    """Kill the broker for --outage-s while pipelines and the replica run; print how they rode it out and the views vs the oracle."""
    chosen = [v.strip() for v in views.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in _EXPECTED]
    if unknown or not chosen:
        raise typer.BadParameter(f"unknown views {unknown}; choose from {', '.join(_EXPECTED)}")
    # SIGTERM unwinds like Ctrl+C, so the children and the broker are stopped (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, _terminate)
    root = run_dir or Path(tempfile.mkdtemp(prefix="rewind-outage-drill-"))
    root.mkdir(parents=True, exist_ok=True)
    name = f"drill-{uuid.uuid4().hex[:8]}"
    with private_broker(root / "kafka") as broker:
        settings = RewindSettings(kafka_bootstrap_servers=broker.bootstrap, orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq",
                                  view_topic_prefix=f"{name}.", state_dir=root / "state")
        ok = _drill(settings, broker, root, chosen, outage_s=outage_s, orders=orders, report_s=report_s)
    _say(f"run directory: {root}")
    raise typer.Exit(0 if ok else 1)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _drill(settings: RewindSettings, broker: Any, root: Path, views: list[str], *, outage_s: float, orders: int, report_s: float) -> bool:
    bootstrap = broker.bootstrap
    workload = generate(WorkloadConfig(seed=77, orders=orders, days=7, poison_rate=0.01))
    write_oracle(workload, root / "oracle.sqlite", topic=settings.orders_topic)
    with Oracle.open(root / "oracle.sqlite") as oracle:
        expected = {view: _EXPECTED[view](oracle) for view in views}
    first_part = int(len(workload.records) * 0.7)
    produce_workload(settings, workload.records[:first_part], progress=False)
    _say(f"broker {bootstrap}; produced {first_part} of {len(workload.records)} events")

    groups = {view: f"{settings.orders_topic}-{view}" for view in views}
    children = {view: PipelineChild.start(settings, view, group=groups[view], state_dir=root / "state" / view,
                                          log_path=root / "logs" / f"{view}.log", extra_args=("--outage-report-s", str(report_s)))
                for view in views}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve_log = root / "logs" / "serve.log"
    with serve_log.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", "serve", "--port", str(port), "--view-topic-prefix", settings.view_topic_prefix,
             "--replica-dir", str(root / "replica"), "--kafka-bootstrap-servers", bootstrap],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        )
    figures: dict[str, Any] = {"outage_s": outage_s, "events": len(workload.records), "views": {}}
    try:
        for view in views:
            def started(view: str = view) -> bool:
                return committed_total(bootstrap, groups[view], settings.orders_topic) > first_part // 10 or not children[view].alive()

            _wait(started, timeout_s=600, what=f"{view} to commit part of the log")
        _wait(lambda: (_health(port) or {}).get("status") == "ok", timeout_s=120, what="rewind serve to answer ok")
        before = {view: len(_lines(c.log_path)) for view, c in children.items()}
        serve_before = len(_lines(serve_log))
        committed_at_kill = {view: committed_total(bootstrap, groups[view], settings.orders_topic) for view in views}
        _say(f"killing the broker (kill -9); committed so far: {committed_at_kill}")
        broker.stop(hard=True)
        killed = time.monotonic()
        samples: list[dict[str, Any]] = []
        while (left := outage_s - (time.monotonic() - killed)) > 0:
            time.sleep(min(15.0, left))
            health = _health(port)
            alive = {view: c.alive() for view, c in children.items()} | {"serve": serve.poll() is None}
            sample = {"t_s": round(time.monotonic() - killed), "alive": alive,
                      "healthz": None if health is None else (health["code"], health["status"], health["reason"])}
            samples.append(sample)
            _say(f"outage +{sample['t_s']} s: alive {alive}; /healthz {sample['healthz']}")
        figures["alive_through_outage"] = all(all(s["alive"].values()) for s in samples)
        figures["healthz_during"] = sorted({s["healthz"][1] for s in samples if s["healthz"]})
        figures["healthz_reason_last"] = samples[-1]["healthz"][2] if samples and samples[-1]["healthz"] else None
        for view, child in children.items():
            during = _lines(child.log_path)[before[view]:]
            figures["views"][view] = {
                "unreachable_lines": sum("unreachable for" in line for line in during), "lines_during_outage": len(during),
                "failed_runs": [line.split("rewind.live ", 1)[-1][:160] for line in during if " failed after " in line],
                "tracebacks": sum("Traceback" in line for line in during),
            }
        serve_during = _lines(serve_log)[serve_before:]
        figures["serve"] = {"unreachable_lines": sum("unreachable for" in line for line in serve_during), "lines_during_outage": len(serve_during)}

        _say("starting the broker again")
        restart_began = time.monotonic()
        broker.start()
        back = time.monotonic()
        figures["broker_restart_s"] = round(back - restart_began, 1)
        figures["down_s"] = round(back - killed, 1)
        committed_back = {view: committed_total(bootstrap, groups[view], settings.orders_topic) for view in views}
        produce_workload(settings, workload.records[first_part:], progress=False)
        _say(f"broker back after {figures['down_s']} s down; produced the remaining {len(workload.records) - first_part} events")
        # Resumed: the group committed past where it stood when the broker came back. Caught up: nothing left to commit.
        caught: set[str] = set()
        deadline = time.monotonic() + 900
        while caught != set(views):
            for view in set(views) - caught:
                figure = figures["views"][view]
                if "resume_s" not in figure and committed_total(bootstrap, groups[view], settings.orders_topic) > committed_back[view]:
                    figure["resume_s"] = round(time.monotonic() - back, 1)
                if "resume_s" in figure and group_lag(bootstrap, groups[view], settings.orders_topic) == 0:
                    figure["caught_up_s"] = round(time.monotonic() - back, 1)
                    caught.add(view)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not caught up 900 s after the broker returned: {sorted(set(views) - caught)}")
            time.sleep(0.5)
        ok = figures["alive_through_outage"]
        for view in views:
            topic = view_topic(view, prefix=settings.view_topic_prefix)

            def matches(topic: str = topic, view: str = view) -> bool:
                return not mismatched_keys(latest_by_key(bootstrap, topic), expected[view])

            try:
                _wait(matches, timeout_s=120, what=f"{view} to equal the oracle", interval_s=2)
            except TimeoutError:
                pass
            bad = mismatched_keys(latest_by_key(bootstrap, topic), expected[view])
            figures["views"][view].update(keys=len(expected[view]), view_mismatches=len(bad))
            ok = ok and not bad
        ends = {view_topic(v, prefix=settings.view_topic_prefix): data_end_offsets(bootstrap, view_topic(v, prefix=settings.view_topic_prefix))
                for v in views}

        def replica_caught_up() -> bool:
            health = _health(port)
            if health is None or health["status"] != "ok":
                return False
            return all(health["position"].get(t, {}).get(str(p), 0) >= end for t, parts in ends.items() for p, end in parts.items())

        _wait(replica_caught_up, timeout_s=300, what="the replica to catch up")
        figures["replica_caught_up_s"] = round(time.monotonic() - back, 1)
        final = _health(port) or {}
        figures["healthz_after"] = (final.get("code"), final.get("status"), final.get("reason"))
        for view, child in children.items():
            figures["views"][view]["stats"] = child.stop()
            figures["views"][view]["exit_code"] = child.proc.returncode
            ok = ok and child.proc.returncode == 0
    finally:
        for child in children.values():
            if child.alive():
                child.proc.kill()
                child.proc.wait()
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
    figures["serve_exit_code"] = serve.returncode
    store = open_store(root / "replica", read_only=True)
    try:
        for view in views:
            rows = {key: {"row": found.row} for key in expected[view] if (found := store.get(view, key)) is not None}
            figures["views"][view]["replica_mismatches"] = len(mismatched_keys(rows, expected[view]))
            ok = ok and not figures["views"][view]["replica_mismatches"]
    finally:
        store.close()
    ok = ok and serve.returncode == 0
    figures["ok"] = ok
    print(json.dumps(figures, indent=2, default=str), flush=True)
    return bool(ok)


if __name__ == "__main__":
    app()
