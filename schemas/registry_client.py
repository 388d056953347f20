"""The schema registry side of the compatibility gate: subject names, levels, and registered versions.

**Subjects.** One subject per event type and major shape, named like Confluent's
RecordNameStrategy: the record's fullname, ``rewind.orders.OrderPlaced`` (every
schema's namespace is ``rewind.orders``). TopicNameStrategy (``orders-value``)
cannot work: one topic holds nine record types, and a transitive level would
compare an OrderPlaced schema with a PaymentFailed one. A version that starts a
new major shape (``rewind.upcastFrom``, see :mod:`schemas.compat`) starts a new
subject, ``rewind.orders.OrderPlaced-v3`` (``-`` cannot occur in an Avro name), so
the registry's transitive rule compares versions of one shape only, and the
upcaster bridges the shapes. A serializer registers under :func:`subject_name`.

**Levels.** A replay from offset zero reads every version ever written, so a
subject's level must be transitive: BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE or
FULL_TRANSITIVE. The effective level of a subject is its own, else the global one
(``GET /config/<subject>?defaultToGlobal=true``; Apicurio's ccompat API answers it,
and stores a subject set to NONE as "no subject rule", i.e. the global level).

Every call has a timeout and no retries: an unreachable registry is a
:class:`RegistryUnavailableError` within ``timeout_s`` a request, never a hang.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.compat import UPCAST_MARKER, Finding, SchemaVersion, canonical_form, check_pair, load_versions
from schemas.errors import RegistryUnavailableError, ReplayGateError
from schemas.registry import ENVELOPE, SCHEMA_DIR

__all__ = [
    "TRANSITIVE_LEVELS",
    "SubjectLevel",
    "SubjectCheck",
    "subject_name",
    "event_subjects",
    "effective_level",
    "check_replay_gate",
    "replay_gate",
    "check_registry",
]

TRANSITIVE_LEVELS = frozenset({"BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"})
_ACCEPT = "application/vnd.schemaregistry.v1+json"
_SUBJECT_NOT_FOUND = 40401


@dataclass(frozen=True)
class SubjectLevel:
    """A subject and its effective compatibility level (its own, else the registry's global one)."""

    subject: str
    level: str

    @property
    def transitive(self) -> bool:
        return self.level in TRANSITIVE_LEVELS


@dataclass(frozen=True)
class SubjectCheck:
    """The newest schema of one type against its subject: level, registered versions, the registry's verdict, findings.

    ``registered`` is 0 when the subject does not exist yet (then ``compatible`` is True);
    ``findings`` name the field, from checking every registered version offline as a writer.
    """

    event_type: str
    subject: str
    reader_version: int
    level: str
    registered: int
    compatible: bool
    findings: tuple[Finding, ...]


def subject_name(version: SchemaVersion, versions: list[SchemaVersion]) -> str:
    """The subject of ``version`` (one of ``versions``, that type's versions oldest first): fullname, ``-v<N>`` per shape."""
    start = max((v.version for v in versions if v.version <= version.version and v.upcast_from is not None), default=None)
    return version.fullname if start is None else f"{version.fullname}-v{start}"


def event_subjects(versions_by_type: dict[str, list[SchemaVersion]]) -> list[str]:
    """Every subject the event types use (each major shape of each type; the Envelope is not a subject of its own)."""
    subjects: list[str] = []
    for name, versions in versions_by_type.items():
        if name == ENVELOPE:
            continue
        for version in versions:
            subject = subject_name(version, versions)
            if subject not in subjects:
                subjects.append(subject)
    return subjects


def _get_json(url: str, path: str, *, timeout_s: float) -> tuple[int, Any]:
    request = urllib.request.Request(url.rstrip("/") + path, headers={"Accept": _ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return 404, None
        raise RegistryUnavailableError(f"schema registry {url}: GET {path} answered {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise RegistryUnavailableError(f"schema registry {url} unreachable (GET {path}, timeout {timeout_s:g}s): {reason}") from exc


def effective_level(url: str, subject: str, *, timeout_s: float) -> SubjectLevel:
    """``subject``'s compatibility level: its own, else the global one."""
    quoted = urllib.parse.quote(subject, safe="")
    status, body = _get_json(url, f"/config/{quoted}?defaultToGlobal=true", timeout_s=timeout_s)
    if status == 404:  # a registry without defaultToGlobal: no level of its own
        status, body = _get_json(url, "/config", timeout_s=timeout_s)
    level = body.get("compatibilityLevel", body.get("compatibility")) if isinstance(body, dict) else None
    if not isinstance(level, str):
        raise RegistryUnavailableError(f"schema registry {url}: no compatibility level for {subject} in {body!r}")
    return SubjectLevel(subject, level)


def check_replay_gate(url: str, subjects: list[str], *, timeout_s: float) -> list[SubjectLevel]:
    """The levels of ``subjects``; ReplayGateError at the first one weaker than transitive.

    Called before a replay from offset zero, before any broker contact or file write.
    """
    levels = []
    for subject in subjects:
        found = effective_level(url, subject, timeout_s=timeout_s)
        if not found.transitive:
            raise ReplayGateError(
                f"refusing to replay from offset 0: subject {subject} has compatibility {found.level}, not "
                f"{', '.join(sorted(TRANSITIVE_LEVELS))}; a replay from zero reads every version ever written, "
                "so each must stay readable, not only the latest (fix the level, or pass --force)"
            )
        levels.append(found)
    return levels


def replay_gate(url: str, *, timeout_s: float, schema_dir: Path = SCHEMA_DIR) -> list[SubjectLevel]:
    """The gate before a replay from offset zero: every subject of ``schema_dir``'s event types must be transitive.

    Returns the levels read; raises ReplayGateError (weak level) or RegistryUnavailableError (no answer).
    """
    return check_replay_gate(url, event_subjects(load_versions(schema_dir)), timeout_s=timeout_s)


def _client(url: str, timeout_s: float) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": 0})


def _call(url: str, what: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``; None when the subject does not exist; one-line errors otherwise."""
    try:
        return fn(*args)
    except SchemaRegistryError as exc:
        if exc.error_code == _SUBJECT_NOT_FOUND:
            return None
        raise RegistryUnavailableError(f"schema registry {url}: {what} answered {exc.http_status_code}: {exc.error_message}") from exc
    except (httpx.HTTPError, OSError) as exc:
        raise RegistryUnavailableError(f"schema registry {url} unreachable ({what}): {exc}") from exc


def check_registry(url: str, versions_by_type: dict[str, list[SchemaVersion]], *, timeout_s: float) -> list[SubjectCheck]:
    """Each type's newest schema against every version registered under its subject.

    1. the subject's effective level; 2. the registered versions (none: nothing to check);
    3. the registry's own verdict, ``test_compatibility_all_versions`` (``test_compatibility``
       compares with the latest version only, even under a transitive level);
    4. each registered version checked offline as a writer, to name the field; a rejection
       the offline check cannot explain is reported as one finding with field ``?``.
    """
    client = _client(url, timeout_s)
    checks: list[SubjectCheck] = []
    for name, versions in versions_by_type.items():
        if name == ENVELOPE:
            continue
        newest = versions[-1]
        subject = subject_name(newest, versions)
        # Step 1
        level = effective_level(url, subject, timeout_s=timeout_s).level
        # Step 2
        registered = _call(url, f"GET versions of {subject}", client.get_versions, subject) or []
        if not registered:
            checks.append(SubjectCheck(name, subject, newest.version, level, 0, True, ()))
            continue
        # Step 3
        schema = Schema(newest.schema_str(), "AVRO")
        verdict = _call(url, f"test compatibility with {subject}", client.test_compatibility_all_versions, subject, schema)
        # Step 4
        local = {canonical_form(v.writer_schema): v.version for v in versions}
        findings: list[Finding] = []
        for number in registered:
            got = _call(url, f"GET {subject} version {number}", client.get_version, subject, number)
            if got is None:
                continue
            writer = json.loads(got.schema.schema_str)
            known = local.get(canonical_form(writer))
            for found in check_pair(name, writer, newest.writer_schema, writer_version=known, reader_version=newest.version):
                findings.append(Finding(name, found.field, known, newest.version, found.problem,
                                        registry_version=number, subject=subject))
        if verdict is False and not findings:
            findings.append(Finding(name, "?", None, newest.version,
                                    f"the registry rejects it under {level} (test_compatibility_all_versions), "
                                    f"though every registered version decodes offline (an {UPCAST_MARKER} boundary?)",
                                    registry_version=registered[-1], subject=subject))
        checks.append(SubjectCheck(name, subject, newest.version, level, len(registered), bool(verdict) and not findings, tuple(findings)))
    return checks
