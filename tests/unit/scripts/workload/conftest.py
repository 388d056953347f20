"""Workloads shared by the workload tests: generated once per session (they are deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.workload import Workload, WorkloadConfig, generate, write_oracle

#: Seven days so that refunds (days after delivery) happen; poison on, a little more than the CLI's 1%;
#: a third of the OrderPlaced and PaymentAuthorized events written with an older schema version.
POISONED = WorkloadConfig(seed=11, orders=3000, days=7, poison_rate=0.03, old_version_rate=0.3)
#: The defaults a user gets, on a few thousand orders.
DEFAULTS = WorkloadConfig(seed=11, orders=3000)


@pytest.fixture(scope="session")
def poisoned() -> Workload:
    return generate(POISONED)


@pytest.fixture(scope="session")
def defaults() -> Workload:
    return generate(DEFAULTS)


@pytest.fixture(scope="session")
def oracle_path(poisoned: Workload, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oracle") / "oracle.sqlite"
    write_oracle(poisoned, path, topic="orders-test")
    return path
