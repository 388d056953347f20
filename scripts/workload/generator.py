"""The deterministic order-event workload: same config, same bytes, every time.

How a workload is made (one ``random.Random(seed)`` drives everything good;
poison has its own generator seeded from the same seed, so switching poison
on does not change a single good event):

1. Catalog: customers with Zipf-like weights (1/rank^1.1) and one currency each;
   SKUs with one fixed integer unit price each.
2. Per order: its lifecycle path and real times (payment seconds-minutes after
   placing, reservation minutes, shipping hours, delivery 1-3 days, a refund
   hours to days after delivery for ~10%; ~5% payment failures, ~8% cancelled
   in all).
3. Per event: event time vs. arrival. Usually arrival = occurredAt. A share
   ``late_rate`` arrives 1 s to ``max_lateness_ms`` late; a share ``skew_rate``
   of non-first events has a clock that stepped back (occurredAt = the previous
   event's minus 1-60 s; arrival = its real time). Per order, arrival never
   decreases in seq order and ``arrival - occurredAt <= max_lateness_ms``
   always: a step-back that would break the bound (the previous event is more
   than that much earlier in real time) is pulled forward to the bound and so
   usually is no step-back any more. Step-backs therefore survive mostly
   between close events (payment after placing, cancel after a failure): about
   0.1% of events at the defaults, not 0.5%. Events arriving after the end of
   the history are not emitted (orders still open "now" are realistic).
4. Encode every event once (pre-encoded bytes are what the producer sends),
   a share ``old_version_rate`` of the events of evolved types (OrderPlaced,
   PaymentAuthorized) with an older schema version, as an old producer would
   write them (drawn from a ``Random`` of its own, so the share changes no byte
   of the newest-version events' content),
   and let :class:`~scripts.workload.poison.Poisoner` insert poison next to
   the records it is anchored at.
5. One stable sort of all records by arrival: many orders interleave, each
   order's records stay in seq order.

Order ids grow with placement time (``ord-0000001`` is placed first).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from random import Random
from types import MappingProxyType

from pipelines.gc_pause import gc_paused
from schemas.errors import ConfigError
from scripts.workload.encoding import FastEncoder
from scripts.workload.events import Emitted, build_payload, new_uuid
from scripts.workload.model import LineItem, Order, Refund, RefundLine
from scripts.workload.poison import Poisoner

__all__ = ["WorkloadConfig", "Catalog", "Workload", "generate", "DEFAULT_START_MS"]

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: 2024-01-01T00:00:00Z: a fixed default so that a default run is reproducible to the byte.
DEFAULT_START_MS = 1_704_067_200_000

CURRENCIES = ("EUR", "USD", "GBP")

# Lifecycle probabilities, per order. Cancellations total ~8%: all payment
# failures, plus cancellations after authorisation and after a released reservation.
P_PAYMENT_FAILED = 0.05
P_CANCEL_AFTER_AUTH = 0.02
P_RELEASE = 0.015
P_REFUND = 0.10
P_FULL_REFUND = 0.3
REFUND_REASONS = ("damaged", "wrong size", "not as described", "changed mind")

_ARRIVAL = itemgetter(Emitted._fields.index("arrival_ms"))


@dataclass(frozen=True)
class WorkloadConfig:
    """Everything a workload depends on; equal configs give byte-identical workloads."""

    seed: int = 0
    orders: int = 10_000
    start_ms: int = DEFAULT_START_MS
    days: float = 3.0
    late_rate: float = 0.02
    skew_rate: float = 0.005
    max_lateness_ms: int = 600_000
    poison_rate: float = 0.0
    #: Share of the events of a type with several schema versions written with an older one
    #: (uniformly among the older ones); 0: every event is written with the newest schema.
    old_version_rate: float = 0.0
    customers: int | None = None  # None: max(50, orders // 5)
    skus: int = 300

    def __post_init__(self) -> None:
        if self.orders < 0:
            raise ConfigError(f"orders must be >= 0, got {self.orders}")
        if not self.days > 0:
            raise ConfigError(f"days must be > 0, got {self.days}")
        for name in ("late_rate", "skew_rate", "poison_rate", "old_version_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be within [0, 1], got {value}")
        if self.late_rate + self.skew_rate > 1.0:
            raise ConfigError("late_rate + skew_rate must not exceed 1")
        if self.max_lateness_ms < 0:
            raise ConfigError(f"max_lateness_ms must be >= 0, got {self.max_lateness_ms}")
        if self.customers is not None and self.customers < 1:
            raise ConfigError(f"customers must be >= 1, got {self.customers}")
        if self.skus < 4:
            raise ConfigError(f"skus must be >= 4 (an order has up to 4 distinct lines), got {self.skus}")

    @property
    def end_ms(self) -> int:
        """The end of the simulated history ("now"): nothing arriving later is emitted."""
        return self.start_ms + int(self.days * DAY_MS)

    @property
    def customer_count(self) -> int:
        """How many customers the catalog has."""
        return self.customers if self.customers is not None else max(50, self.orders // 5)


@dataclass(frozen=True)
class Catalog:
    """Customers (rank order, most active first) with their currency, and SKUs with their unit price."""

    customer_ids: tuple[str, ...]
    currency_of: Mapping[str, str]
    price_of: Mapping[str, int]


@dataclass(frozen=True)
class Workload:
    """A generated workload: every record in emission order, and the facts of every order."""

    config: WorkloadConfig
    records: tuple[Emitted, ...]
    orders: Mapping[str, Order]
    catalog: Catalog

    def good(self) -> Iterator[Emitted]:
        """The non-poison records, in emission order."""
        return (r for r in self.records if r.poison is None)

    @property
    def poison_count(self) -> int:
        """How many poison records were injected."""
        return sum(1 for r in self.records if r.poison is not None)


def _catalog(config: WorkloadConfig, rng: Random) -> Catalog:
    n = config.customer_count
    customer_ids = tuple(f"cust-{i:06d}" for i in range(1, n + 1))
    currency_of = {c: CURRENCIES[rng.randrange(len(CURRENCIES))] for c in customer_ids}
    # Prices like 4.99 or 129.99: a whole number of units minus one minor unit.
    price_of = {f"sku-{i:04d}": rng.randint(1, 200) * 100 - 1 for i in range(1, config.skus + 1)}
    return Catalog(customer_ids, MappingProxyType(currency_of), MappingProxyType(price_of))


def _lifecycle(rng: Random, placed_ms: int) -> tuple[list[str], list[int]]:
    """The event types and real times of one order's full life (before any cut at "now")."""
    u = rng.random
    types = ["OrderPlaced"]
    times = [placed_ms]
    t = placed_ms + 2 * SECOND_MS + int(u() * 178 * SECOND_MS)
    if u() < P_PAYMENT_FAILED:
        types += ("PaymentFailed", "OrderCancelled")
        times += (t, t + SECOND_MS + int(u() * 2 * MINUTE_MS))
        return types, times
    types.append("PaymentAuthorized")
    times.append(t)
    if u() < P_CANCEL_AFTER_AUTH:
        types.append("OrderCancelled")
        times.append(t + MINUTE_MS + int(u() * HOUR_MS))
        return types, times
    t += MINUTE_MS + int(u() * 29 * MINUTE_MS)
    types.append("InventoryReserved")
    times.append(t)
    if u() < P_RELEASE:
        t += 10 * MINUTE_MS + int(u() * 12 * HOUR_MS)
        types += ("InventoryReleased", "OrderCancelled")
        times += (t, t + SECOND_MS + int(u() * MINUTE_MS))
        return types, times
    t += HOUR_MS + int(u() * 11 * HOUR_MS)
    types.append("OrderShipped")
    times.append(t)
    t += DAY_MS + int(u() * 2 * DAY_MS)
    types.append("OrderDelivered")
    times.append(t)
    if u() < P_REFUND:
        types.append("RefundIssued")
        times.append(t + 2 * HOUR_MS + int(u() * 3 * DAY_MS))
    return types, times


def _refund(rng: Random, items: tuple[LineItem, ...]) -> Refund:
    """Some units of some lines (or, sometimes, everything); the amount is the exact sum."""
    if rng.random() < P_FULL_REFUND:
        lines = tuple(RefundLine(i.sku, i.quantity, i.unit_price_minor) for i in items)
    else:
        chosen = [i for i in items if rng.random() < 0.5] or [items[rng.randrange(len(items))]]
        lines = tuple(RefundLine(i.sku, rng.randint(1, i.quantity), i.unit_price_minor) for i in chosen)
    amount = sum(line.quantity * line.unit_price_minor for line in lines)
    return Refund(lines, amount, REFUND_REASONS[rng.randrange(len(REFUND_REASONS))])


def _times(
    rng: Random, real_ms: list[int], *, late_rate: float, skew_rate: float, max_lateness_ms: int, end_ms: int
) -> tuple[list[int], list[int]]:
    """(occurredAt, arrival) of each event, cut before the first that arrives after ``end_ms``."""
    u = rng.random
    lateness = max_lateness_ms
    late_min = min(SECOND_MS, lateness)
    occurred: list[int] = []
    arrival: list[int] = []
    prev_occ = prev_arr = 0
    for k, t in enumerate(real_ms):
        r = u()
        if r < late_rate and lateness > 0:
            occ, arr = t, t + late_min + int(u() * (lateness - late_min))
        elif k and r < late_rate + skew_rate:
            occ, arr = prev_occ - SECOND_MS - int(u() * 59 * SECOND_MS), t
        else:
            occ = arr = t
        # Per-key order is arrival order: never arrive before the previous event of the order.
        if k and arr < prev_arr:
            arr = prev_arr
        # Replay reads max_lateness_ms past T, so no event may arrive later than that after its occurredAt.
        if arr - occ > lateness:
            occ = arr - lateness
        if arr > end_ms:
            break
        occurred.append(occ)
        arrival.append(arr)
        prev_occ, prev_arr = occ, arr
    return occurred, arrival


def _customer_picker(catalog: Catalog, rng: Random) -> Callable[[], str]:
    """Draws customers with Zipf-like weights 1/rank^1.1: a few customers place many orders."""
    cumulative = list(itertools.accumulate(1.0 / rank**1.1 for rank in range(1, len(catalog.customer_ids) + 1)))
    total, ids, u = cumulative[-1], catalog.customer_ids, rng.random
    return lambda: ids[bisect.bisect(cumulative, u() * total)]


#: (event type) -> the schema version to write it with, None for the newest.
VersionPicker = Callable[[str], int | None]


def _version_picker(config: WorkloadConfig, encoder: FastEncoder) -> VersionPicker | None:
    """Draws an older schema version for a share ``old_version_rate`` of the events of evolved types."""
    if config.old_version_rate <= 0:
        return None
    registry = encoder.codec.registry
    older = {s.event_type: [v.version for v in registry.versions(s.event_type)][:-1] for s in registry.latest()}
    older = {t: versions for t, versions in older.items() if versions}
    draw = Random(f"versions:{config.seed}").random
    rate = config.old_version_rate

    def pick(event_type: str) -> int | None:
        versions = older.get(event_type)
        if versions is None or draw() >= rate:
            return None
        return versions[int(draw() * len(versions))]

    return pick


def _emit(
    order: Order, types: list[str], occurred: list[int], arrival: list[int], *, encoder: FastEncoder, rng: Random,
    versions: VersionPicker | None = None,
) -> list[Emitted]:
    """The order's good records, in seq order, encoded."""
    key = order.order_id.encode()
    order_id = order.order_id
    # The correlation id is the id of the PlaceOrder command that started it all,
    # so it is also the cause of the first event.
    causation = order.correlation_id
    write = encoder.order_writer(order_id, correlation_id=order.correlation_id)
    new_record = tuple.__new__  # what Emitted(...) calls, without its Python-level __new__ frame
    previous_type: str | None = None
    emitted: list[Emitted] = []
    for k in range(len(occurred)):
        event_type = types[k]
        event_id = new_uuid(rng)
        version = versions(event_type) if versions is not None else None
        payload = build_payload(order, event_type, previous_type=previous_type, rng=rng, version=version)
        if version is None:
            value = write(event_type, event_id, k + 1, occurred[k], causation, payload)
        else:  # an old producer's event: rare, through the codec
            envelope = {
                "eventId": event_id, "eventType": event_type, "schemaVersion": version, "orderId": order_id, "seq": k + 1,
                "occurredAt": occurred[k], "correlationId": order.correlation_id, "causationId": causation,
            }
            value = encoder.encode({"envelope": envelope, **payload})
        emitted.append(
            new_record(Emitted, (key, value, occurred[k], arrival[k], order_id, k + 1, event_type, event_id, None))
        )
        causation, previous_type = event_id, event_type
    return emitted





def generate(config: WorkloadConfig, *, encoder: FastEncoder | None = None) -> Workload:
    """Generate the workload of ``config``: deterministic, pre-encoded, in emission order."""
    with gc_paused():
        return _generate(config, encoder or FastEncoder())


def _generate(config: WorkloadConfig, encoder: FastEncoder) -> Workload:
    rng = Random(config.seed)
    u = rng.random
    catalog = _catalog(config, rng)
    pick_customer = _customer_picker(catalog, rng)
    sku_ids = tuple(catalog.price_of)
    # LineItems are immutable and few (SKUs x quantities): one shared object per (sku, quantity).
    line_of = {(sku, q): LineItem(sku, q, price) for sku, price in catalog.price_of.items() for q in range(1, 6)}
    currency_of = dict(catalog.currency_of)
    poisoner = Poisoner(config, encoder=encoder) if config.poison_rate > 0 else None
    versions = _version_picker(config, encoder)
    end_ms = config.end_ms
    span_ms = end_ms - config.start_ms
    # Placement times first, in order, so that order ids grow with time like a real sequence's would.
    placed_ms = sorted(config.start_ms + int(u() * span_ms) for _ in range(config.orders))

    records: list[Emitted] = []
    orders: dict[str, Order] = {}
    for n, placed in enumerate(placed_ms, start=1):
        order_id = f"ord-{n:07d}"
        customer_id = pick_customer()
        picked: list[str] = []
        for _ in range(1 + int(u() * 4)):
            sku = sku_ids[int(u() * len(sku_ids))]
            while sku in picked:
                sku = sku_ids[int(u() * len(sku_ids))]
            picked.append(sku)
        items = tuple(line_of[s, 1 + int(u() * 5)] for s in picked)
        types, real_ms = _lifecycle(rng, placed)
        occurred, arrival = _times(
            rng,
            real_ms,
            late_rate=config.late_rate,
            skew_rate=config.skew_rate,
            max_lateness_ms=config.max_lateness_ms,
            end_ms=end_ms,
        )
        if not occurred:
            continue  # its OrderPlaced arrives after "now": the order does not exist yet
        order = Order(
            order_id=order_id,
            customer_id=customer_id,
            currency=currency_of[customer_id],
            items=items,
            total_minor=sum(i.quantity * i.unit_price_minor for i in items),
            correlation_id=new_uuid(rng),
            refund=_refund(rng, items) if len(occurred) == len(types) and types[-1] == "RefundIssued" else None,
        )
        orders[order_id] = order
        emitted = _emit(order, types, occurred, arrival, encoder=encoder, rng=rng, versions=versions)
        if poisoner is not None:
            emitted = poisoner.inject(order, emitted)
        records += emitted

    # A stable sort by arrival alone: records arriving in the same millisecond keep the order they
    # were appended in, which is seq order within an order and puts each poison record where it
    # was placed next to its anchor.
    records.sort(key=_ARRIVAL)
    return Workload(
        config=config,
        records=tuple(records),
        orders=MappingProxyType(orders),
        catalog=catalog,
    )
