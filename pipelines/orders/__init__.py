"""The command side: the order service, its event store and transactional outbox, and the outbox relay.

An order service decides commands against its own event store (the ``events`` table,
ordered by seq per order) with the same order state machine the projections fold with
(:func:`pipelines.projections.order_lifecycle.order_step`), and writes each new event and
its outbox row in one database transaction. The relay publishes outbox rows to the orders
topic. SQLite (a file under ``.run/``) by default; PostgreSQL when ``REWIND_DATABASE_URL``
names one.
"""
