"""Confluent wire format: a 5-byte header naming a schema registry id, and the registry look-ups behind it.

Framing (Confluent's "wire format"): the magic byte ``00``, the 4-byte big-endian id
that the schema registry gave the writer schema, then the Avro binary body, the same
body as in single-object encoding (:mod:`schemas.codec`); only the header differs.
Unlike a fingerprint, an id means nothing without the registry that issued it.

**From an id to this build's schema**, through the fingerprint, never the subject:
the registered text is reduced to its Parsing Canonical Form and fingerprinted
(CRC-64-AVRO, as :mod:`schemas.registry` does), so any registered text with the same
form (reformatted, other docs, logical types, under any subject) maps to the same
:class:`~schemas.registry.EventSchema`.

**From this build's schema to an id**: the full writer schema text
(:meth:`schemas.compat.SchemaVersion.schema_str`, the text ``rewind schemas check``
tests and confluent_kafka's ``AvroSerializer`` registers when given it) under its
subject (:func:`schemas.registry_client.subject_name`).

Apicurio 3.0.9's ccompat API, as observed (tests/integration/test_confluent_framing.py):
ids are content ids (the same text under two subjects has one id), starting at 1; an
unknown id is ``404`` with error code ``40403``; a URL that is not the ccompat API is a
``404`` with no error code (a RegistryUnavailableError here, not an unknown id);
lookup and registration compare the *exact* text, not the canonical form, so a
reformatted but equivalent schema becomes a new version with a new id (both map to the
same EventSchema here); ``get_schema`` returns the text exactly as registered. A
soft-deleted subject's ids stay readable; a permanently deleted one's become unknown,
and registering the same text again gives a new id.

Every request is bounded by ``timeout_s`` (httpx applies it to the connect and to each
read) and never retried: a registry that does not answer is a
:class:`~schemas.errors.RegistryUnavailableError`, never a hang.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.codec import CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, confluent_header, confluent_schema_id
from schemas.compat import SchemaVersion, load_versions
from schemas.errors import ConfigError, RegistryUnavailableError, UnknownSchemaError
from schemas.registry import ENVELOPE, SCHEMA_DIR, EventSchema, SchemaRegistry, crc64_avro, parsing_canonical_form
from schemas.registry_client import subject_name

__all__ = ["CONFLUENT_MAGIC", "CONFLUENT_HEADER_LEN", "confluent_schema_id", "ConfluentSchemas"]

_SUBJECT_NOT_FOUND = 40401
_SCHEMA_NOT_FOUND = 40403  # Confluent's code for "no such id" / "not under this subject"; Apicurio answers the same
_INCOMPATIBLE = 409
_INVALID = 422
#: How long an id the registry does not know is answered from memory (see ConfluentSchemas.schema_for).
_UNKNOWN_ID_TTL_S = 10.0
_REFUSED_MAX = 1024  # refused ids kept at most; garbage records may name any of 2**32 ids

_T = TypeVar("_T")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _fullname(doc: Any) -> str | None:
    """The fullname of a record schema given as JSON, or None for anything else."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        return None
    name, namespace = doc["name"], doc.get("namespace")
    return name if "." in name or not isinstance(namespace, str) or not namespace else f"{namespace}.{name}"


class ConfluentSchemas:
    """Maps Confluent schema ids to this build's EventSchema and back, through a registry.

    One ``SchemaRegistryClient`` (``timeout`` = ``timeout_s``, ``max.retries`` 0) at ``url``,
    the Confluent-compatible API (for Apicurio, ``<base>/apis/ccompat/v7``). ``local`` is
    the set of schemas this build reads; :meth:`header_for` only takes schemas of
    ``schemas/avro`` (their subject comes from the files). Not locked: two threads may
    fetch the same id at once, and both get the same answer.
    """

    def __init__(self, url: str, local: SchemaRegistry, *, timeout_s: float = 5.0) -> None:
        self._url = url
        self._local = local
        self._timeout_s = timeout_s
        self._client = SchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": 0})
        self._by_id: dict[int, EventSchema] = {}
        self._refused: dict[int, tuple[float, str]] = {}  # id -> (time.monotonic() it expires, message)
        self._headers: dict[bytes, bytes] = {}  # fingerprint -> header
        self._subjects: dict[tuple[str, int], tuple[SchemaVersion, str]] | None = None  # read on first use

    @property
    def url(self) -> str:
        """The registry's Confluent-compatible API."""
        return self._url

    def schema_for(self, schema_id: int) -> EventSchema:
        """The local schema that registry id ``schema_id`` names (at most two requests the first time).

        Fetches the registered text, fingerprints its Parsing Canonical Form and returns
        ``local.by_fingerprint(...)``. Caching: a found schema forever (an id never changes
        its schema); an id the registry knows that is not one of this build's schemas also
        forever; an id the registry does not know for 10 s (a burst of records naming it
        costs one request, and a registry that learns it later is asked again).

        Raises :class:`UnknownSchemaError` (message contains ``schema id <id>``) when the
        registry does not know the id, or when it holds a schema that is none of this build's
        (the message names the record and its subjects); :class:`RegistryUnavailableError`
        (one line, names the URL) when the registry does not answer within ``timeout_s`` or
        answers an error.
        """
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        refused = self._refused.get(schema_id)
        if refused is not None and time.monotonic() < refused[0]:
            raise UnknownSchemaError(refused[1])
        try:
            registered = self._request(f"GET schema id {schema_id}", lambda: self._client.get_schema(schema_id))
        except SchemaRegistryError as exc:
            # A 404 without Confluent's code is not an answer about the id: a wrong URL, say.
            if exc.http_status_code == 404 and exc.error_code == _SCHEMA_NOT_FOUND:
                message = f"schema id {schema_id} is not known to the schema registry {self._url}"
                self._refuse(schema_id, message, ttl_s=_UNKNOWN_ID_TTL_S)
                raise UnknownSchemaError(message) from exc
            raise self._answered(f"GET schema id {schema_id}", exc) from exc
        schema = self._match(schema_id, registered)
        self._by_id[schema_id] = schema
        return schema

    def header_for(self, schema: EventSchema) -> bytes:
        """``00`` + the 4-byte big-endian id of ``schema`` registered under its subject; cached per schema.

        1. Find the ``schemas/avro`` version with the same (event_type, version), and its subject.
        2. Look its full writer schema text up under the subject (a read: a registry that
           refuses writes still serves schemas registered beforehand).
        3. Absent: register that text (one more request).

        Raises :class:`ConfigError` naming the subject when the registry refuses the schema
        (409: incompatible with the subject's registered versions under its level; 422: invalid),
        or when ``schema`` is not one of ``schemas/avro``; :class:`RegistryUnavailableError`
        when the registry does not answer within ``timeout_s`` or answers another error.
        """
        header = self._headers.get(schema.fingerprint)
        if header is not None:
            return header
        # Step 1
        version, subject = self._subject_of(schema)
        text = Schema(version.schema_str(), "AVRO")
        # Step 2
        try:
            schema_id: int = self._request(f"look up {subject}", lambda: self._client.lookup_schema(subject, text)).schema_id
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404 or exc.error_code not in (_SUBJECT_NOT_FOUND, _SCHEMA_NOT_FOUND):
                raise self._answered(f"look up {subject}", exc) from exc
            # Step 3
            try:
                schema_id = self._request(f"register {subject}", lambda: self._client.register_schema(subject, text))
            except SchemaRegistryError as refused:
                if refused.http_status_code in (_INCOMPATIBLE, _INVALID):
                    why = "is incompatible with the versions registered there" if refused.http_status_code == _INCOMPATIBLE else "is refused as invalid"
                    raise ConfigError(
                        f"schema registry {self._url}: {schema.event_type} v{schema.version} {why} (subject {subject}): "
                        f"{_one_line(refused.error_message)}"
                    ) from refused
                raise self._answered(f"register {subject}", refused) from refused
        header = confluent_header(schema_id)
        self._headers[schema.fingerprint] = header
        self._by_id.setdefault(schema_id, schema)  # the id names the text just looked up or registered: this schema
        return header

    # --- helpers --------------------------------------------------------------------------------

    def _request(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``; no answer, or one that is not a registry's, as a one-line RegistryUnavailableError.

        A SchemaRegistryError (the registry answered an error status) passes through for the caller.
        """
        try:
            return call()
        except SchemaRegistryError:
            raise
        except (httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailableError(
                f"schema registry {self._url} unreachable ({what}, timeout {self._timeout_s:g}s): {type(exc).__name__}: {_one_line(exc)}"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:  # a 2xx body that is not JSON, or not a registry's JSON
            raise RegistryUnavailableError(
                f"schema registry {self._url}: {what} answered something that is not a schema registry response: {_one_line(exc)}"
            ) from exc

    def _answered(self, what: str, exc: SchemaRegistryError) -> RegistryUnavailableError:
        code = f" (error code {exc.error_code})" if exc.error_code not in (None, -1) else ""
        # A 404 without a registry error code: the URL is not a registry's API (a missing /apis/ccompat/v7, say).
        hint = " (is it the Confluent-compatible API, e.g. .../apis/ccompat/v7?)" if exc.http_status_code == 404 and not code else ""
        detail = f": {_one_line(exc.error_message)}" if exc.error_message else ""
        return RegistryUnavailableError(f"schema registry {self._url}: {what} answered {exc.http_status_code}{code}{hint}{detail}")

    def _refuse(self, schema_id: int, message: str, *, ttl_s: float) -> None:
        if len(self._refused) >= _REFUSED_MAX:
            now = time.monotonic()
            self._refused = {k: v for k, v in self._refused.items() if v[0] > now}
            while len(self._refused) >= _REFUSED_MAX:
                del self._refused[next(iter(self._refused))]  # the oldest entry (dicts keep insertion order)
        self._refused[schema_id] = (time.monotonic() + ttl_s, message)

    def _match(self, schema_id: int, registered: Any) -> EventSchema:
        """This build's schema with the fingerprint of ``registered`` (a confluent_kafka Schema); refusals cached forever."""
        problem: str | None = None
        doc: Any = None
        fingerprint = b""
        if registered.schema_type not in (None, "AVRO"):
            problem = f"is a {registered.schema_type} schema, not Avro"
        elif registered.references:
            problem = "refers to other registered schemas; this build's schemas are self-contained"
        else:
            try:
                doc = json.loads(registered.schema_str)
                fingerprint = crc64_avro(parsing_canonical_form(doc))
            except Exception as exc:  # json and fastavro raise many types on a schema they cannot read
                problem = f"is not a self-contained Avro schema ({type(exc).__name__}: {_one_line(exc)})"
        found = None if problem else self._local.by_fingerprint(fingerprint)
        if found is not None:
            return found
        if problem is None:
            name = _fullname(doc)
            short = name.rpartition(".")[2] if name else None
            ours = sorted(s.version for s in self._local.all() if s.event_type == short)
            problem = (
                f"({name or 'not a record'}, fingerprint {fingerprint.hex()}{self._where(schema_id)}) is not one of this build's schemas"
                + (f"; this build has {short} v{', v'.join(map(str, ours))} (a newer producer? deploy its schema)" if ours else "")
            )
        message = f"schema id {schema_id} {problem}"
        self._refuse(schema_id, message, ttl_s=math.inf)
        raise UnknownSchemaError(message)

    def _where(self, schema_id: int) -> str:
        """``, registered as <subject> v<N>, ...`` for an error message; empty when the registry does not say."""
        try:
            versions = self._request(f"GET versions of schema id {schema_id}", lambda: self._client.get_schema_versions(schema_id))
            places = [f"{v.subject} v{v.version}" for v in versions]
        except (SchemaRegistryError, RegistryUnavailableError):
            return ""  # only a detail of an error message: the refusal itself stands
        return f", registered as {', '.join(places)}" if places else ""

    def _subject_of(self, schema: EventSchema) -> tuple[SchemaVersion, str]:
        """The ``schemas/avro`` version of ``schema`` and its subject; ConfigError when it is not one of those files."""
        if self._subjects is None:
            self._subjects = {
                (v.event_type, v.version): (v, subject_name(v, versions))
                for name, versions in load_versions().items()
                if name != ENVELOPE
                for v in versions
            }
        entry = self._subjects.get((schema.event_type, schema.version))
        if entry is None or crc64_avro(parsing_canonical_form(entry[0].writer_schema)) != schema.fingerprint:
            raise ConfigError(
                f"{schema.event_type} v{schema.version} (fingerprint {schema.fingerprint.hex()}) is not the schema of that name in "
                f"{SCHEMA_DIR}: no subject to register it under"
            )
        return entry
