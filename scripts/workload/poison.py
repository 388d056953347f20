"""Poison records injected into the emission stream, each with a stable id, a kind and a reason.

A share ``poison_rate`` of the good events each anchors one extra record of
one of four kinds (chosen uniformly), keyed by the anchor's order:

- ``undecodable``: garbage bytes without the ``C3 01`` marker, or the anchor's
  bytes cut short; emitted right after the anchor.
- ``unknown_schema``: ``C3 01``, an 8-byte fingerprint no schema has, the
  anchor's body; emitted right after the anchor.
- ``impossible_transition``: a well-formed event that is illegal in the
  order's status at that point, with seq = the order's next seq, emitted right
  *before* the anchor (the real event with that seq), so a fold that rejects it
  without advancing its seq then accepts the real one. When the anchor is the
  order's last emitted event it may instead follow it, with seq = last + 1.
- ``duplicate``: the anchor's exact bytes, key and timestamp again, arriving
  later, but no later than ``occurredAt + max_lateness_ms``.

Poison draws from its own ``Random`` seeded from the config's seed, so turning
poison on or off never changes a good event.
"""

from __future__ import annotations

from collections.abc import Sequence
from random import Random
from typing import TYPE_CHECKING

from schemas.codec import CONFLUENT_MAGIC, HEADER_LEN, MAGIC
from scripts.workload.encoding import FastEncoder
from scripts.workload.events import POISON_KINDS, Emitted, PoisonInfo, PoisonKind, build_event, new_uuid
from scripts.workload.model import Order, Status, illegal_event_types, next_status, rejection_reason

if TYPE_CHECKING:
    from scripts.workload.generator import WorkloadConfig

__all__ = ["Poisoner"]


class Poisoner:
    """Decides, per order, which poison records to inject and where; deterministic from the seed."""

    def __init__(self, config: WorkloadConfig, *, encoder: FastEncoder) -> None:
        # A string seed is hashed with SHA-512 by Random: stable across runs and platforms.
        self._rng = Random(f"poison:{config.seed}")
        self._rate = config.poison_rate
        self._lateness_ms = config.max_lateness_ms
        self._encode = encoder.encode
        self._known_fingerprints = frozenset(s.fingerprint for s in encoder.codec.registry.all())
        self._count = 0

    def inject(self, order: Order, emitted: Sequence[Emitted]) -> list[Emitted]:
        """``order``'s good records ``emitted`` (seq order) with its poison inserted where it goes.

        The generator then sorts all records by arrival, stably: a record placed
        next to its anchor with the anchor's arrival stays next to it.
        """
        rng = self._rng
        before: dict[int, list[Emitted]] = {}
        after: dict[int, list[Emitted]] = {}
        for k, anchor in enumerate(emitted):
            if rng.random() >= self._rate:
                continue
            kind = POISON_KINDS[rng.randrange(len(POISON_KINDS))]
            if kind == "undecodable":
                after.setdefault(k, []).append(self._undecodable(anchor))
            elif kind == "unknown_schema":
                after.setdefault(k, []).append(self._unknown_schema(anchor))
            elif kind == "duplicate":
                after.setdefault(k, []).append(self._duplicate(anchor))
            else:
                at_end, record = self._impossible(order, emitted, k)
                (after if at_end else before).setdefault(k, []).append(record)
        if not before and not after:
            return list(emitted)
        out: list[Emitted] = []
        for k, record in enumerate(emitted):
            out += before.get(k, ())
            out.append(record)
            out += after.get(k, ())
        return out

    def _info(self, kind: PoisonKind, reason: str) -> PoisonInfo:
        self._count += 1
        return PoisonInfo(f"poison-{self._count:06d}", kind, reason)

    def _undecodable(self, anchor: Emitted) -> Emitted:
        rng = self._rng
        if rng.random() < 0.5:
            garbage = bytearray(rng.randbytes(1 + rng.randrange(64)))
            if garbage[0] in (MAGIC[0], CONFLUENT_MAGIC):
                garbage[0] ^= 0xFF  # never a valid marker of either framing, whatever follows
            reason = f"{len(garbage)} bytes of garbage without the C3 01 (or Confluent 00) marker"
            value = bytes(garbage)
        else:
            cut = rng.randrange(HEADER_LEN, len(anchor.value))
            value = anchor.value[:cut]
            reason = f"{anchor.event_type} cut short: {cut} of {len(anchor.value)} bytes"
        info = self._info("undecodable", reason)
        return Emitted(anchor.key, value, anchor.timestamp_ms, anchor.arrival_ms, anchor.order_id,
                       None, None, None, info)

    def _unknown_schema(self, anchor: Emitted) -> Emitted:
        fingerprint = self._rng.randbytes(8)
        while fingerprint in self._known_fingerprints:
            fingerprint = self._rng.randbytes(8)
        info = self._info("unknown_schema", f"unknown schema fingerprint {fingerprint.hex()}")
        value = MAGIC + fingerprint + anchor.value[HEADER_LEN:]
        return Emitted(anchor.key, value, anchor.timestamp_ms, anchor.arrival_ms, anchor.order_id,
                       None, None, None, info)

    def _duplicate(self, anchor: Emitted) -> Emitted:
        # Later, but within the lateness bound of the original's occurredAt (its timestamp).
        slack_ms = self._lateness_ms - (anchor.arrival_ms - anchor.timestamp_ms)
        arrival_ms = anchor.arrival_ms + int(self._rng.random() * (slack_ms + 1))
        info = self._info("duplicate", f"duplicate of {anchor.event_type} seq {anchor.seq} ({anchor.event_id})")
        return anchor._replace(arrival_ms=arrival_ms, poison=info)

    def _impossible(self, order: Order, emitted: Sequence[Emitted], k: int) -> tuple[bool, Emitted]:
        """An illegal event and whether it goes after the anchor (the order's end) rather than before it."""
        rng = self._rng
        anchor = emitted[k]
        at_end = k == len(emitted) - 1 and rng.random() < 0.5
        upto = k + 1 if at_end else k  # the illegal event follows the first ``upto`` good events
        status: Status | None = None
        for record in emitted[:upto]:
            status = next_status(status, record.event_type or "")
        candidates = illegal_event_types(status)
        event_type = candidates[rng.randrange(len(candidates))]
        arrival_ms = anchor.arrival_ms
        # occurredAt inside the order's timeline: between its neighbours' event times,
        # and within the lateness bound of where it arrives.
        if at_end:
            lo, hi = anchor.timestamp_ms, anchor.arrival_ms
        else:
            prev_ms = emitted[k - 1].timestamp_ms if k else anchor.timestamp_ms
            lo, hi = min(prev_ms, anchor.timestamp_ms), max(prev_ms, anchor.timestamp_ms)
        occurred_ms = max(lo + int(rng.random() * (hi - lo + 1)), arrival_ms - self._lateness_ms)
        causation = emitted[upto - 1].event_id if upto else None
        event_id = new_uuid(rng)
        event = build_event(
            order,
            event_type,
            seq=upto + 1,
            event_id=event_id,
            occurred_at_ms=occurred_ms,
            causation_id=causation or new_uuid(rng),
            previous_type=emitted[upto - 1].event_type if upto else None,
            rng=rng,
        )
        info = self._info("impossible_transition", rejection_reason(status, event_type))
        record = Emitted(anchor.key, self._encode(event), occurred_ms, arrival_ms, order.order_id,
                         upto + 1, event_type, event_id, info)
        return at_end, record
