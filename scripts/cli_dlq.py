"""`rewind dlq list|show`: the dead letters in the DLQ topic, with their headers decoded (:mod:`pipelines.dlq_reader`).

A letter's id is ``partition:offset`` in the DLQ topic (``3:17``): what `list` prints is what
`show` takes, and GET /dlq/{id} too. `list` ends with the count of every matching letter by
reason class (on stdout after the table; on stderr with ``--json``, so that stdout stays one
JSON object a line).
"""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

import typer

from schemas.errors import ConfigError
from scripts.cli_common import build_settings, check_topic, setting_option
from scripts.cli_dlq_redrive import redrive

if TYPE_CHECKING:
    from rich.console import Console

    from pipelines.dlq_reader import DlqListing, Letter
    from pipelines.settings import RewindSettings

__all__ = ["dlq_app"]

dlq_app = typer.Typer(help="List and inspect dead letters (the DLQ topic): why each record was refused, and where it came from.",
                      no_args_is_help=True)

#: The headers every letter has (pipelines.dlq.DLQ_HEADERS): the table gives them columns; others go to "other headers".
_STANDARD = ("rewind.reason.class", "rewind.reason.message", "rewind.source.topic", "rewind.source.partition",
             "rewind.source.offset", "rewind.pipeline", "rewind.dead_lettered_at")
_MESSAGE_CHARS = 60
_PIPED_WIDTH = 220


def _nonempty(flag: str, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ConfigError(f"{flag}: empty; omit it to match any")
    return value


def _timeout(value: float) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"--timeout-s: {value} is not a finite number of seconds")
    return value


def _settings(dlq_topic: str | None, kafka_bootstrap_servers: str | None, schema_registry_url: str | None) -> RewindSettings:
    settings = build_settings(dlq_topic=dlq_topic, kafka_bootstrap_servers=kafka_bootstrap_servers, schema_registry_url=schema_registry_url)
    check_topic("--dlq-topic", settings.dlq_topic)
    return settings


def _summary(listing: DlqListing) -> str:
    shown = len(listing.letters)
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(listing.by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    head = f"{listing.matched} letter{'s' if listing.matched != 1 else ''} in {listing.topic}"
    if shown < listing.matched:
        head += f" (showing the first {shown})"
    return f"{head}: {counts}" if counts else head


def _cut(text: str | None, limit: int = _MESSAGE_CHARS) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _console() -> Console:
    from rich.console import Console

    # Rich falls back to 80 columns when stdout is not a terminal, which cuts every column of a letter to a few characters.
    return Console() if sys.stdout.isatty() else Console(width=_PIPED_WIDTH)


def _print_table(listing: DlqListing) -> None:
    from rich.table import Table

    extra = [{k: v for k, v in letter.headers.items() if k not in _STANDARD} for letter in listing.letters]
    # The column of headers beyond the standard ones (parking, redrive, a foreign writer's) only when a letter has one.
    with_others = any(extra)
    columns = ["id", "pipeline", "reason", "order", "seq", "event", "source", "dead-lettered at", "message"]
    table = Table(*columns, *(["other headers"] if with_others else []), title=f"dead letters in {listing.topic}")
    for letter, others in zip(listing.letters, extra, strict=True):
        s = letter.summary_json()
        source = s["source"]
        where = f"{source['topic']}:{source['partition']}:{source['offset']}" if source else ""
        cells = [s["id"], s["pipeline"] or "", s["reason_class"] or "", s["order_id"] or "", "" if s["seq"] is None else str(s["seq"]),
                 s["event_type"] or "", where, s["dead_lettered_at"] or "", _cut(s["reason"])]
        if with_others:
            cells.append("\n".join(f"{k}={_cut(v, 40)}" for k, v in others.items()))
        table.add_row(*cells)
    console = _console()
    if listing.letters:
        console.print(table)
    console.print(_summary(listing), highlight=False)


def _print_letter(letter: Letter, topic: str) -> None:
    from rich.table import Table

    body = letter.full_json()
    table = Table("field", "value", title=f"dead letter {body['id']} of {topic}")
    for name in ("id", "timestamp_ms", "key", "key_hex", "order_id", "seq", "event_type", "dead_lettered_at"):
        table.add_row(name, "" if body[name] is None else str(body[name]))
    for name, value in letter.headers.items():
        table.add_row(f"header {name}", "(no value)" if value is None else value)
    table.add_row("value_bytes", "" if body["value_bytes"] is None else str(body["value_bytes"]))
    if body["event"] is None:
        table.add_row("decode_error", body["decode_error"] or "")
        table.add_row("value_hex", f"{body['value_hex'] or ''} (first {min(body['value_bytes'] or 0, 64)} bytes)")
    console = _console()
    console.print(table)
    if body["event"] is not None:
        console.print("value (decoded, newest schema version):", highlight=False)
        console.print_json(json.dumps(body["event"]))


@dlq_app.command("list")
def list_letters(
    reason: str | None = typer.Option(None, help="Only this reason class, exactly (e.g. ImpossibleTransition, BadMagicError, LateEvent)."),
    order: str | None = typer.Option(None, help="Only letters of this order (the event's orderId, or the record key)."),
    pipeline: str | None = typer.Option(None, help="Only letters written by this pipeline (each writes its own, e.g. order-status)."),
    limit: int | None = typer.Option(None, min=0, help="Show at most this many (the first by id); the summary still counts all."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object a line (the summary goes to stderr)."),
    dlq_topic: str | None = setting_option("dlq_topic", "The DLQ topic the pipelines write.", "--dlq-topic"),
    kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
    schema_registry_url: str | None = setting_option("schema_registry_url", "Registry to decode Confluent-framed values with."),
    timeout_s: float = typer.Option(30.0, min=1.0, max=3600.0, help="Give up reading the topic to its end after this many seconds."),
) -> None:
    """List dead letters (id = partition:offset for `rewind dlq show`), then their count by reason.

    Reads the DLQ topic from its beginning to its end as of now (committed letters only); nothing is consumed away.
    """
    from pipelines.dlq_reader import LetterFilter
    from pipelines.dlq_reader import list_letters as read_listing
    from schemas.fast_decode import event_decoder

    where = LetterFilter(reason=_nonempty("--reason", reason), order=_nonempty("--order", order),
                         pipeline=_nonempty("--pipeline", pipeline))
    _timeout(timeout_s)
    settings = _settings(dlq_topic, kafka_bootstrap_servers, schema_registry_url)
    listing = read_listing(settings.bootstrap(), settings.dlq_topic, decode=event_decoder(settings.schema_registry_url), where=where,
                           limit=limit, timeout_s=timeout_s, connect_timeout_s=settings.connect_timeout_s)
    if as_json:
        for letter in listing.letters:
            typer.echo(json.dumps(letter.summary_json(), ensure_ascii=False))
        typer.echo(_summary(listing), err=True)
    else:
        _print_table(listing)


@dlq_app.command("show")
def show(
    letter_id: str = typer.Argument(..., metavar="ID", help="The letter's id, partition:offset, as `rewind dlq list` prints it."),
    as_json: bool = typer.Option(False, "--json", help="The letter as one JSON object."),
    dlq_topic: str | None = setting_option("dlq_topic", "The DLQ topic the pipelines write.", "--dlq-topic"),
    kafka_bootstrap_servers: str | None = setting_option("kafka_bootstrap_servers", "Kafka cluster (default: the local broker)."),
    schema_registry_url: str | None = setting_option("schema_registry_url", "Registry to decode Confluent-framed values with."),
    timeout_s: float = typer.Option(30.0, min=1.0, max=3600.0, help="Give up reading the letter after this many seconds."),
) -> None:
    """Show one dead letter in full: every header, the key, and the value decoded (else its first bytes and the codec's error)."""
    from pipelines.dlq_reader import LetterId, read_letter
    from schemas.fast_decode import event_decoder

    wanted = LetterId.parse(letter_id)
    _timeout(timeout_s)
    settings = _settings(dlq_topic, kafka_bootstrap_servers, schema_registry_url)
    letter = read_letter(settings.bootstrap(), settings.dlq_topic, wanted, decode=event_decoder(settings.schema_registry_url),
                         timeout_s=timeout_s, connect_timeout_s=settings.connect_timeout_s)
    if as_json:
        body: dict[str, Any] = letter.full_json()
        typer.echo(json.dumps(body, ensure_ascii=False))
    else:
        _print_letter(letter, settings.dlq_topic)


dlq_app.command("redrive")(redrive)
