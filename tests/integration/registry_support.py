"""Running `rewind registry ...` as a real subprocess against a run dir of the test's own, and Avro schemas to register."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.schema_registry import Schema

from scripts import registry_local

#: The test registry's own ports, so a registry started by `rewind registry up` on 18081 neither blocks nor serves the tests.
TEST_PORT = int(os.environ.get("REWIND_TEST_REGISTRY_PORT", "18181"))
_CLI_TIMEOUT_S = 600.0  # a first `up` downloads ~109 MB


@dataclass(frozen=True)
class RegistryCli:
    """`rewind registry` for one run dir and port; every call is a fresh `python -m scripts.cli` process."""

    run_dir: Path
    port: int = TEST_PORT

    @property
    def url(self) -> str:
        return registry_local.registry_url(self.port)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "REWIND_REGISTRY_RUN_DIR": str(self.run_dir),
            "REWIND_REGISTRY_PORT": str(self.port),
            "REWIND_REGISTRY_MANAGEMENT_PORT": str(self.port + 1),
        }
        env.pop("REWIND_SCHEMA_REGISTRY_URL", None)  # an external registry would make `up` start nothing
        return subprocess.run(
            [sys.executable, "-m", "scripts.cli", "registry", *args],
            cwd=registry_local.PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=_CLI_TIMEOUT_S, check=False,
        )

    def stop(self) -> None:
        """Teardown: stop the registry of this run dir whatever the test did."""
        registry_local.down(paths=registry_local.LocalRegistryPaths(run_dir=self.run_dir))


@contextmanager
def running_registry(run_dir: Path, port: int) -> Iterator[RegistryCli]:
    """`rewind registry up` in ``run_dir`` on ``port`` (a fresh database, global level BACKWARD_TRANSITIVE),
    stopped on exit whatever the tests did: a test module's own registry."""
    cli = RegistryCli(run_dir=run_dir, port=port)
    try:
        up = cli.run("up")
        assert up.returncode == 0, up.stderr
        yield cli
    finally:
        cli.stop()


def avro_record(*fields: dict[str, object]) -> Schema:
    """An Avro record schema ``t.Probe`` with these fields."""
    return Schema(json.dumps({"type": "record", "name": "Probe", "namespace": "t", "fields": list(fields)}), "AVRO")
