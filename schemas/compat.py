"""Schema evolution check: can each version of an event type read the data of every earlier one?

A replay from offset zero reads every event ever written, so the reader schema of
today must resolve (Avro schema resolution, the spec's "Schema Resolution" section)
the writer schema of every earlier version, not only the previous one: the
transitive form of BACKWARD compatibility.

How a pair (writer = an older version's full writer schema, reader = a newer one)
is checked, in two independent ways:

1. **Rules**, walking both parsed schemas (records nested like the Envelope,
   arrays, maps, unions, enums, fixed) as the spec resolves them, so that a problem
   names its field: a reader field with no writer field (by name or by one of the
   reader field's ``aliases``) and no ``default``; a type that neither matches nor
   is a promotion (int -> long/float/double, long -> float/double, float ->
   double, string <-> bytes); a named type whose fullname is neither the
   writer's nor among the reader's ``aliases``; an enum symbol dropped without an
   enum ``default``; a fixed of another size; a writer union branch with no
   reader branch. A field only the writer has is skipped (allowed).
2. **Decoding**: a sample datum per union branch is written with the writer
   schema and read with fastavro's ``schemaless_reader(..., reader_schema)``,
   which honours field and record aliases. A failure the rules did not explain
   is reported too (field ``?``), so the rules can never hide a real failure.

Every pair (vI, vJ) with I < J is checked, readers oldest first and, for each,
writers newest first; a problem (field and what is wrong) is reported once, at the
first pair that shows it, so a change made in v3 is one line "v3 cannot read v2"
even though v3 cannot read v1 either.

**A breaking change with an upcaster.** A version may declare itself a new major
shape by a top-level property in its ``.avsc`` file::

    {"type": "record", "name": "OrderPlaced", "rewind.upcastFrom": 2, ...}   # in OrderPlaced.v3.avsc

meaning "v3 is not resolvable from v2 by Avro rules; an upcaster v2 -> v3
(``schemas/upcasters.py``) takes over". ``N`` must be the previous version. The
versions before the marker are then checked among themselves only (data of v1
is read as v2, then upcast), and the boundary is reported as a finding of kind
``"upcast"``, not an error. In a registry, each major shape has its own subject
(see :func:`schemas.registry_client.subject_name`), so the registry's transitive
rule never compares two shapes either.

``Envelope`` is checked like an event type; note that every event version's
full writer schema embeds the newest Envelope (as :mod:`schemas.registry` builds it).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema, to_parsing_canonical_form

from schemas.errors import ConfigError
from schemas.registry import ENVELOPE, SCHEMA_DIR, full_writer_schema, strip_logical_types

__all__ = [
    "UPCAST_MARKER",
    "Finding",
    "FindingKind",
    "SchemaVersion",
    "load_versions",
    "check_pair",
    "check_versions",
    "check_dir",
    "canonical_form",
    "iter_errors",
]

#: The top-level .avsc property that declares a new major shape reached by an upcaster.
UPCAST_MARKER = "rewind.upcastFrom"
FindingKind = Literal["incompatible", "upcast"]

_FILE_RE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
    ("float", "double"), ("string", "bytes"), ("bytes", "string"),
}


@dataclass(frozen=True)
class Finding:
    """One problem (or one upcast boundary) between an older writer version and a newer reader version.

    ``field`` is a path from the event record: ``salesChannel``, ``envelope.seq``,
    ``items[].sku`` (array items), ``attrs{}`` (map values), ``""`` for the record itself,
    ``?`` when only decoding failed. ``writer_version`` is None for a registered schema
    that matches no file in ``schemas/avro``; ``registry_version`` is the subject's
    version number when the writer schema came from a registry.
    """

    event_type: str
    field: str
    writer_version: int | None
    reader_version: int
    problem: str
    kind: FindingKind = "incompatible"
    registry_version: int | None = None
    subject: str | None = None

    def line(self) -> str:
        """The one-line report: type, field, the two versions, what is wrong."""
        if self.kind == "upcast":
            return f"{self.event_type} v{self.writer_version} -> v{self.reader_version}: {self.problem}"
        writer = f"v{self.writer_version}" if self.writer_version is not None else "an unknown schema"
        if self.registry_version is not None:
            writer = f"registered version {self.registry_version} of {self.subject} ({writer})"
        where = f"field {self.field}" if self.field else "record"
        return f"{self.event_type}: {where}: v{self.reader_version} cannot read {writer}: {self.problem}"


@dataclass(frozen=True)
class SchemaVersion:
    """One ``<Type>.v<N>.avsc`` file: its self-contained writer schema (Envelope written out) and its marker."""

    event_type: str
    version: int
    writer_schema: dict[str, Any]
    upcast_from: int | None
    path: Path

    @property
    def fullname(self) -> str:
        ns = self.writer_schema.get("namespace", "")
        return f"{ns}.{self.event_type}" if ns else self.event_type

    def schema_str(self) -> str:
        """The schema as JSON text, as it is registered (the marker property included)."""
        return json.dumps(self.writer_schema)


def canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of a self-contained schema (JSON value or text), to compare two schemas."""
    return str(to_parsing_canonical_form(parse_schema(json.loads(schema) if isinstance(schema, str) else schema)))


def load_versions(schema_dir: Path = SCHEMA_DIR) -> dict[str, list[SchemaVersion]]:
    """Every version of every type in ``schema_dir`` (Envelope included), oldest first; ConfigError on a bad file."""
    docs: dict[str, dict[int, tuple[Path, dict[str, Any]]]] = {}
    if not schema_dir.is_dir():
        raise ConfigError(f"schema directory {schema_dir} does not exist")
    for path in sorted(schema_dir.glob("*.avsc")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise ConfigError(f"schema file name must be <Name>.v<N>.avsc: {path}")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable JSON schema: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("name") != match["name"]:
            raise ConfigError(f"{path}: record name {doc.get('name') if isinstance(doc, dict) else None!r} does not match the file name")
        docs.setdefault(match["name"], {})[int(match["version"])] = (path, doc)
    if ENVELOPE not in docs:
        raise ConfigError(f"no {ENVELOPE}.v<N>.avsc in {schema_dir}")
    envelope = docs[ENVELOPE][max(docs[ENVELOPE])][1]
    env_full = f"{envelope['namespace']}.{ENVELOPE}" if envelope.get("namespace") else ENVELOPE
    out: dict[str, list[SchemaVersion]] = {}
    for name, by_version in docs.items():
        for version in sorted(by_version):
            path, doc = by_version[version]
            writer = doc if name == ENVELOPE else full_writer_schema(doc, {env_full: envelope})
            marker = doc.get(UPCAST_MARKER)
            if marker is not None and (not isinstance(marker, int) or isinstance(marker, bool)):
                raise ConfigError(f"{path}: {UPCAST_MARKER} must be an integer version, not {marker!r}")
            try:
                parse_schema(writer)
            except Exception as exc:  # fastavro raises several types (SchemaParseException, UnknownType, ...)
                raise ConfigError(f"{path}: not a valid Avro schema: {exc}") from exc
            out.setdefault(name, []).append(SchemaVersion(name, version, writer, marker, path))
    return out


# --- rules -----------------------------------------------------------------------------------------


class _Walk:
    """Resolves one writer schema against one reader schema, collecting (field path, problem)."""

    def __init__(self, writer: Any, reader: Any) -> None:
        self.w_names: dict[str, Any] = writer.get("__named_schemas", {}) if isinstance(writer, dict) else {}
        self.r_names: dict[str, Any] = reader.get("__named_schemas", {}) if isinstance(reader, dict) else {}
        self.seen: set[tuple[str, str]] = set()
        self.problems: list[tuple[str, str]] = []

    def node(self, schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return names.get(schema, schema)
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"]  # {"type": "string", "logicalType": ...}: resolution ignores logical types
        return schema

    @staticmethod
    def describe(schema: Any) -> str:
        if isinstance(schema, str):
            return schema
        if isinstance(schema, list):
            return "union[" + ", ".join(_Walk.describe(b) for b in schema) + "]"
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return f"{kind} {schema['name']}"
        if kind == "array":
            return f"array<{_Walk.describe(schema['items'])}>"
        if kind == "map":
            return f"map<{_Walk.describe(schema['values'])}>"
        return str(kind)

    @staticmethod
    def _names_match(w: dict[str, Any], r: dict[str, Any]) -> bool:
        r_full: str = r["name"]
        namespace = r_full.rpartition(".")[0]
        aliases = {a if "." in a or not namespace else f"{namespace}.{a}" for a in r.get("aliases", [])}
        return bool(w["name"] == r_full or w["name"] in aliases)

    def matches(self, w: Any, r: Any) -> bool:
        """Whether ``w`` may be read as ``r`` at all (the spec's first test; the contents are checked after)."""
        if isinstance(w, str) or isinstance(r, str):
            return isinstance(w, str) and isinstance(r, str) and (w == r or (w, r) in _PROMOTIONS)
        if isinstance(w, list) or isinstance(r, list):
            return False
        kind = w.get("type")
        if kind != r.get("type"):
            return kind in ("record", "error") and r.get("type") in ("record", "error") and self._names_match(w, r)
        if kind in ("record", "error", "enum", "fixed"):
            return self._names_match(w, r)
        return True  # array, map

    def resolve(self, w_schema: Any, r_schema: Any, path: str) -> None:
        w, r = self.node(w_schema, self.w_names), self.node(r_schema, self.r_names)
        if isinstance(w, list):  # writer union: every branch must be readable
            for branch in w:
                self.resolve(branch, r_schema, path)
            return
        if isinstance(r, list):  # reader union: the first branch that matches
            choice = next((b for b in r if self.matches(w, self.node(b, self.r_names))), None)
            if choice is None:
                self.problems.append((path, f"{self.describe(w)} is not among the reader's {self.describe(r)}"))
            else:
                self.resolve(w_schema, choice, path)
            return
        if not self.matches(w, r):
            self.problems.append((path, f"type changed from {self.describe(w)} to {self.describe(r)}"))
            return
        if isinstance(w, str):
            return
        kind = w["type"]
        if kind in ("record", "error"):
            self.record(w, r, path)
        elif kind == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.problems.append((path, f"enum {r['name']} lost symbol(s) {', '.join(missing)} and has no default"))
        elif kind == "fixed" and w["size"] != r["size"]:
            self.problems.append((path, f"fixed {r['name']} size changed from {w['size']} to {r['size']}"))
        elif kind == "array":
            self.resolve(w["items"], r["items"], f"{path}[]")
        elif kind == "map":
            self.resolve(w["values"], r["values"], f"{path}{{}}")

    def record(self, w: dict[str, Any], r: dict[str, Any], path: str) -> None:
        if (w["name"], r["name"]) in self.seen:
            return  # a recursive type: already being resolved
        self.seen.add((w["name"], r["name"]))
        by_name = {f["name"]: f for f in w["fields"]}
        for field in r["fields"]:
            here = f"{path}.{field['name']}" if path else field["name"]
            names = [field["name"], *field.get("aliases", [])]
            source = next((by_name[n] for n in names if n in by_name), None)
            if source is not None:
                self.resolve(source["type"], field["type"], here)
            elif "default" not in field:
                tried = f" (nor any of its aliases {', '.join(names[1:])})" if len(names) > 1 else ""
                self.problems.append((here, f"added without a default: the writer has no field {field['name']}{tried}"))


# --- decoding cross-check --------------------------------------------------------------------------


def _sample(schema: Any, names: dict[str, Any], branch: int, depth: int = 0) -> Any:
    """A datum of ``schema``; ``branch`` picks each union's branch (modulo its width)."""
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        schema = names[schema]
    if isinstance(schema, list):
        pick = schema[branch % len(schema)] if depth < 8 else next((b for b in schema if b == "null"), schema[0])
        return _sample(pick, names, branch, depth + 1)
    kind = schema.get("type") if isinstance(schema, dict) else schema
    if isinstance(kind, (dict, list)):
        return _sample(kind, names, branch, depth)
    simple = {"null": None, "boolean": True, "int": 7, "long": 7, "float": 1.5, "double": 1.5, "bytes": b"x", "string": "s"}
    if kind in simple:
        return simple[kind]
    if kind in ("record", "error"):
        return {f["name"]: _sample(f["type"], names, branch, depth + 1) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][branch % len(schema["symbols"])]
    if kind == "fixed":
        return b"\0" * schema["size"]
    if kind == "array":
        return [] if depth >= 8 else [_sample(schema["items"], names, branch, depth + 1)]
    if kind == "map":
        return {} if depth >= 8 else {"k": _sample(schema["values"], names, branch, depth + 1)}
    raise ValueError(f"cannot make a sample of {schema!r}")


def _widest(schema: Any, names: dict[str, Any], seen: set[str]) -> int:
    if isinstance(schema, str):
        if schema in _PRIMITIVES or schema in seen or schema not in names:
            return 1
        seen.add(schema)
        schema = names[schema]
    if isinstance(schema, list):
        return max([len(schema), *(_widest(b, names, seen) for b in schema)])
    if not isinstance(schema, dict):
        return 1
    if schema.get("type") in ("record", "error"):
        seen.add(schema["name"])
        return max([1, *(_widest(f["type"], names, seen) for f in schema["fields"])])
    if schema.get("type") == "enum":
        return len(schema["symbols"])
    inner = schema.get("items", schema.get("values", schema.get("type")))
    return _widest(inner, names, seen) if isinstance(inner, (dict, list)) or inner not in _PRIMITIVES else 1


def _decode_failure(writer: Any, reader: Any) -> str | None:
    """The first error fastavro raises reading samples written with ``writer`` as ``reader``; None if all decode."""
    names = writer.get("__named_schemas", {})
    for branch in range(min(_widest(writer, names, set()), 16)):
        buf = io.BytesIO()
        schemaless_writer(buf, writer, _sample(writer, names, branch))
        buf.seek(0)
        try:
            schemaless_reader(buf, writer, reader)
        except Exception as exc:  # SchemaResolutionError, or a decode error on a bad promotion
            return f"{type(exc).__name__}: {exc}"
    return None


# --- the check -------------------------------------------------------------------------------------


def check_pair(event_type: str, writer: Any, reader: Any, *, writer_version: int | None, reader_version: int) -> list[Finding]:
    """Problems reading data written with ``writer`` (a self-contained schema) using ``reader``: rules, then decoding."""
    # Logical types stripped: fastavro would otherwise validate the samples against them (a uuid string).
    w_parsed, r_parsed = parse_schema(strip_logical_types(writer)), parse_schema(strip_logical_types(reader))
    walk = _Walk(w_parsed, r_parsed)
    walk.resolve(w_parsed, r_parsed, "")
    findings = [Finding(event_type, path, writer_version, reader_version, problem) for path, problem in walk.problems]
    if not findings:
        failure = _decode_failure(w_parsed, r_parsed)
        if failure is not None:
            findings.append(Finding(event_type, "?", writer_version, reader_version, f"fastavro cannot decode it: {failure}"))
    return findings


def check_versions(versions: list[SchemaVersion]) -> list[Finding]:
    """Every reader version against every earlier writer version of one type (oldest first), upcast boundaries honoured."""
    findings: list[Finding] = []
    reported: set[tuple[str, str]] = set()  # (field, problem): one line per problem, at its first pair
    for j, reader in enumerate(versions):
        if reader.upcast_from is not None:
            previous = versions[j - 1].version if j else None
            if reader.upcast_from != previous or previous is None:
                findings.append(Finding(reader.event_type, "", reader.upcast_from, reader.version,
                                        f"{UPCAST_MARKER} must name the previous version (v{previous}), not v{reader.upcast_from}"))
            else:
                findings.append(Finding(reader.event_type, "", previous, reader.version,
                                        f"upcaster ({UPCAST_MARKER} {previous}): not read by Avro resolution", kind="upcast"))
        era_start = max((k for k in range(j + 1) if versions[k].upcast_from is not None), default=0)
        for writer in reversed(versions[era_start:j]):
            for found in check_pair(reader.event_type, writer.writer_schema, reader.writer_schema,
                                    writer_version=writer.version, reader_version=reader.version):
                key = (found.field, found.problem)
                if key not in reported:
                    reported.add(key)
                    findings.append(found)
    return findings


def check_dir(schema_dir: Path = SCHEMA_DIR) -> dict[str, list[Finding]]:
    """Findings per type (every type of ``schema_dir``, an empty list when all is well)."""
    return {name: check_versions(versions) for name, versions in load_versions(schema_dir).items()}


def iter_errors(findings: dict[str, list[Finding]]) -> Iterator[Finding]:
    """The findings that fail the check (kind ``incompatible``)."""
    for per_type in findings.values():
        yield from (f for f in per_type if f.kind == "incompatible")
