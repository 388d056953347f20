"""A local Prometheus (Debian's ``/usr/bin/prometheus``) on loopback, for tests and for looking at the metrics by hand.

:meth:`LocalPrometheus.start` writes a config into its run dir (or takes one), starts
``prometheus --config.file=F --storage.tsdb.path=DIR --web.listen-address=127.0.0.1:PORT``
with its log in the run dir, and returns once ``/-/ready`` answers 200; :meth:`~LocalPrometheus.stop`
sends SIGTERM (Prometheus then closes its TSDB) and waits. A context manager does both.
``python -m scripts.prometheus_local`` runs one with the shipped config
(``scripts/prometheus/prometheus.yml``) until Ctrl+C.

A generated config scrapes ``targets`` (job name -> ``host:port`` list) every ``interval_s``
(1 s by default, so a test sees a first sample within a few seconds) and evaluates ``rule_files``
as often. JSON is YAML, so the config is written as JSON.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pipelines.live.supervisor import terminate
from schemas.errors import RewindError

__all__ = ["LocalPrometheus", "PrometheusLocalError", "PROMETHEUS", "PROMTOOL", "SHIPPED_CONFIG", "SHIPPED_RULES", "scrape_config"]

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
_ROOT = Path(__file__).resolve().parents[2]
#: The ready scrape config and alert rules shipped for operators (README, "Metrics").
SHIPPED_CONFIG = _ROOT / "scripts" / "prometheus" / "prometheus.yml"
SHIPPED_RULES = _ROOT / "scripts" / "prometheus" / "rewind-alerts.yml"
HOST = "127.0.0.1"


class PrometheusLocalError(RewindError):
    """The local Prometheus could not be started or did not become ready: the message ends with its log's last lines."""


def scrape_config(targets: Mapping[str, Sequence[str]], *, interval_s: float = 1.0, rule_files: Sequence[Path] = ()) -> dict[str, Any]:
    """A Prometheus config scraping each job's ``host:port`` targets at ``/metrics`` every ``interval_s``."""
    interval = f"{max(int(interval_s * 1000), 1)}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]} for job, hosts in targets.items()],
    }


class LocalPrometheus:
    """One Prometheus child process on ``127.0.0.1:port`` (module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes], *, port: int, run_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.run_dir = run_dir
        self.url = f"http://{HOST}:{port}"

    @classmethod
    def start(cls, *, port: int, run_dir: Path, targets: Mapping[str, Sequence[str]] | None = None, config_file: Path | None = None,
              rule_files: Sequence[Path] = (), interval_s: float = 1.0, ready_timeout_s: float = 30.0) -> LocalPrometheus:
        """Start it with ``config_file``, or a config generated from ``targets`` (:func:`scrape_config`); wait until ready.

        Raises :class:`PrometheusLocalError` when the binary is missing, the process exits, or it is
        not ready within ``ready_timeout_s`` (the process is then stopped).
        """
        if not PROMETHEUS.exists():
            raise PrometheusLocalError(f"{PROMETHEUS} is missing: install Debian's prometheus (scripts/ensure-apt-tools.sh)")
        if (targets is None) == (config_file is None):
            raise ValueError("give targets or config_file, not both")
        run_dir.mkdir(parents=True, exist_ok=True)
        if config_file is None:
            config_file = run_dir / "prometheus.yml"
            config_file.write_text(json.dumps(scrape_config(targets or {}, interval_s=interval_s, rule_files=rule_files), indent=2))
        with (run_dir / "prometheus.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={config_file}", f"--storage.tsdb.path={run_dir / 'data'}",
                 f"--web.listen-address={HOST}:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
            )
        prometheus = cls(proc, port=port, run_dir=run_dir)
        try:
            prometheus._wait_ready(timeout_s=ready_timeout_s)
        except BaseException:
            prometheus.stop()
            raise
        return prometheus

    def _wait_ready(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise PrometheusLocalError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2.0) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while it starts
            if time.monotonic() > deadline:
                raise PrometheusLocalError(f"prometheus on {HOST}:{self.port} not ready within {timeout_s:g} s: {self.log_tail()}")
            time.sleep(0.1)

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a GET of the HTTP API (``/api/v1/<path>``); PrometheusLocalError when its status is not success."""
        url = f"{self.url}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10.0) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusLocalError(f"GET {url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's vector, as {sorted labels: value}."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusLocalError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return {tuple(sorted(sample["metric"].items())): float(sample["value"][1]) for sample in data["result"]}

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of its log."""
        path = self.run_dir / "prometheus.log"
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    def stop(self, *, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); its exit code."""
        return terminate(self.proc, timeout_s=timeout_s)

    def __enter__(self) -> LocalPrometheus:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
