"""Benchmark (issue: foundation): produce N events, then raw confluent-kafka consume+decode of the same topic.

    .venv/bin/python scripts/bench_produce.py --events 1000000
"""

from __future__ import annotations

import typer

from scripts.bench_common import make_topic, raw_consume_decode


def main(events: int = typer.Option(1_000_000, min=1000, help="Approximate number of events.")) -> None:
    """Print generate, produce and raw consume+decode rates for one topic."""
    topic, _ = make_topic(events=events)
    typer.echo(f"topic {topic.settings.orders_topic}: {topic.records:,} records")
    typer.echo(f"generate (model + encode): {topic.records / topic.generate_s:,.0f} events/s ({topic.generate_s:.1f} s)")
    typer.echo(f"produce (idempotent, acks=all, lz4, flush included): {topic.records / topic.produce_s:,.0f} events/s ({topic.produce_s:.1f} s)")
    rate = raw_consume_decode(topic.settings, expected=topic.records)
    typer.echo(f"raw consume+decode (batched consume, fastavro): {rate:,.0f} events/s")


if __name__ == "__main__":
    typer.run(main)
