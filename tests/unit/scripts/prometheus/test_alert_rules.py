"""The shipped Prometheus config and alert rules (scripts/prometheus/): promtool accepts them, the rules' own unit
tests pass (each alert fires on a series that should trigger it and not on one that should not), and every metric
the rules name is one a Rewind process serves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from pipelines.live.stats import PipelineStats
from pipelines.metrics import PipelineCollector, RelayCollector, metrics_registry
from pipelines.orders.relay import RelayStats
from scripts.prometheus_local import PROMTOOL, SHIPPED_CONFIG, SHIPPED_RULES

ROOT = Path(__file__).resolve().parents[4]
RULES_TEST = SHIPPED_RULES.with_name("rewind-alerts.test.yml")

pytestmark = pytest.mark.skipif(not PROMTOOL.exists(), reason=f"{PROMTOOL} missing (scripts/ensure-apt-tools.sh installs it)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_config_and_its_rule_file() -> None:
    """Scenario: promtool check config on the shipped config. We expect success, with the alert rules file found."""
    done = _promtool("check", "config", str(SHIPPED_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout + done.stderr


def test_promtool_accepts_the_rules() -> None:
    """Scenario: promtool check rules on the shipped alert rules. We expect the four rules found."""
    done = _promtool("check", "rules", str(SHIPPED_RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 rules found" in done.stdout


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    """Scenario: promtool test rules on rewind-alerts.test.yml. We expect success, and every alert of the rules tested."""
    done = _promtool("test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)", SHIPPED_RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert alerts and alerts == tested


def test_a_broken_rules_test_fails(tmp_path: Path) -> None:
    """Scenario: the rules test with one expected alert's labels changed. We expect promtool to fail it (the test can fail)."""
    broken = RULES_TEST.read_text().replace("pipeline: order-status}", "pipeline: customer-summary}", 1)
    assert broken != RULES_TEST.read_text()
    (tmp_path / SHIPPED_RULES.name).write_text(SHIPPED_RULES.read_text())  # the test names the rules by relative path
    (tmp_path / RULES_TEST.name).write_text(broken)
    done = _promtool("test", "rules", str(tmp_path / RULES_TEST.name))
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr


def _served_names() -> set[str]:
    """The metric names a pipeline and a relay serve (their collectors, fed dummy counters), and the replica's
    (the names state/http_api.py declares)."""
    pipeline = PipelineCollector("order-status", topic="orders")
    stats = PipelineStats("order-status")
    stats.count_dead_letter("SequenceGap")
    pipeline.attach(stats, lag=lambda: {0: 1}, state_dir=ROOT / "nonexistent")
    relay = RelayCollector()
    relay.attach(RelayStats("r"), lag=lambda: (1, 1000))
    text = generate_latest(metrics_registry(pipeline)).decode() + generate_latest(metrics_registry(relay)).decode()
    names = set(re.findall(r"^(\w+)(?:\{| )", text, re.MULTILINE))
    names |= set(re.findall(r'"(rewind_replica_\w+)"', (ROOT / "state" / "http_api.py").read_text()))
    return names


def test_the_rules_name_only_metrics_that_are_served() -> None:
    """Scenario: every rewind_* name in the rules' expressions. We expect each among the names the processes serve."""
    exprs = re.findall(r"expr: (\|\n(?:\s{10}.*\n)+|.*)", SHIPPED_RULES.read_text())
    used = {name for expr in exprs for name in re.findall(r"\brewind_\w+", expr)}
    served = _served_names()
    assert {"rewind_pipeline_consumer_lag", "rewind_pipeline_events_total", "rewind_replica_lag",
            "rewind_outbox_oldest_unpublished_age_seconds"} <= used
    assert used <= served, used - served
