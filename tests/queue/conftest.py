"""Database fixtures for the queue tests: SQLite in a temp dir, and a real PostgreSQL server.

`postgres_url` starts one throw-away PostgreSQL server (tests/harness/postgres.py) for the whole
session, the first time a test asks for it, and stops it by PID at the end. `queue_url` runs a test
once per backend, each time on an empty database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.harness.postgres import PostgresError, PostgresServer, missing
from tests.harness.s3 import free_port


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of the `orch_queue` database on a real PostgreSQL server (127.0.0.1, a free port: two pytest
    processes on one machine each have their own)."""
    absent = missing()
    if absent:
        pytest.fail(
            f"the PostgreSQL tests need {', '.join(absent)} (/usr/lib/postgresql/*/bin): run `make postgres-deps`", pytrace=False
        )
    root = tmp_path_factory.mktemp("postgres")
    try:
        server = PostgresServer.start(root, port=free_port())
    except PostgresError as exc:
        pytest.fail(f"PostgreSQL test server did not start in {root}: {exc}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()
        assert not server.is_running(), f"postgres (pid {server.pid}) still running after stop()"


def _empty(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database URL per backend, empty at the start of the test.

    postgres_url is looked up only for the postgres case, so selecting just the sqlite cases
    (`-k sqlite`) never starts the server.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    url = request.getfixturevalue("postgres_url")
    _empty(url)
    return url
