"""The schema evolution check, offline: temp schema dirs holding one compatible or breaking change each."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema
from typer.testing import CliRunner

from schemas.compat import UPCAST_MARKER, check_dir, check_pair, load_versions
from schemas.registry import SCHEMA_DIR
from scripts.cli import app

ROOT = Path(__file__).resolve().parents[3]
V1: dict[str, Any] = json.loads((SCHEMA_DIR / "OrderPlaced.v1.avsc").read_text())


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REWIND_SCHEMA_REGISTRY_URL", raising=False)


def _field(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in doc["fields"] if f["name"] == name)


def _schema_dir(tmp_path: Path, *later: dict[str, Any]) -> Path:
    """Envelope v1 and OrderPlaced v1 as shipped, then ``later`` as OrderPlaced v2, v3, ..."""
    out = tmp_path / "avro"
    out.mkdir()
    shutil.copy(SCHEMA_DIR / "Envelope.v1.avsc", out)
    shutil.copy(SCHEMA_DIR / "OrderPlaced.v1.avsc", out)
    for version, doc in enumerate(later, start=2):
        (out / f"OrderPlaced.v{version}.avsc").write_text(json.dumps(doc))
    return out


def _with(**changes: Any) -> dict[str, Any]:
    """OrderPlaced v1 changed: ``add=[field]``, ``retype={name: type}``, ``rename={old: (new, aliases)}``, ``props``."""
    doc = copy.deepcopy(V1)
    for name, new_type in changes.get("retype", {}).items():
        _field(doc, name)["type"] = new_type
    for old, (new, aliases) in changes.get("rename", {}).items():
        field = _field(doc, old)
        field["name"] = new
        if aliases:
            field["aliases"] = aliases
    doc["fields"].extend(changes.get("add", []))
    doc.update(changes.get("props", {}))
    return doc


SALES_CHANNEL = {"name": "salesChannel", "type": "string", "default": "web"}
NO_DEFAULT = {"name": "salesChannel", "type": "string"}


def _run(schema_dir: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["schemas", "check", "--dir", str(schema_dir)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout.splitlines()


def test_shipped_schemas_pass() -> None:
    """Scenario: the schemas of this build. We expect no incompatibility, only OrderPlaced's v2 -> v3 upcast boundary,
    and the CLI exits 0 with an OK line per type."""
    findings = [f for per_type in check_dir().values() for f in per_type]
    assert [(f.kind, f.event_type, f.writer_version, f.reader_version) for f in findings] == [("upcast", "OrderPlaced", 2, 3)]
    code, lines = _run(SCHEMA_DIR)
    assert code == 0
    assert {line.split()[1] for line in lines if line.startswith("OK ")} == {p.name.split(".")[0] for p in SCHEMA_DIR.glob("*.avsc")}


def test_addition_with_default_is_compatible(tmp_path: Path) -> None:
    """Scenario: v2 adds salesChannel with a default. We expect OK, and v1 data read as v2 to carry the default."""
    code, lines = _run(_schema_dir(tmp_path, _with(add=[SALES_CHANNEL])))
    assert code == 0 and "OK OrderPlaced v1..v2" in lines


def test_rename_through_aliases_is_compatible_and_fastavro_honours_it(tmp_path: Path) -> None:
    """Scenario: v2 renames customerId to customer with alias customerId. We expect OK; fastavro moves the value across."""
    v2 = _with(rename={"customerId": ("customer", ["customerId"])})
    code, lines = _run(_schema_dir(tmp_path, v2))
    assert code == 0 and "OK OrderPlaced v1..v2" in lines
    # The aliases are honoured by fastavro itself (not only by our rules): a v1 record read as v2.
    writer = parse_schema({"type": "record", "name": "R", "fields": [{"name": "customerId", "type": "string"}]})
    reader = parse_schema({"type": "record", "name": "R", "fields": [{"name": "customer", "type": "string", "aliases": ["customerId"]}]})
    buf = io.BytesIO()
    schemaless_writer(buf, writer, {"customerId": "c-42"})
    buf.seek(0)
    assert schemaless_reader(buf, writer, reader) == {"customer": "c-42"}


def test_rename_without_alias_names_the_field(tmp_path: Path) -> None:
    """Scenario: v2 renames customerId to customer, no alias. We expect one line naming field customer, v2 and v1."""
    code, lines = _run(_schema_dir(tmp_path, _with(rename={"customerId": ("customer", None)})))
    problems = [line for line in lines if line.startswith("INCOMPATIBLE")]
    assert code == 1
    assert problems == ["INCOMPATIBLE OrderPlaced: field customer: v2 cannot read v1: added without a default: the writer has no field customer"]


@pytest.mark.parametrize(
    "change,field,problem",
    [
        (_with(add=[NO_DEFAULT]), "salesChannel", "added without a default"),
        (_with(retype={"totalMinor": "int"}), "totalMinor", "type changed from long to int"),
        (_with(retype={"currency": ["null", "int"]}), "currency", "string is not among the reader's union[null, int]"),
    ],
    ids=["added-without-default", "long-to-int", "string-to-union-without-string"],
)
def test_incompatible_change_is_one_line(tmp_path: Path, change: dict[str, Any], field: str, problem: str) -> None:
    """Scenario: v2 makes one incompatible change. We expect exit 1 and exactly one line naming OrderPlaced, the field, v2 and v1."""
    code, lines = _run(_schema_dir(tmp_path, change))
    problems = [line for line in lines if line.startswith("INCOMPATIBLE")]
    assert code == 1
    assert len(problems) == 1
    assert problems[0].startswith(f"INCOMPATIBLE OrderPlaced: field {field}: v2 cannot read v1: {problem}")
    assert not any(line.startswith("OK OrderPlaced") for line in lines)
    assert "OK Envelope v1" in lines  # the other types are still reported


def test_nested_type_change_names_the_path(tmp_path: Path) -> None:
    """Scenario: v2 changes LineItem.quantity from int to string. We expect the field named items[].quantity."""
    v2 = copy.deepcopy(V1)
    _field(_field(v2, "items")["type"]["items"], "quantity")["type"] = "string"
    findings = check_dir(_schema_dir(tmp_path, v2))["OrderPlaced"]
    assert [(f.field, f.writer_version, f.reader_version) for f in findings] == [("items[].quantity", 1, 2)]


def test_a_problem_is_reported_once_and_transitive_ones_are_found(tmp_path: Path) -> None:
    """Scenario: v2 adds salesChannel with a default, v3 drops the default; v4 changes totalMinor to int.

    We expect v3's problem against v1 only (v3 reads v2 data), and v4's type change once (against v3), not once per older version.
    """
    v2 = _with(add=[SALES_CHANNEL])
    v3 = _with(add=[NO_DEFAULT])
    v4 = _with(add=[NO_DEFAULT], retype={"totalMinor": "int"})
    findings = check_dir(_schema_dir(tmp_path, v2, v3, v4))["OrderPlaced"]
    assert [(f.field, f.writer_version, f.reader_version) for f in findings] == [("salesChannel", 1, 3), ("totalMinor", 3, 4)]


def test_promotion_and_widening_to_a_union_are_compatible(tmp_path: Path) -> None:
    """Scenario: v2 promotes totalMinor long -> double and makes currency ["null", "string"]. We expect OK."""
    v2 = _with(retype={"totalMinor": "double", "currency": ["null", "string"]})
    assert check_dir(_schema_dir(tmp_path, v2))["OrderPlaced"] == []


def test_upcast_marked_breaking_change_is_allowed(tmp_path: Path) -> None:
    """Scenario: v2 adds salesChannel; v3 turns totalMinor into a Money record, marked rewind.upcastFrom 2; v4 adds a field with a default.

    We expect exit 0, one UPCAST line for v2 -> v3, and v4 checked against v3 only (its own shape).
    """
    money = {"type": "record", "name": "Money", "fields": [{"name": "amountMinor", "type": "long"}, {"name": "currency", "type": "string"}]}
    v2 = _with(add=[SALES_CHANNEL])
    v3 = _with(add=[SALES_CHANNEL], retype={"totalMinor": money}, props={UPCAST_MARKER: 2})
    v4 = _with(add=[SALES_CHANNEL, {"name": "note", "type": "string", "default": ""}], retype={"totalMinor": money})
    code, lines = _run(_schema_dir(tmp_path, v2, v3, v4))
    assert code == 0, lines
    assert [line for line in lines if "OrderPlaced" in line] == [
        f"UPCAST OrderPlaced v2 -> v3: upcaster ({UPCAST_MARKER} 2): not read by Avro resolution",
        "OK OrderPlaced v1..v4",
    ]


def test_upcast_marker_must_name_the_previous_version(tmp_path: Path) -> None:
    """Scenario: v3 says rewind.upcastFrom 1 (skipping v2). We expect an error line naming the marker."""
    v3 = _with(retype={"totalMinor": "int"}, props={UPCAST_MARKER: 1})
    code, lines = _run(_schema_dir(tmp_path, _with(), v3))
    assert code == 1
    assert f"INCOMPATIBLE OrderPlaced: record: v3 cannot read v1: {UPCAST_MARKER} must name the previous version (v2), not v1" in lines


@pytest.mark.parametrize(
    "reader_type,readable",
    [("long", True), ("double", True), ("int", False), ("string", False), (["null", "long"], True), (["null", "string"], False)],
)
def test_rules_agree_with_fastavro(reader_type: Any, readable: bool) -> None:
    """Scenario: a long field read as another type. We expect the rules to find a problem exactly when fastavro refuses to decode."""
    writer = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}
    reader = {"type": "record", "name": "R", "fields": [{"name": "x", "type": reader_type}]}
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(writer), {"x": 5})
    buf.seek(0)
    try:
        schemaless_reader(buf, parse_schema(writer), parse_schema(reader))
        decodes = True
    except Exception:
        decodes = False
    assert decodes is readable
    assert (check_pair("R", writer, reader, writer_version=1, reader_version=2) == []) is readable


def test_load_versions_writes_the_envelope_out() -> None:
    """Scenario: load the shipped schemas. We expect each event's writer schema to hold the Envelope record inline."""
    versions = load_versions()
    envelope = _field(versions["OrderPlaced"][0].writer_schema, "envelope")["type"]
    assert envelope["name"] == "Envelope" and envelope["namespace"] == "rewind.orders"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--registry", "not-a-url"], "invalid schema_registry_url (REWIND_SCHEMA_REGISTRY_URL)"),
        (["--dir", "/nonexistent/avro"], "schema directory /nonexistent/avro does not exist"),
        (["--timeout-s", "0"], "Invalid value for '--timeout-s'"),
    ],
    ids=["bad-url", "missing-dir", "bad-timeout"],
)
def test_bad_argument_is_one_line(args: list[str], message: str) -> None:
    """Scenario: `rewind schemas check` with a bad argument. We expect one line on stderr, nothing on stdout, a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k != "REWIND_SCHEMA_REGISTRY_URL"}
    result = subprocess.run([sys.executable, "-m", "scripts.cli", "schemas", "check", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
