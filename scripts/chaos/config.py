"""What one soak run is: its knobs (:class:`SoakConfig`) and the settings its processes share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pipelines.projections import VIEW_NAMES
from pipelines.settings import RewindSettings
from schemas.errors import ConfigError

__all__ = ["SoakConfig", "REPLICA", "soak_settings", "pipeline_group"]

#: The name the read replica (`rewind serve`) goes by among the processes under test.
REPLICA = "replica"


@dataclass(frozen=True)
class SoakConfig:
    """Everything a soak run depends on; :meth:`check` refuses an impossible one before any side effect."""

    minutes: float = 20.0
    rate: float = 100.0
    seed: int = 0
    kill_min_s: float = 20.0
    kill_max_s: float = 60.0
    broker_restarts: int = 2
    outage_s: float = 15.0
    run_dir: Path = Path(".run/soak")
    views: tuple[str, ...] = VIEW_NAMES
    settle_timeout_s: float = 600.0
    commit_interval_s: float = 5.0
    poison_rate: float = 0.01
    old_version_rate: float = 0.2
    progress_interval_s: float = 10.0

    @property
    def duration_s(self) -> float:
        """How long the workload runs and the chaos lasts (the catch-up and the checks come after)."""
        return self.minutes * 60.0

    def check(self) -> SoakConfig:
        """``self``, or :class:`ConfigError` naming the first bad option."""
        finite = {"--minutes": self.minutes, "--rate": self.rate, "--outage-s": self.outage_s, "--settle-timeout-s": self.settle_timeout_s,
                  "--commit-interval-s": self.commit_interval_s, "--kill-every": self.kill_min_s + self.kill_max_s,
                  "--progress-interval-s": self.progress_interval_s}
        for flag, value in finite.items():
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{flag}: give a finite number > 0")
        if self.minutes > 7 * 24 * 60:
            raise ConfigError(f"--minutes {self.minutes:g}: at most a week (10080)")
        if self.rate > 50_000:
            raise ConfigError(f"--rate {self.rate:g}: at most 50,000 events/s (a soak is not a benchmark)")
        if not 0 < self.kill_min_s <= self.kill_max_s:
            raise ConfigError(f"--kill-every {self.kill_min_s:g}-{self.kill_max_s:g}: give MIN-MAX seconds with 0 < MIN <= MAX")
        if self.broker_restarts < 0:
            raise ConfigError(f"--broker-restarts {self.broker_restarts}: give 0 or more")
        if self.broker_restarts * self.outage_s >= self.duration_s / 2:
            raise ConfigError(f"--broker-restarts {self.broker_restarts} x --outage-s {self.outage_s:g}: the broker would be down for "
                              f"half the run or more ({self.duration_s:g} s); fewer or shorter outages, or more --minutes")
        if not 0.0 <= self.poison_rate <= 1.0 or not 0.0 <= self.old_version_rate <= 1.0:
            raise ConfigError("--poison-rate and --old-versions: give a share within [0, 1]")
        unknown = [v for v in self.views if v not in VIEW_NAMES]
        if unknown or not self.views or len(set(self.views)) != len(self.views):
            raise ConfigError(f"--views {','.join(self.views)!r}: give distinct names among {', '.join(VIEW_NAMES)}")
        return self


def soak_settings(bootstrap: str, *, name: str, state_dir: Path, commit_interval_s: float) -> RewindSettings:
    """Settings whose every topic is this run's own (``<name>.orders``, ``<name>.orders.dlq``, ``<name>.view.<view>``)."""
    return RewindSettings(
        kafka_bootstrap_servers=bootstrap, orders_topic=f"{name}.orders", dlq_topic=f"{name}.orders.dlq",
        view_topic_prefix=f"{name}.", state_dir=state_dir, commit_interval_s=commit_interval_s,
    )


def pipeline_group(settings: RewindSettings, view: str) -> str:
    """The consumer group of ``view``'s pipeline in this run."""
    return f"{settings.orders_topic}-{view}"
