"""The PostgreSQL harness itself: a real server that SQLAlchemy can write to and read from."""

from __future__ import annotations

import sqlalchemy as sa


def test_postgres_round_trip(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg2://orch_queue:")
    assert "@127.0.0.1:" in postgres_url
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
            assert "PostgreSQL" in version
            conn.execute(sa.text("DROP TABLE IF EXISTS harness_probe"))
            conn.execute(sa.text("CREATE TABLE harness_probe (id serial PRIMARY KEY, name text NOT NULL)"))
            conn.execute(sa.text("INSERT INTO harness_probe (name) VALUES (:name)"), {"name": "hello"})
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM harness_probe")).all()
        assert [tuple(r) for r in rows] == [(1, "hello")]
    finally:
        engine.dispose()


def test_queue_url_starts_empty(queue_url: str) -> None:
    """Each backend's database starts with no tables, whatever an earlier test left behind."""
    engine = sa.create_engine(queue_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE leftover (id integer PRIMARY KEY)"))
    finally:
        engine.dispose()
