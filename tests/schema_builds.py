"""A *newer build*'s schemas, for tests of what a fix does: this build's schemas plus one version it
does not know yet (OrderShipped v2: v1 plus a ``service`` string, default ``"standard"``).

Events written as OrderShipped v2 are ``UnknownSchemaError`` to this build's codec, and read by
the newer build's (:func:`newer_decoder`), which also reads every older event (v1 resolves to
v2, ``service`` taking its default): the realistic fix of "a producer upgraded before the
pipelines did" is deploying the newer build, then redriving.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.codec import EventCodec
from schemas.fast_decode import FastDecoder
from schemas.registry import SCHEMA_DIR, build_registry

__all__ = ["newer_codec", "newer_decoder", "as_newer"]

NEW_TYPE = "OrderShipped"
NEW_VERSION = 2


def _newer_dir(dest: Path) -> Path:
    schemas = dest / "newer-schemas"
    if not schemas.exists():
        shutil.copytree(SCHEMA_DIR, schemas)
        v1 = json.loads((SCHEMA_DIR / f"{NEW_TYPE}.v1.avsc").read_text())
        v1["fields"].append({"name": "service", "type": "string", "default": "standard"})
        (schemas / f"{NEW_TYPE}.v{NEW_VERSION}.avsc").write_text(json.dumps(v1, indent=2))
    return schemas


def newer_codec(dest: Path) -> EventCodec:
    """The newer build's codec (its schema files written under ``dest``)."""
    return EventCodec(build_registry(_newer_dir(dest)))


def newer_decoder(dest: Path) -> Callable[[bytes], Any]:
    """The newer build's decode function, as the pipelines build theirs (:class:`FastDecoder`)."""
    return FastDecoder(newer_codec(dest)).decode


def as_newer(event: dict[str, Any]) -> dict[str, Any]:
    """An OrderShipped event (this build's shape) as the newer build writes it (v2)."""
    assert event["envelope"]["eventType"] == NEW_TYPE
    out = copy.deepcopy(event)
    out["envelope"]["schemaVersion"] = NEW_VERSION
    out["service"] = "express"
    return out
