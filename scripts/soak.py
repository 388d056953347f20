"""Chaos soak: the live pipelines, the read replica and a steady workload, with kill -9s and broker restarts.

    python scripts/soak.py --minutes 20 [--rate 100] [--seed 0] [--kill-every 20-60] [--broker-restarts 2] [--outage-s 15]

On a private broker of its own (under ``--run-dir``, default ``.run/soak/``), with topics of its own:

1. runs every registered view's pipeline (`rewind run VIEW`, each with its own state dir), the read
   replica (`rewind serve`) and the workload at ``--rate`` events/s for ``--minutes``;
2. meanwhile kill -9s a random one of those processes every ``--kill-every`` seconds (seeded by
   ``--seed``) and starts it again at once, and stops the broker ``--broker-restarts`` times
   (``--outage-s`` each, the first with SIGTERM, the next with SIGKILL) spread over the run;
   a process that exits on its own is a failure: counted, its log kept, started again;
3. then stops the workload, waits until every pipeline and the replica have read everything,
   and checks every view topic, the replica (its HTTP API on a sample, its store in full) and
   the DLQ against the workload's own oracle of exactly what was sent.

It prints its progress every ``--progress-interval-s`` and at the end a summary (kills per process,
broker restarts, events, mismatches per view with examples, DLQ expected vs found, the longest
stall: the longest time a pipeline's committed offsets stood still while input was pending),
then ``REWIND_SOAK {json}`` and one verdict line. Exit 0 only if nothing failed; 1 with the
verdict's line otherwise; 2 for a bad argument (one line, before anything starts); 130/143
when interrupted by SIGINT/SIGTERM (children and broker stopped first).
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
import warnings
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:  # quixstreams pulls in authlib, which turns its own deprecation warning on at import (as scripts/cli.py does)
    import authlib.deprecate  # noqa: F401
except ImportError:
    pass
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

from rich.console import Console  # noqa: E402

from pipelines.projections import VIEW_NAMES  # noqa: E402
from schemas.errors import ConfigError, RewindError  # noqa: E402
from scripts.chaos import SoakConfig, SoakInterrupted, run_soak  # noqa: E402
from scripts.cli_common import check_dir  # noqa: E402

DEFAULT_RUN_DIR = ROOT / ".run" / "soak"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``error:`` line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def _kill_every(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        return float(low), float(high if sep else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give MIN-MAX seconds, e.g. 20-60") from None


def parse(argv: list[str] | None) -> SoakConfig:
    """The soak's configuration from the command line; one line and exit 2 for anything wrong."""
    parser = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="How long the workload and the chaos last (default 20).")
    parser.add_argument("--rate", type=float, default=100.0, help="Events per second the workload produces (default 100).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the workload, the kill schedule and the victims (default 0).")
    parser.add_argument("--kill-every", type=_kill_every, default=(20.0, 60.0), metavar="MIN-MAX",
                        help="Seconds between two kill -9s, drawn uniformly (default 20-60).")
    parser.add_argument("--broker-restarts", type=int, default=2, help="Broker stops, spread over the run (default 2).")
    parser.add_argument("--outage-s", type=float, default=15.0, help="Seconds the broker stays down each time (default 15).")
    parser.add_argument("--settle-timeout-s", type=float, default=600.0, help="Longest wait for the catch-up at the end (default 600).")
    parser.add_argument("--commit-interval-s", type=float, default=5.0, help="The pipelines' checkpoint interval (REWIND_COMMIT_INTERVAL_S, default 5).")
    parser.add_argument("--poison-rate", type=float, default=0.01, help="Share of extra poison records in the workload (default 0.01).")
    parser.add_argument("--old-versions", type=float, default=0.2, help="Share of evolved events written with an older schema version (default 0.2).")
    parser.add_argument("--views", default=",".join(VIEW_NAMES), help=f"Pipelines to run (default all: {','.join(VIEW_NAMES)}).")
    parser.add_argument("--progress-interval-s", type=float, default=10.0, help="Seconds between progress lines (default 10).")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help=f"Where runs live (default {DEFAULT_RUN_DIR}).")
    args = parser.parse_args(argv)
    config = SoakConfig(
        minutes=args.minutes, rate=args.rate, seed=args.seed, kill_min_s=args.kill_every[0], kill_max_s=args.kill_every[1],
        broker_restarts=args.broker_restarts, outage_s=args.outage_s, run_dir=args.run_dir, settle_timeout_s=args.settle_timeout_s,
        commit_interval_s=args.commit_interval_s, poison_rate=args.poison_rate, old_version_rate=args.old_versions,
        views=tuple(v.strip() for v in args.views.split(",") if v.strip()), progress_interval_s=args.progress_interval_s,
    )
    try:
        config.check()
        check_dir("--run-dir", args.run_dir)
    except ConfigError as exc:
        parser.error(str(exc))
    return config


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    faulthandler.enable(all_threads=True)  # a crash in a client library names its thread and call
    console = Console(highlight=False, width=160, soft_wrap=True)
    try:
        summary = run_soak(config, console=console)
    except SoakInterrupted as exc:
        print(f"soak {exc}; its processes and its broker are stopped", file=sys.stderr)
        return 128 + exc.signum
    except RewindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary.print(console)
    print(summary.json_line(), flush=True)
    print(summary.verdict(), flush=True)
    return 1 if summary.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
