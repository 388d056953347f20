"""`rewind registry up/status/down` with the real Apicurio Registry: a JVM started by the CLI, used through confluent-kafka's client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from scripts import registry_local
from tests.integration.registry_support import TEST_PORT, RegistryCli, avro_record

pytestmark = pytest.mark.integration

V1 = avro_record({"name": "a", "type": "int"})
# v2 adds a field with a default: a v2 reader reads v1 data.
V2 = avro_record({"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": ""})
# Reads v2 data (b is there) but not v1 data (no b, no default): backward-compatible with the latest only.
V3_LATEST_ONLY = avro_record({"name": "b", "type": "string"})
# A new field without a default: reads neither.
INCOMPATIBLE = avro_record({"name": "a", "type": "int"}, {"name": "z", "type": "long"})


@pytest.fixture
def registry_cli(tmp_path: Path) -> Iterator[RegistryCli]:
    """The CLI bound to a fresh run dir (its own database); the registry is stopped at teardown even if a test fails."""
    cli = RegistryCli(run_dir=tmp_path / "registry")
    try:
        yield cli
    finally:
        cli.stop()


def _subject() -> str:
    return f"t-registry-{uuid.uuid4().hex[:8]}-value"


def test_up_status_compatibility_gate_down(registry_cli: RegistryCli) -> None:
    """Scenario: up, register v1 and v2, try schemas incompatible with v1, then down twice.

    We expect: up prints the ccompat URL; status says running with that URL and BACKWARD_TRANSITIVE;
    a schema compatible with the latest version only is refused with 409 (transitive); down stops it, and again is a no-op.
    """
    up = registry_cli.run("up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == registry_cli.url == f"http://127.0.0.1:{TEST_PORT}/apis/ccompat/v7"

    status = registry_cli.run("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("running ")
    assert f"url={registry_cli.url} " in status.stdout and "compatibility=BACKWARD_TRANSITIVE " in status.stdout

    client = SchemaRegistryClient({"url": registry_cli.url})
    assert client.get_compatibility() == "BACKWARD_TRANSITIVE"
    subject = _subject()
    first_id = client.register_schema(subject, V1)
    assert client.test_compatibility(subject, V2)
    second_id = client.register_schema(subject, V2)
    assert second_id != first_id
    assert client.test_compatibility(subject, INCOMPATIBLE) is False
    # test_compatibility checks against one version ("latest"): it passes v3; the transitive gate is all versions.
    assert client.test_compatibility(subject, V3_LATEST_ONLY) is True
    assert client.test_compatibility_all_versions(subject, V3_LATEST_ONLY) is False
    for refused in (INCOMPATIBLE, V3_LATEST_ONLY):
        with pytest.raises(SchemaRegistryError) as excinfo:
            client.register_schema(subject, refused)
        assert excinfo.value.http_status_code == 409
    assert client.get_versions(subject) == [1, 2]

    down = registry_cli.run("down")
    assert down.returncode == 0 and "stopped" in down.stderr, down.stderr
    assert registry_cli.run("down").returncode == 0  # idempotent
    stopped = registry_cli.run("status")
    assert stopped.returncode == 3
    assert stopped.stdout.startswith("stopped ") and "url=None" in stopped.stdout


def test_schemas_and_ids_survive_a_restart(registry_cli: RegistryCli) -> None:
    """Scenario: register a schema, down, up again. We expect the same subject, version and id (the H2 file is kept)."""
    assert registry_cli.run("up").returncode == 0
    client = SchemaRegistryClient({"url": registry_cli.url})
    subject = _subject()
    schema_id = client.register_schema(subject, V1)
    assert registry_cli.run("down").returncode == 0

    again = registry_cli.run("up")
    assert again.returncode == 0, again.stderr
    client = SchemaRegistryClient({"url": registry_cli.url})  # its cache must not answer for the registry
    assert client.lookup_schema(subject, V1).schema_id == schema_id
    assert client.get_schema(schema_id).schema_str == V1.schema_str
    assert client.get_compatibility() == "BACKWARD_TRANSITIVE"


@pytest.mark.parametrize(
    "args,expected_rc,message",
    [
        (("up", "--port", "0"), 2, "Invalid value for '--port'"),
        (("up", "--compatibility", "NONE"), 2, "'NONE' is not one of"),
        (("up", "--port", "18999", "--management-port", "18999"), 1, "must differ"),
    ],
    ids=["port-out-of-range", "weak-compatibility", "same-ports"],
)
def test_bad_argument_is_one_line_and_no_side_effect(registry_cli: RegistryCli, args: tuple[str, ...], expected_rc: int, message: str) -> None:
    """Scenario: `up` with a bad argument. We expect one line on stderr, a non-zero exit, and no run dir created."""
    result = registry_cli.run(*args)
    assert result.returncode == expected_rc
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not registry_cli.run_dir.exists()


def test_a_failed_start_shows_the_log_tail(registry_cli: RegistryCli) -> None:
    """Scenario: the database file is corrupt, so the JVM exits during start-up. We expect exit 1, the cause from the log, no process left."""
    data = registry_local.LocalRegistryPaths(run_dir=registry_cli.run_dir).data_dir
    data.mkdir(parents=True)
    (data / "registry.mv.db").write_bytes(b"not an H2 store" * 1000)
    result = registry_cli.run("up", "--timeout-s", "120")
    assert result.returncode == 1
    # After the progress lines, the error: its first line, then the log's last lines.
    assert "\nerror: the local registry did not start: the registry process exited during start-up\n" in result.stderr
    assert f"--- last lines of {registry_cli.run_dir / 'registry.log'} ---" in result.stderr
    assert "registry.mv.db" in result.stderr  # H2's own complaint, from the log
    assert registry_cli.run("status").returncode == 3
