"""The compatibility gate against a real local registry (Apicurio, started by `rewind registry up`): no Kafka needed.

`rewind replay` reads the subjects' levels before it contacts a broker, so every replay here
points at a closed port (127.0.0.1:1): a refusal must come first, and a passed gate then
fails on the broker, which is how the test sees that the gate was passed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from pipelines.projections import VIEW_NAMES
from schemas.compat import load_versions
from schemas.registry import SCHEMA_DIR
from schemas.registry_client import event_subjects, subject_name
from scripts import registry_local
from tests.integration.registry_support import RegistryCli, running_registry

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("REWIND_TEST_GATE_REGISTRY_PORT", "18281"))
CLOSED_BROKER = "127.0.0.1:1"
REFUSAL = "refusing to replay from offset 0"
_CLI_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryCli]:
    """A registry of this module's own (port 18281, fresh database), global level BACKWARD_TRANSITIVE; stopped at the end."""
    with running_registry(tmp_path_factory.mktemp("gate-registry") / "registry", PORT) as cli:
        yield cli


def _rewind(*args: str, registry_url: str | None, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REWIND_SCHEMA_REGISTRY_URL"}
    env.update(KAFKA_BOOTSTRAP_SERVERS=CLOSED_BROKER, REWIND_STATE_DIR=str(state_dir), REWIND_CONNECT_TIMEOUT_S="3")
    if registry_url:
        env["REWIND_SCHEMA_REGISTRY_URL"] = registry_url
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], cwd=registry_local.PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=_CLI_TIMEOUT_S, check=False)


def _replay(*extra: str, registry_url: str | None, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return _rewind("replay", VIEW_NAMES[0], "--no-progress", "--workers", "0", *extra, registry_url=registry_url, state_dir=state_dir)


def test_replay_refuses_a_non_transitive_subject_and_force_overrides(registry: RegistryCli, tmp_path: Path) -> None:
    """Scenario: the shipped schemas registered; OrderPlaced's subject set to BACKWARD, then back to BACKWARD_TRANSITIVE.

    We expect: with BACKWARD, `rewind replay` exits 1 with one line naming the subject, the level and why, before any
    broker contact or file write; with --force the gate is skipped; with BACKWARD_TRANSITIVE the gate passes (and the
    replay then fails on the closed broker).
    """
    client = SchemaRegistryClient({"url": registry.url, "timeout": 10})
    versions = load_versions()
    for name, per_type in versions.items():
        if name != "Envelope":
            client.register_schema(subject_name(per_type[-1], per_type), Schema(per_type[-1].schema_str(), "AVRO"))
    subject = "rewind.orders.OrderPlaced"
    client.set_compatibility(subject, "BACKWARD")

    refused = _replay(registry_url=registry.url, state_dir=tmp_path / "state")
    assert refused.returncode == 1
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert REFUSAL in lines[0] and f"subject {subject} has compatibility BACKWARD," in lines[0]
    assert "reads every version ever written" in lines[0] and "--force" in lines[0]
    assert "rdkafka" not in refused.stderr and not (tmp_path / "state").exists()  # no broker contact, nothing written

    forced = _replay("--force", registry_url=registry.url, state_dir=tmp_path / "state")
    assert REFUSAL not in forced.stderr
    assert "schema compatibility gate skipped (--force)" in forced.stderr
    assert forced.returncode != 0 and "no Kafka broker answered" in forced.stderr  # past the gate: it fails on the closed broker

    client.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    passed = _replay(registry_url=registry.url, state_dir=tmp_path / "state")
    assert REFUSAL not in passed.stderr
    subjects = len(event_subjects(load_versions()))  # one per type and major shape: OrderPlaced has two
    assert subjects == 10
    assert f"schema compatibility gate passed: {subjects} subjects, levels BACKWARD_TRANSITIVE" in passed.stderr, passed.stderr

    no_registry = _replay(registry_url=None, state_dir=tmp_path / "state")
    assert "schema compatibility gate" not in no_registry.stderr  # no URL, no gate


def _order_placed_dir(tmp_path: Path, namespace: str) -> Path:
    """Envelope v1 and OrderPlaced v1 (in ``namespace``, so its subject is this test's own) plus a v2 adding salesChannel."""
    out = tmp_path / namespace
    out.mkdir()
    shutil.copy(SCHEMA_DIR / "Envelope.v1.avsc", out)
    v1 = json.loads((SCHEMA_DIR / "OrderPlaced.v1.avsc").read_text())
    v1["namespace"] = namespace
    v1["fields"][0]["type"] = "rewind.orders.Envelope"
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "salesChannel", "type": "string", "default": "web"})
    (out / "OrderPlaced.v1.avsc").write_text(json.dumps(v1))
    (out / "OrderPlaced.v2.avsc").write_text(json.dumps(v2))
    return out


def test_schemas_check_against_registered_versions(registry: RegistryCli, tmp_path: Path) -> None:
    """Scenario: local OrderPlaced v1, v2 (adds salesChannel with a default); the registry holds v1 in one subject,
    and in another a version whose totalMinor is a string.

    We expect OK with the subject's level for the first, and for the second exit 1 with exactly one line naming
    OrderPlaced, totalMinor, v2 and the registered version.
    """
    client = SchemaRegistryClient({"url": registry.url, "timeout": 10})
    good_ns, bad_ns = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"

    good_dir = _order_placed_dir(tmp_path, good_ns)
    v1 = load_versions(good_dir)["OrderPlaced"][0]
    client.register_schema(f"{good_ns}.OrderPlaced", Schema(v1.schema_str(), "AVRO"))
    ok = _rewind("schemas", "check", "--dir", str(good_dir), "--registry", registry.url, registry_url=None, state_dir=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"OK OrderPlaced registry: v2 reads all 1 version(s) of {good_ns}.OrderPlaced (level BACKWARD_TRANSITIVE)" in ok.stdout

    bad_dir = _order_placed_dir(tmp_path, bad_ns)
    alien = load_versions(bad_dir)["OrderPlaced"][0].writer_schema
    next(f for f in alien["fields"] if f["name"] == "totalMinor")["type"] = "string"
    client.register_schema(f"{bad_ns}.OrderPlaced", Schema(json.dumps(alien), "AVRO"))
    bad = _rewind("schemas", "check", "--dir", str(bad_dir), registry_url=registry.url, state_dir=tmp_path)  # URL from the env var
    assert bad.returncode == 1
    problems = [line for line in bad.stdout.splitlines() if line.startswith("INCOMPATIBLE")]
    assert problems == [
        f"INCOMPATIBLE OrderPlaced: field totalMinor: v2 cannot read registered version 1 of {bad_ns}.OrderPlaced "
        "(an unknown schema): type changed from string to long"
    ]
    assert "OK OrderPlaced v1..v2" in bad.stdout  # the offline check alone is fine


def test_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    """Scenario: the registry URL points at a closed port. We expect one error line and exit 1 from both commands, fast."""
    closed = "http://127.0.0.1:1/apis/ccompat/v7"
    check = _rewind("schemas", "check", "--registry", closed, "--timeout-s", "5", registry_url=None, state_dir=tmp_path)
    assert check.returncode == 1
    assert check.stderr.strip().splitlines() == [check.stderr.strip()] and "unreachable" in check.stderr, check.stderr
    replay = _replay(registry_url=closed, state_dir=tmp_path / "state")
    assert replay.returncode == 1
    lines = replay.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: schema registry {closed} unreachable"), replay.stderr
    assert not (tmp_path / "state").exists()
    # `rewind snapshot --at` replays from offset 0 as well: the same gate, before anything is written.
    snapshot = _rewind("snapshot", "order-status", "--at", "1700000000000", "--no-progress", registry_url=closed, state_dir=tmp_path / "state")
    assert snapshot.returncode == 1
    lines = snapshot.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: schema registry {closed} unreachable"), snapshot.stderr
    assert not (tmp_path / "state").exists()
