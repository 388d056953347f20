"""`rewind schemas check`: every schema version reads every earlier one (offline), and the registry agrees."""

from __future__ import annotations

from pathlib import Path

import typer

from scripts.cli_common import build_settings, setting_option

app = typer.Typer(help="Event schema tools: the evolution check that the test command and a replay rely on.", no_args_is_help=True)


@app.command()
def check(
    schema_dir: Path | None = typer.Option(None, "--dir", help="Directory of <Type>.v<N>.avsc files. Default: the schemas shipped (schemas/avro)."),
    schema_registry_url: str | None = setting_option(
        "schema_registry_url", "Also check each newest schema against every version registered under its subject.", "--registry",
    ),
    timeout_s: float = typer.Option(10.0, "--timeout-s", min=0.1, help="Per-request timeout for the registry, in seconds."),
) -> None:
    """Check that each event type's every schema version can read the data of every earlier version (transitive).

    Offline, with Avro schema resolution (fastavro; field aliases honoured); a version
    marked "rewind.upcastFrom": N is reached by an upcaster instead. With a registry,
    each type's newest schema is also tested against every version of its subject
    (rewind.orders.<Type>). Prints one OK line per type, or one line per problem naming
    the type, the field and the two versions, and exits 1.
    """
    from schemas.compat import check_versions, iter_errors, load_versions
    from schemas.errors import ConfigError
    from schemas.registry import SCHEMA_DIR, build_registry
    from schemas.upcast import UpcastChains

    # Arguments first: a bad URL or directory fails before anything is read or called.
    settings = build_settings(schema_registry_url=schema_registry_url)
    versions = load_versions(schema_dir or SCHEMA_DIR)
    findings = {name: check_versions(per_type) for name, per_type in versions.items()}
    problems = 0
    for name, per_type in findings.items():
        errors = [f for f in per_type if f.kind == "incompatible"]
        for finding in per_type:
            typer.echo(("UPCAST " if finding.kind == "upcast" else "INCOMPATIBLE ") + finding.line())
        if not errors:
            numbers = [v.version for v in versions[name]]
            typer.echo(f"OK {name} v{numbers[0]}" + (f"..v{numbers[-1]}" if len(numbers) > 1 else ""))
    problems += sum(1 for _ in iter_errors(findings))
    # Each rewind.upcastFrom boundary needs its upcaster in schemas/upcasters.py, or decoding refuses to start
    # (checked once the offline rules pass: an incompatibility is reported above, field by field).
    if not problems:
        try:
            UpcastChains(build_registry(schema_dir or SCHEMA_DIR))
        except ConfigError as exc:
            typer.echo(f"INCOMPATIBLE {exc}")
            problems += 1
    url = settings.schema_registry_url
    if url:
        from schemas.registry_client import check_registry

        for subject in check_registry(url, versions, timeout_s=timeout_s):
            for finding in subject.findings:
                typer.echo("INCOMPATIBLE " + finding.line())
            problems += len(subject.findings)
            if subject.registered == 0:
                typer.echo(f"OK {subject.event_type} registry: subject {subject.subject} has no versions yet (level {subject.level})")
            elif not subject.findings:
                typer.echo(f"OK {subject.event_type} registry: v{subject.reader_version} reads all {subject.registered} "
                           f"version(s) of {subject.subject} (level {subject.level})")
    if problems:
        typer.echo(f"schemas check: {problems} incompatible change(s)", err=True)
        raise typer.Exit(1)
