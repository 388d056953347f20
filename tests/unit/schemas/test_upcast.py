"""Upcasting at decode (:mod:`schemas.upcast`): an event written with an old schema reaches the newest shape of its type.

The oracles are independent of the code under test: fastavro's own schema resolution
(``schemaless_writer`` with the writer schema, ``schemaless_reader(writer, reader)``) for the
resolution steps, and events written out by hand from the ``.avsc`` files for the upcaster.
Schemas that must differ from the shipped ones are copies in a temporary directory, read
with :func:`schemas.registry.build_registry`.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.upcast as upcast_module
from pipelines.kernel import process_record
from pipelines.projections import get_projection
from schemas.codec import EventCodec
from schemas.errors import CodecError, ConfigError, UpcastError
from schemas.fast_decode import FastDecoder
from schemas.registry import SCHEMA_DIR, EventSchema, SchemaRegistry, build_registry
from schemas.upcast import UpcastChains
from schemas.upcasters import UPCASTERS, Upcaster
from scripts.workload import WorkloadConfig, generate

CODEC = EventCodec()
FAST = FastDecoder(CODEC)
REGISTRY = CODEC.registry
Decode = Callable[[bytes], dict[str, Any]]
DECODERS: dict[str, Decode] = {"codec": CODEC.decode, "fast": FAST.decode}

# --- strategies, derived from the schemas themselves -------------------------------------------

text = st.text(max_size=12)
INT = st.integers(-(2**31), 2**31 - 1)
LONG = st.integers(-(2**63), 2**63 - 1)
ISO_CURRENCY = st.from_regex(r"[A-Z]{3}", fullmatch=True)
NOT_ISO_CURRENCY = st.one_of(st.sampled_from(["eur", "EURO", "E", "", "€UR", "EU1", "EUR\n"]), text).filter(
    lambda s: re.fullmatch(r"[A-Z]{3}", s) is None
)


def value_of(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value of ``schema`` (records, arrays, strings, ints, longs: the types the event schemas use)."""
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "string":
        return text
    if kind == "int":
        return INT
    if kind == "long":
        return LONG
    if kind == "array":
        return st.lists(value_of(schema["items"], named), max_size=3)
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: value_of(f["type"], named) for f in schema["fields"]})
    raise NotImplementedError(f"no strategy for Avro type {kind!r}: extend value_of")


def event_of(schema: EventSchema, **payload: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Any event written with ``schema`` (its envelope names it); ``payload`` overrides top-level fields."""
    named = dict(schema.parsed.get("__named_schemas", {}))
    fields = {f["name"]: payload.get(f["name"], value_of(f["type"], named)) for f in schema.parsed["fields"]}
    pinned = {"eventType": schema.event_type, "schemaVersion": schema.version}
    return st.fixed_dictionaries(fields).map(lambda event: {**event, "envelope": event["envelope"] | pinned})


def outcome(decode: Decode, data: bytes) -> Any:
    """The event, or (error class, message): what a consumer of ``decode`` sees."""
    try:
        return decode(data)
    except CodecError as exc:
        return (type(exc).__name__, str(exc))


# --- hand-written events and their expected newest shapes ---------------------------------------

ITEMS = [{"sku": "SKU-1", "quantity": 2, "unitPriceMinor": 650}, {"sku": "SKU-2", "quantity": 1, "unitPriceMinor": 1}]


def envelope(event_type: str, version: int) -> dict[str, Any]:
    return {"eventId": "e-1", "eventType": event_type, "schemaVersion": version, "orderId": "o-1", "seq": 1,
            "occurredAt": 1_700_000_000_000, "correlationId": "c-1", "causationId": "cmd-1"}


def order_placed(version: int, *, currency: str = "EUR", sales_channel: str = "app") -> dict[str, Any]:
    """OrderPlaced as written with ``version`` 1 or 2 (``sales_channel`` only exists in v2)."""
    event = {"envelope": envelope("OrderPlaced", version), "customerId": "cust-1", "items": copy.deepcopy(ITEMS),
             "totalMinor": 1301, "currency": currency}
    return event | {"salesChannel": sales_channel} if version == 2 else event


def expected_v3(written: dict[str, Any]) -> dict[str, Any]:
    """What an OrderPlaced v1/v2 must read as in v3's shape, from OrderPlaced.v2/v3.avsc (written out, not computed by the chain)."""
    return {
        "envelope": written["envelope"] | {"schemaVersion": 3},
        "customerId": written["customerId"],
        "items": written["items"],
        "total": {"amountMinor": written["totalMinor"], "currency": written["currency"]},
        "salesChannel": written.get("salesChannel", "unknown"),
    }


def schema_dir(into: Path, *, edit: dict[str, Callable[[dict[str, Any]], None]] | None = None,
               only: set[str] | None = None, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """A copy of the shipped .avsc files in ``into`` (``only`` those names), each of ``edit`` changed in place, ``extra`` added."""
    into.mkdir(parents=True, exist_ok=True)
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        if only is None or path.name in only:
            shutil.copy(path, into / path.name)
    for name, change in (edit or {}).items():
        doc = json.loads((into / name).read_text())
        change(doc)
        (into / name).write_text(json.dumps(doc))
    for name, doc in (extra or {}).items():
        (into / name).write_text(json.dumps(doc))
    return into


@pytest.fixture(scope="module")
def resolution_only(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    """OrderPlaced v1, v2 and PaymentAuthorized v1, v2 alone: each v1's chain is the resolution step only."""
    names = {"Envelope.v1.avsc", "OrderPlaced.v1.avsc", "OrderPlaced.v2.avsc", "PaymentAuthorized.v1.avsc", "PaymentAuthorized.v2.avsc"}
    return build_registry(schema_dir(tmp_path_factory.mktemp("schemas"), only=names))


@pytest.fixture(scope="module")
def resolution_chains(resolution_only: SchemaRegistry) -> UpcastChains:
    """The chains of :func:`resolution_only` (no upcasters: it has no rewind.upcastFrom marker)."""
    return UpcastChains(resolution_only, {})


def fastavro_resolution(writer: EventSchema, reader: EventSchema, event: dict[str, Any]) -> dict[str, Any]:
    """The oracle: ``event`` written with ``writer`` by fastavro and read back with ``reader`` by fastavro."""
    buf = BytesIO()
    schemaless_writer(buf, writer.parsed, event)
    buf.seek(0)
    resolved: dict[str, Any] = schemaless_reader(buf, writer.parsed, reader.parsed)  # type: ignore[assignment]  # a record reads as a dict
    return resolved


def written(schema: EventSchema, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as the decoder hands it to the chain: written and read back with ``schema``."""
    buf = BytesIO()
    schemaless_writer(buf, schema.parsed, event)
    buf.seek(0)
    decoded: dict[str, Any] = schemaless_reader(buf, schema.parsed, None)  # type: ignore[assignment]  # a record reads as a dict
    return decoded


# --- 1. resolution steps agree with fastavro ----------------------------------------------------

PAIRS = [("OrderPlaced", 1, 2), ("PaymentAuthorized", 1, 2)]


@pytest.mark.parametrize(("event_type", "writer_version", "reader_version"), PAIRS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_resolution_agrees_with_fastavro(resolution_only: SchemaRegistry, resolution_chains: UpcastChains, event_type: str,
                                         writer_version: int, reader_version: int, data: st.DataObject) -> None:
    """Scenario: any event of the older version, carried to the newer by the chain's resolution step.
    We expect exactly what fastavro's own resolution reads, with envelope.schemaVersion naming the newer version."""
    writer, reader = resolution_only.get(event_type, writer_version), resolution_only.get(event_type, reader_version)
    event = data.draw(event_of(writer))
    expected = fastavro_resolution(writer, reader, event)
    expected["envelope"]["schemaVersion"] = reader.version
    chain = resolution_chains.chain(writer.fingerprint)
    assert chain is not None
    assert chain(written(writer, event)) == expected


def test_resolution_is_the_plan_not_fastavro(resolution_only: SchemaRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario: fastavro made unusable in schemas.upcast after the chains are built. We expect the resolution steps
    to run all the same: the plan (plain dict operations) is what decodes, so the test above tests the plan, not fastavro against itself."""
    chains = UpcastChains(resolution_only, {})

    def unusable(*args: object, **kwargs: object) -> None:
        raise AssertionError("fastavro called at decode: the plan was replaced by fastavro's resolution")

    monkeypatch.setattr(upcast_module, "schemaless_reader", unusable)
    monkeypatch.setattr(upcast_module, "schemaless_writer", unusable)
    placed = chains.chain(resolution_only.get("OrderPlaced", 1).fingerprint)
    paid = chains.chain(resolution_only.get("PaymentAuthorized", 1).fingerprint)
    assert placed is not None and paid is not None
    assert placed(order_placed(1))["salesChannel"] == "unknown"
    assert paid({"envelope": envelope("PaymentAuthorized", 1), "paymentId": "p", "amountMinor": 5, "currency": "EUR"})["authorizedMinor"] == 5


# --- 2. old versions decode to the newest shape -------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("version", [1, 2])
def test_old_order_placed_decodes_to_v3(decoder: str, version: int) -> None:
    """Scenario: an OrderPlaced written as v1 (no salesChannel) and as v2 (salesChannel "app"). We expect v3's shape:
    total = Money{totalMinor, currency}, salesChannel "unknown" for v1 and as written for v2, items unchanged, schemaVersion 3;
    and the result is a valid v3 event (it encodes with v3's schema and decode_written gives it back)."""
    event = order_placed(version)
    data = CODEC.encode(copy.deepcopy(event))
    assert CODEC.decode_written(data)[0].version == version
    got = DECODERS[decoder](data)
    assert got == {
        "envelope": envelope("OrderPlaced", 3),
        "customerId": "cust-1",
        "items": ITEMS,
        "total": {"amountMinor": 1301, "currency": "EUR"},
        "salesChannel": "unknown" if version == 1 else "app",
    }
    assert "totalMinor" not in got and "currency" not in got
    assert CODEC.upcasts.upcast(REGISTRY.get("OrderPlaced", version), copy.deepcopy(event)) == got
    schema, again = CODEC.decode_written(CODEC.encode(got))
    assert schema is REGISTRY.get("OrderPlaced", 3)
    assert again == got


@pytest.mark.parametrize("decoder", DECODERS)
def test_payment_authorized_v1_reads_amount_as_authorized(decoder: str) -> None:
    """Scenario: a PaymentAuthorized written as v1 (amountMinor). We expect v2's shape: authorizedMinor = amountMinor, no amountMinor key."""
    v1 = {"envelope": envelope("PaymentAuthorized", 1), "paymentId": "pay-1", "amountMinor": 4_200, "currency": "EUR"}
    got = DECODERS[decoder](CODEC.encode(v1))
    assert got == {"envelope": envelope("PaymentAuthorized", 2), "paymentId": "pay-1", "authorizedMinor": 4_200, "currency": "EUR"}
    assert "amountMinor" not in got
    assert CODEC.decode_written(CODEC.encode(got)) == (REGISTRY.get("PaymentAuthorized", 2), got)


def test_only_old_versions_have_a_chain() -> None:
    """Scenario: every shipped schema. We expect a chain for every version but its type's newest, and none for the newest."""
    newest = {s.fingerprint for s in REGISTRY.latest()}
    assert {(s.event_type, s.version) for s in REGISTRY.all() if CODEC.upcasts.chain(s.fingerprint) is not None} == {
        ("OrderPlaced", 1), ("OrderPlaced", 2), ("PaymentAuthorized", 1)
    }
    assert all(CODEC.upcasts.chain(fp) is None for fp in newest)


@settings(max_examples=300, deadline=None)
@given(event=st.one_of([event_of(s) for s in REGISTRY.latest()]))
def test_newest_versions_decode_to_exactly_what_was_encoded(event: dict[str, Any]) -> None:
    """Scenario: any event of any type's newest version. We expect both decoders to give it back as encoded, untouched by any chain."""
    data = CODEC.encode(copy.deepcopy(event))
    assert CODEC.decode(data) == event
    assert FAST.decode(data) == event


@settings(max_examples=300, deadline=None)
@given(event=st.one_of(event_of(REGISTRY.get("OrderPlaced", 1), currency=ISO_CURRENCY),
                       event_of(REGISTRY.get("OrderPlaced", 2), currency=ISO_CURRENCY)))
def test_fast_decoder_and_codec_agree_after_upcasting(event: dict[str, Any]) -> None:
    """Scenario: any OrderPlaced v1 or v2 with an ISO-like currency ([A-Z]{3}). We expect the fast decoder and the codec
    to return the same event, and that event to be the hand-written v3 shape of what was written."""
    data = CODEC.encode(copy.deepcopy(event))
    fast, slow = FAST.decode(data), CODEC.decode(data)
    assert fast == slow
    assert fast == expected_v3(event)


@settings(max_examples=200, deadline=None)
@given(event=st.one_of(event_of(REGISTRY.get("OrderPlaced", 1), currency=NOT_ISO_CURRENCY),
                       event_of(REGISTRY.get("OrderPlaced", 2), currency=NOT_ISO_CURRENCY)))
def test_any_currency_the_upcaster_refuses_is_the_same_error_from_both(event: dict[str, Any]) -> None:
    """Scenario: any OrderPlaced v1 or v2 whose currency is not three capital letters. We expect the same UpcastError, naming currency, from both decoders."""
    data = CODEC.encode(copy.deepcopy(event))
    fast, slow = outcome(FAST.decode, data), outcome(CODEC.decode, data)
    assert fast == slow
    assert fast[0] == "UpcastError" and "currency" in fast[1]


def test_a_workload_of_old_versions_decodes_to_newest_shapes() -> None:
    """Scenario: a workload with every evolved event written as an older version (old_version_rate=1). We expect every record
    to decode to its type's newest version, identically in both decoders, and the old versions to really be in the log."""
    records = [r.value for r in generate(WorkloadConfig(seed=11, orders=200, days=2, old_version_rate=1.0)).records]
    written_versions = {(s.event_type, s.version) for s, _ in map(CODEC.decode_written, records)}
    assert {("OrderPlaced", 1), ("OrderPlaced", 2), ("PaymentAuthorized", 1)} <= written_versions
    newest = {s.event_type: s.version for s in REGISTRY.latest()}
    decoded = [FAST.decode(v) for v in records]
    assert decoded == [CODEC.decode(v) for v in records]
    assert all(e["envelope"]["schemaVersion"] == newest[e["envelope"]["eventType"]] for e in decoded)
    for event in decoded:  # each one is a valid event of the newest schema
        assert CODEC.decode_written(CODEC.encode(event))[1] == event


# --- 3. an upcaster that refuses: a named dead letter -------------------------------------------

REFUSED_MESSAGE = r"OrderPlaced v2 -> v3 .*\bcurrency\b"


@pytest.mark.parametrize("version", [1, 2])
def test_refused_currency_is_an_upcast_error_from_both_decoders(version: int) -> None:
    """Scenario: an OrderPlaced (v1, and v2) with currency "eur". We expect UpcastError naming OrderPlaced, v2 -> v3 and currency,
    the same from the codec and the fast decoder."""
    data = CODEC.encode(order_placed(version, currency="eur"))
    errors = []
    for decode in DECODERS.values():
        with pytest.raises(UpcastError, match=REFUSED_MESSAGE) as caught:
            decode(data)
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1]


def test_refused_currency_is_a_dead_letter_in_the_kernel() -> None:
    """Scenario: the refused OrderPlaced v2 through the shared kernel. We expect a "dead" verdict with reason_class UpcastError
    and currency in the reason: a dead letter, not a crash."""
    data = CODEC.encode(order_placed(2, currency="eur"))
    verdict = process_record(get_projection("order-status"), b"o-1", data, decode=FAST.decode, row_of=lambda _: None, stream_time_ms=None)
    assert verdict.outcome == "dead"
    assert verdict.reason_class == "UpcastError"
    assert verdict.reason is not None and re.search(REFUSED_MESSAGE, verdict.reason)


@pytest.mark.parametrize("version", [1, 2])
def test_old_order_placed_is_applied_by_the_kernel(version: int) -> None:
    """Scenario: a good OrderPlaced v1 / v2 through the kernel. We expect it applied: the fold reads the v3 shape it is given."""
    data = CODEC.encode(order_placed(version))
    verdict = process_record(get_projection("order-status"), b"o-1", data, decode=FAST.decode, row_of=lambda _: None, stream_time_ms=None)
    assert verdict.outcome == "applied", (verdict.reason_class, verdict.reason)


# --- 4. an upcaster that fails in an unexpected way ---------------------------------------------


def _divide_by_zero(event: dict[str, Any]) -> dict[str, Any]:
    return {"ratio": 1 // 0}


def _missing_key(event: dict[str, Any]) -> dict[str, Any]:
    event["total"] = event["grandTotal"]
    return event


def _bad_type(event: dict[str, Any]) -> dict[str, Any]:
    event["total"] = event["currency"] + 1
    return event


def _forgets_to_return(event: dict[str, Any]) -> dict[str, Any]:
    event["total"] = {"amountMinor": event.pop("totalMinor"), "currency": event.pop("currency")}
    return None  # type: ignore[return-value]  # the upcaster bug under test: the return statement forgotten


def _drops_the_envelope(event: dict[str, Any]) -> dict[str, Any]:
    return {"total": {"amountMinor": event["totalMinor"], "currency": event["currency"]}}


def decoders_with(registry: SchemaRegistry, upcasters: dict[tuple[str, int], Upcaster]) -> dict[str, Decode]:
    """A codec and a fast decoder over ``registry`` whose chains use ``upcasters``."""
    codec = EventCodec(registry)
    codec.upcasts = UpcastChains(registry, upcasters)  # before the FastDecoder, which takes the codec's chains
    return {"codec": codec.decode, "fast": FastDecoder(codec).decode}


@pytest.mark.parametrize(("upcaster", "named"), [(_divide_by_zero, "ZeroDivisionError"), (_missing_key, "KeyError"), (_bad_type, "TypeError")])
def test_an_upcaster_bug_is_an_upcast_error_naming_the_exception(tmp_path: Path, upcaster: Upcaster, named: str) -> None:
    """Scenario: a private registry (copies of the shipped schemas) whose OrderPlaced v2 -> v3 upcaster raises ZeroDivisionError,
    KeyError or TypeError. We expect UpcastError naming the exception (chained to it), from the chain, both decoders and the
    kernel (a dead letter), never the raw exception."""
    registry = build_registry(schema_dir(tmp_path / "schemas"))
    chain = UpcastChains(registry, {("OrderPlaced", 2): upcaster}).chain(registry.get("OrderPlaced", 2).fingerprint)
    assert chain is not None
    with pytest.raises(UpcastError, match=rf"OrderPlaced v2 -> v3 .*{named}") as caught:
        chain(order_placed(2))
    assert type(caught.value.__cause__).__name__ == named
    for version in (1, 2):
        data = CODEC.encode(order_placed(version))
        for decode in decoders_with(registry, {("OrderPlaced", 2): upcaster}).values():
            with pytest.raises(UpcastError, match=named):
                decode(data)
            verdict = process_record(get_projection("order-status"), b"o-1", data, decode=decode, row_of=lambda _: None, stream_time_ms=None)
            assert (verdict.outcome, verdict.reason_class) == ("dead", "UpcastError")
            assert verdict.reason is not None and named in verdict.reason


@pytest.mark.parametrize("upcaster", [_forgets_to_return, _drops_the_envelope])
def test_an_upcaster_returning_no_event_is_a_dead_letter(tmp_path: Path, upcaster: Upcaster) -> None:
    """Scenario: an OrderPlaced v2 -> v3 upcaster that forgets its return statement, or returns a dict without the envelope.
    We expect UpcastError (a dead letter in the kernel), as for any other upcaster bug (schemas/upcasters.py: "Any other
    exception is dead-lettered too")."""
    registry = build_registry(schema_dir(tmp_path / "schemas"))
    decode = decoders_with(registry, {("OrderPlaced", 2): upcaster})["fast"]
    verdict = process_record(get_projection("order-status"), b"o-1", CODEC.encode(order_placed(2)), decode=decode,
                             row_of=lambda _: None, stream_time_ms=None)
    assert (verdict.outcome, verdict.reason_class) == ("dead", "UpcastError")


# --- 5. chains refuse a configuration they cannot run -------------------------------------------


def _order_placed_v4(marker: object) -> dict[str, Any]:
    """OrderPlaced.v4.avsc: v3's fields, with a ``rewind.upcastFrom`` marker."""
    doc: dict[str, Any] = json.loads((SCHEMA_DIR / "OrderPlaced.v3.avsc").read_text())
    return doc | {"rewind.upcastFrom": marker}


def _set_marker(value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["rewind.upcastFrom"] = value

    return change


#: case -> (schema_dir changes and/or "upcasters", the ConfigError message expected)
CONFIG_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "no upcaster for the boundary": ({"extra": {"OrderPlaced.v4.avsc": _order_placed_v4(3)}},
                                     r"OrderPlaced v3 -> v4: no upcaster registered"),
    "upcasters without the shipped one": ({"upcasters": {}}, r"OrderPlaced v2 -> v3: no upcaster registered"),
    "marker names an older version": ({"edit": {"OrderPlaced.v3.avsc": _set_marker(1)}},
                                      r"OrderPlaced v3: rewind.upcastFrom 1 must be the previous version"),
    "marker names the version itself": ({"edit": {"OrderPlaced.v3.avsc": _set_marker(3)}},
                                        r"OrderPlaced v3: rewind.upcastFrom 3 must be the previous version"),
    "marker on a first version": ({"edit": {"PaymentFailed.v1.avsc": _set_marker(0)}},
                                  r"PaymentFailed v1: rewind.upcastFrom 0 must be the previous version"),
}


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_a_chain_that_cannot_run_is_refused_at_construction(tmp_path: Path, case: str) -> None:
    """Scenario: schema copies where a rewind.upcastFrom marker has no registered upcaster, or does not name the previous
    version. We expect ConfigError from UpcastChains (and so from the codec) naming the type and the versions."""
    setup, message = CONFIG_ERRORS[case]
    registry = build_registry(schema_dir(tmp_path / "schemas", edit=setup.get("edit"), extra=setup.get("extra")))
    upcasters = setup.get("upcasters", UPCASTERS)
    with pytest.raises(ConfigError, match=message):
        UpcastChains(registry, upcasters)
    if upcasters is UPCASTERS:
        with pytest.raises(ConfigError, match=message):
            EventCodec(registry)


def test_the_shipped_schemas_build_their_chains(tmp_path: Path) -> None:
    """Scenario: unchanged copies of the shipped schemas with the shipped upcasters. We expect no ConfigError (the control for the test above)."""
    registry = build_registry(schema_dir(tmp_path / "schemas"))
    assert UpcastChains(registry).chain(registry.get("OrderPlaced", 1).fingerprint) is not None


@pytest.mark.parametrize("marker", ["2", None], ids=["marker-as-string", "marker-missing"])
def test_an_unresolvable_step_is_refused_at_construction(tmp_path: Path, marker: str | None) -> None:
    """Scenario: OrderPlaced v3 (not resolvable from v2) with the marker "2" (a string), or no marker. We expect ConfigError when
    the registry or the chains are built, naming the marker or the step: refused at start, never a crash per record."""

    def change(doc: dict[str, Any]) -> None:
        if marker is None:
            del doc["rewind.upcastFrom"]
        else:
            doc["rewind.upcastFrom"] = marker

    with pytest.raises(ConfigError, match=r"rewind.upcastFrom must be an integer|OrderPlaced v[12] -> v3 is not resolvable by Avro rules"):
        EventCodec(build_registry(schema_dir(tmp_path / "schemas", edit={"OrderPlaced.v3.avsc": change})))
