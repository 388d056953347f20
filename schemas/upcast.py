"""Carries an event decoded with an old writer schema to the newest shape of its type, at decode.

A type's versions fall into major shapes, split where a version says
``"rewind.upcastFrom": N`` (see :mod:`schemas.compat`). From a writer version the chain is:

1. **resolve** to the newest version of the writer's shape, as Avro schema resolution
   defines it (the spec's "Schema Resolution"): a reader field missing from the writer
   takes its ``default``, a field renamed through ``aliases`` is read by its old name, a
   field only the writer has is dropped, ``int`` is promoted to ``long``/``float``/``double``;
2. **upcast** to the first version of the next shape with the registered function of
   :mod:`schemas.upcasters`;
3. repeat until the newest version of the type.

After each step ``envelope.schemaVersion`` names the version whose shape the event now
has, so a consumer sees only the newest shape and the newest version number. The newest
version has no chain at all: decoding it costs nothing more than before.

Resolution is a plan of plain dict operations, built once per (writer, reader) pair from
the parsed schemas. It covers records, arrays, maps and primitives; a pair that needs
anything else (unions, enums, fixed, a named type renamed by alias) is resolved by
fastavro itself (the event re-encoded with the writer schema and read with the reader's:
slow, but exact). At construction every plan is checked against fastavro on a sample
event and replaced by fastavro's resolution if the two differ.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from schemas.errors import ConfigError, UpcastError
from schemas.registry import EventSchema, SchemaRegistry
from schemas.upcasters import UPCASTERS, Upcaster, UpcastFieldError

__all__ = ["UpcastChains", "Step"]

#: One step of a chain: an event dict in one shape -> the event in the next (may reuse its input).
Step = Callable[[dict[str, Any]], dict[str, Any]]
_Resolve = Callable[[Any], Any]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class _Unsupported(Exception):
    """The plan builder does not handle this pair; fastavro resolves it."""


def _kind(schema: Any, names: dict[str, Any]) -> tuple[str, Any]:
    """(type name, schema dict or primitive name), named references looked up."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema, schema
        schema = names[schema]
    if isinstance(schema, list):
        return "union", schema
    kind = schema["type"]
    return (kind, kind) if kind in _PRIMITIVES else (kind, schema)


def _default_of(reader_type: Any, default: Any, names: dict[str, Any]) -> Any:
    kind, _ = _kind(reader_type, names)
    if kind == "bytes" and isinstance(default, str):
        return default.encode("latin-1")  # the spec writes a bytes default as a string of code points 0-255
    return default


def _plan(writer: Any, reader: Any, w_names: dict[str, Any], r_names: dict[str, Any]) -> _Resolve | None:
    """A function carrying a value of ``writer`` to ``reader``, or None when the value stays as it is."""
    w_kind, w = _kind(writer, w_names)
    r_kind, r = _kind(reader, r_names)
    if w_kind in _PRIMITIVES and r_kind in _PRIMITIVES:
        if w_kind == r_kind or (w_kind, r_kind) in (("int", "long"),):
            return None
        if r_kind in ("float", "double") and w_kind in ("int", "long", "float"):
            return float
        if (w_kind, r_kind) == ("string", "bytes"):
            return str.encode
        if (w_kind, r_kind) == ("bytes", "string"):
            return bytes.decode
        raise _Unsupported(f"{w_kind} -> {r_kind}")
    if w_kind == r_kind == "array":
        items = _plan(w["items"], r["items"], w_names, r_names)
        return None if items is None else (lambda values: [items(v) for v in values])
    if w_kind == r_kind == "map":
        values = _plan(w["values"], r["values"], w_names, r_names)
        return None if values is None else (lambda mapping: {k: values(v) for k, v in mapping.items()})
    if w_kind == r_kind == "record":
        if w["name"] != r["name"]:
            raise _Unsupported(f"record {w['name']} read as {r['name']}")
        return _record_plan(w, r, w_names, r_names)
    raise _Unsupported(f"{w_kind} -> {r_kind}")


def _record_plan(w: dict[str, Any], r: dict[str, Any], w_names: dict[str, Any], r_names: dict[str, Any]) -> _Resolve | None:
    writer_fields = {f["name"]: f for f in w["fields"]}
    # (reader name, writer name or None, value plan, default)
    fields: list[tuple[str, str | None, _Resolve | None, Any]] = []
    for field in r["fields"]:
        source = next((n for n in (field["name"], *field.get("aliases", ())) if n in writer_fields), None)
        if source is None:
            if "default" not in field:
                raise _Unsupported(f"{field['name']} has neither a writer field nor a default")  # compat rejects this
            fields.append((field["name"], None, None, _default_of(field["type"], field["default"], r_names)))
        else:
            fields.append((field["name"], source, _plan(writer_fields[source]["type"], field["type"], w_names, r_names), None))
    if [f["name"] for f in w["fields"]] == [name for name, _, _, _ in fields] and all(
        source == name and plan is None for name, source, plan, _ in fields
    ):
        return None  # same fields, same types: the decoded dict already has the reader's shape
    planned = tuple(fields)

    def resolve(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, source, plan, default in planned:
            if source is None:
                out[name] = copy.deepcopy(default) if isinstance(default, (dict, list)) else default
            else:
                value = record[source]
                out[name] = value if plan is None else plan(value)
        return out

    return resolve


def _fastavro_resolution(writer: EventSchema, reader: EventSchema) -> _Resolve:
    """Exact and slow: write with the writer schema, read with the reader's."""

    def resolve(event: Any) -> Any:
        buf = BytesIO()
        schemaless_writer(buf, writer.parsed, event)
        buf.seek(0)
        return schemaless_reader(buf, writer.parsed, reader.parsed)

    return resolve


def _sample(schema: Any, names: dict[str, Any], depth: int = 0) -> Any:
    """A value of ``schema`` with every field filled (two items per array), to check a plan against fastavro."""
    kind, s = _kind(schema, names)
    samples: dict[str, Any] = {"null": None, "boolean": True, "int": 300, "long": 1_700_000_123_456,
                               "float": 1.5, "double": 2.25, "bytes": b"\x00\xff", "string": f"é-sample-{depth}"}
    if kind in samples:
        return samples[kind]
    if kind == "record":
        return {f["name"]: _sample(f["type"], names, depth + 1) for f in s["fields"]}
    if kind == "array":
        return [_sample(s["items"], names, depth + 1) for _ in range(2)]
    if kind == "map":
        return {"k1": _sample(s["values"], names, depth + 1)}
    if kind == "enum":
        return s["symbols"][0]
    if kind == "fixed":
        return b"\x01" * s["size"]
    if kind == "union":
        return _sample(s[-1], names, depth + 1)
    raise _Unsupported(kind)


def _resolution(writer: EventSchema, reader: EventSchema) -> _Resolve:
    """The cheapest function that agrees with fastavro's resolution of ``writer`` data to ``reader``.

    Raises :class:`ConfigError` when fastavro cannot resolve a sample of ``writer`` to ``reader``
    at all (a breaking change without its ``rewind.upcastFrom`` marker): refused at start-up,
    not at the first old event.
    """
    exact = _fastavro_resolution(writer, reader)
    w_names = dict(writer.parsed.get("__named_schemas", {}))
    r_names = dict(reader.parsed.get("__named_schemas", {}))
    step = f"{writer.event_type} v{writer.version} -> v{reader.version}"
    try:
        sample = _sample(writer.parsed, w_names)
    except (_Unsupported, KeyError):
        return _guarded(exact, step)
    try:
        expected = exact(copy.deepcopy(sample))
    except Exception as exc:  # fastavro raises SchemaResolutionError and others
        raise ConfigError(f"{step} is not resolvable by Avro rules ({type(exc).__name__}: {exc}); "
                          "a breaking change needs \"rewind.upcastFrom\" and an upcaster in schemas/upcasters.py") from exc
    try:
        plan = _plan(writer.parsed, reader.parsed, w_names, r_names)
    except (_Unsupported, KeyError):
        return _guarded(exact, step)
    if plan is None:
        return (lambda event: event) if sample == expected else _guarded(exact, step)
    return plan if plan(copy.deepcopy(sample)) == expected else _guarded(exact, step)


def _guarded(resolve: _Resolve, step: str) -> _Resolve:
    """``resolve`` with any failure turned into an UpcastError naming the step (a dead letter, not a crash)."""

    def run(event: Any) -> Any:
        try:
            return resolve(event)
        except Exception as exc:  # fastavro's resolution of a datum the sample did not cover
            raise UpcastError(f"resolving {step} failed: {type(exc).__name__}: {exc}") from exc

    return run


def _versioned(step: Callable[[dict[str, Any]], dict[str, Any]], version: int) -> Step:
    def run(event: dict[str, Any]) -> dict[str, Any]:
        out = step(event)
        out["envelope"]["schemaVersion"] = version
        return out

    return run


def _upcast_step(schema: EventSchema, target: EventSchema, fn: Upcaster) -> Step:
    where = f"upcaster {schema.event_type} v{schema.version} -> v{target.version} ({fn.__name__})"

    def run(event: dict[str, Any]) -> dict[str, Any]:
        try:
            out = fn(event)
        except UpcastFieldError as exc:
            raise UpcastError(f"{where} refused field {exc.field}: {exc.problem}") from exc
        except KeyError as exc:
            raise UpcastError(f"{where} failed at field {exc.args[0] if exc.args else '?'}: KeyError (missing)") from exc
        except Exception as exc:  # an upcaster bug: dead-letter the event, never crash the pipeline
            raise UpcastError(f"{where} raised {type(exc).__name__}: {exc}") from exc
        envelope = out.get("envelope") if isinstance(out, dict) else None
        if not isinstance(envelope, dict):  # a forgotten return, a dropped envelope: a bug, but never a crash
            raise UpcastError(f"{where} returned {type(out).__name__}" + (" without an envelope" if isinstance(out, dict) else "") +
                              ", not an event")
        envelope["schemaVersion"] = target.version
        return out

    return run


def _compose(steps: list[Step]) -> Step:
    if len(steps) == 1:
        return steps[0]

    def run(event: dict[str, Any]) -> dict[str, Any]:
        for step in steps:
            event = step(event)
        return event

    return run


class UpcastChains:
    """Per writer schema (by fingerprint), the chain of steps to the newest shape of its type.

    Raises :class:`ConfigError` at construction when a ``rewind.upcastFrom`` marker does not
    name the previous version, or names a step no upcaster is registered for.
    """

    def __init__(self, registry: SchemaRegistry, upcasters: dict[tuple[str, int], Upcaster] | None = None) -> None:
        upcasters = UPCASTERS if upcasters is None else upcasters
        self._chains: dict[bytes, Step] = {}
        types = {s.event_type for s in registry.all()}
        for event_type in sorted(types):
            versions = registry.versions(event_type)
            for k, schema in enumerate(versions):
                if schema.upcast_from is not None and (k == 0 or schema.upcast_from != versions[k - 1].version):
                    raise ConfigError(f"{event_type} v{schema.version}: rewind.upcastFrom {schema.upcast_from} must be the previous version")
                if schema.upcast_from is not None and (event_type, schema.upcast_from) not in upcasters:
                    raise ConfigError(f"{event_type} v{schema.upcast_from} -> v{schema.version}: no upcaster registered in schemas/upcasters.py")
            for k, schema in enumerate(versions[:-1]):
                self._chains[schema.fingerprint] = _compose(self._steps(versions, k, upcasters))

    @staticmethod
    def _steps(versions: list[EventSchema], start: int, upcasters: dict[tuple[str, int], Upcaster]) -> list[Step]:
        steps: list[Step] = []
        k = start
        while k < len(versions) - 1:
            end = k
            while end + 1 < len(versions) and versions[end + 1].upcast_from is None:
                end += 1
            if end > k:  # Step 1: resolve to the newest version of this shape
                steps.append(_versioned(_resolution(versions[k], versions[end]), versions[end].version))
                k = end
            if k < len(versions) - 1:  # Step 2: the upcaster into the next shape
                target = versions[k + 1]
                steps.append(_upcast_step(versions[k], target, upcasters[(target.event_type, versions[k].version)]))
                k += 1
        return steps

    def chain(self, fingerprint: bytes) -> Step | None:
        """The chain for the writer schema of ``fingerprint``; None for a type's newest version (nothing to do)."""
        return self._chains.get(fingerprint)

    def upcast(self, schema: EventSchema, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` (decoded with ``schema``) in the newest shape of its type; UpcastError if an upcaster refuses it."""
        chain = self._chains.get(schema.fingerprint)
        return event if chain is None else chain(event)
