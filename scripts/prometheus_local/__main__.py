"""``python -m scripts.prometheus_local [--port 9090] [--run-dir .run/prometheus]``: Prometheus with the shipped
config (scrapes the ports of README "Metrics", evaluates the shipped alert rules) until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from scripts.prometheus_local import SHIPPED_CONFIG, LocalPrometheus, PrometheusLocalError


def _port(text: str) -> int:
    """A TCP port, 1-65535 (argparse turns the ValueError into one usage error line)."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.prometheus_local", description=__doc__)
    parser.add_argument("--port", type=_port, default=9090, metavar="PORT", help="Listen on 127.0.0.1:PORT (1-65535).")
    parser.add_argument("--run-dir", type=Path, default=Path(".run/prometheus"), help="Its TSDB and log.")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        prometheus = LocalPrometheus.start(port=args.port, run_dir=args.run_dir.absolute(), config_file=SHIPPED_CONFIG)
    except PrometheusLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"prometheus on {prometheus.url} (config {SHIPPED_CONFIG}, log {args.run_dir / 'prometheus.log'}); Ctrl+C stops it", flush=True)
    with prometheus:
        while not stop.wait(0.5):
            if prometheus.proc.poll() is not None:
                print(f"error: prometheus exited with {prometheus.proc.returncode}: {prometheus.log_tail()}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
