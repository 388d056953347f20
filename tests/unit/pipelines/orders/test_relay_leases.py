"""Shard leases of the outbox relays (pipelines.orders.relay_leases), on SQLite and PostgreSQL: fair shares, hand-over, takeover.

No broker. The PostgreSQL cases use the ``postgres_url`` fixture (a fresh empty database per test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pipelines.orders.database import migrate, open_database
from pipelines.orders.relay_leases import ShardLeases, lease_holders
from pipelines.orders.tables import OUTBOX_SHARDS, relay_leases

ALL = tuple(range(OUTBOX_SHARDS))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'orders.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_database(url, pool_size=8)
    migrate(engine)
    yield engine
    engine.dispose()


def _relay(engine: Engine, owner: str, *, ttl_s: float = 10.0) -> ShardLeases:
    leases = ShardLeases(engine, owner=owner, ttl_s=ttl_s)
    leases.prepare()
    return leases


def _poll(condition, *, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(0.02)
    return result


def _owners(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(relay_leases.c.shard, relay_leases.c.owner).where(relay_leases.c.shard >= 0)).all())


def test_a_lone_relay_holds_every_shard_and_keeps_them(engine: Engine) -> None:
    """Scenario: one relay ticks, then ticks again. We expect all 64 shards, valid, renewed, nothing claimed twice."""
    a = _relay(engine, "a")
    first = a.tick()
    assert first.shards == ALL and first.claimed == ALL and first.relays == 1 and first.fair_share == OUTBOX_SHARDS
    again = a.tick()
    assert again.shards == ALL and again.claimed == () and again.shed == ()
    assert a.valid_shards() == ALL
    assert set(_owners(engine).values()) == {"a"}


def test_a_second_relay_gets_half_once_the_first_sheds_them(engine: Engine) -> None:
    """Scenario: relay a holds everything, b joins. We expect b to get nothing until a's next tick sheds 32, then the other 32."""
    a, b = _relay(engine, "a"), _relay(engine, "b")
    a.tick()
    joined = b.tick()
    assert joined.shards == () and joined.relays == 2 and joined.fair_share == 32
    shed = a.tick()
    assert shed.shards == tuple(range(32)) and shed.shed == tuple(range(32, 64))
    claimed = b.tick()
    assert claimed.shards == tuple(range(32, 64))
    assert set(a.valid_shards()).isdisjoint(b.valid_shards())
    assert lease_holders(engine).shards_by_relay == {"a": 32, "b": 32}


def test_three_relays_converge_on_fair_disjoint_shares(engine: Engine) -> None:
    """Scenario: three relays tick in turns. We expect disjoint shares of at most ceil(64/3) = 22 covering all 64."""
    relays = [_relay(engine, name) for name in "abc"]
    for _ in range(3):
        for r in relays:
            r.tick()
    shares = [set(r.valid_shards()) for r in relays]
    assert all(len(s) <= 22 for s in shares)
    assert set().union(*shares) == set(ALL) and sum(map(len, shares)) == OUTBOX_SHARDS


def test_a_clean_stop_hands_its_shards_over_at_the_next_tick(engine: Engine) -> None:
    """Scenario: a and b split the shards, a releases. We expect b to hold all 64 after one tick, with no ttl to wait."""
    a, b = _relay(engine, "a"), _relay(engine, "b")
    a.tick(), b.tick(), a.tick(), b.tick()
    a.release()
    assert a.valid_shards() == ()
    state = b.tick()
    assert state.relays == 1 and state.shards == ALL
    assert lease_holders(engine).shards_by_relay == {"b": 64}


def test_a_crashed_relays_shards_are_taken_over_after_they_lapse(engine: Engine) -> None:
    """Scenario: a (ttl 1 s) holds everything and stops ticking (a crash). We expect b to claim nothing while a's
    leases live, and all 64 once they lapse; a's own view of them goes invalid before that."""
    a, b = _relay(engine, "a", ttl_s=1.0), _relay(engine, "b", ttl_s=1.0)
    a.tick()
    assert b.tick().shards == ()
    _poll(lambda: a.valid_shards() == (), timeout_s=5, what="a's leases to go invalid locally")
    state = _poll(lambda: (s := b.tick()).shards == ALL and s, timeout_s=10, what="b to take over a's shards")
    assert state.relays == 1


def test_the_same_owner_after_a_restart_takes_its_leases_back_at_once(engine: Engine) -> None:
    """Scenario: relay a holds everything, its process dies, a new process with the same id ticks. We expect all 64 at once."""
    _relay(engine, "a").tick()
    again = _relay(engine, "a").tick()
    assert again.shards == ALL


def test_leases_stop_being_valid_without_ticks(engine: Engine) -> None:
    """Scenario: a relay cannot tick (its database is down). We expect it to stop publishing before its leases can lapse."""
    a = _relay(engine, "a", ttl_s=1.0)
    started = time.monotonic()
    a.tick()
    _poll(lambda: a.valid_shards() == (), timeout_s=5, what="the leases to go invalid")
    assert time.monotonic() - started < 1.0
    assert a.held_shards() == ALL


def test_relays_ticking_at_the_same_time_never_share_a_shard(engine: Engine) -> None:
    """Scenario: four relays tick concurrently, 25 times each. We expect at every tick no shard in two relays' valid sets, and
    in the end disjoint fair shares covering all 64 (PostgreSQL: SKIP LOCKED; SQLite: the write lock)."""
    relays = [_relay(engine, f"r{i}") for i in range(4)]
    # A relay's own tick and another's look at its shards take turns (as its own publishing and its ticks do, in one thread).
    locks = {id(r): threading.Lock() for r in relays}
    overlaps: list[tuple[str, str, tuple[int, ...]]] = []
    errors: list[BaseException] = []

    def run(me: ShardLeases) -> None:
        try:
            for _ in range(25):
                with locks[id(me)]:
                    me.tick()
                    mine = set(me.valid_shards())
                for other in relays:
                    if other is not me:
                        with locks[id(other)]:
                            if common := mine & set(other.valid_shards()):
                                overlaps.append((me.owner, other.owner, tuple(sorted(common))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not overlaps
    for r in relays:
        r.tick()
    shares = [set(r.valid_shards()) for r in relays]
    assert all(len(s) <= 16 for s in shares) and set().union(*shares) == set(ALL)
    assert _owners(engine) == {shard: r.owner for r in relays for shard in r.valid_shards()}
