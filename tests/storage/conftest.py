"""A store made by the release before migrations (tests/fixtures/legacy_9cb36ad), as a copy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from datastore.engine import make_engine
from tests.engine.conftest import file_server  # noqa: F401  (a fixture the engine test uses)

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy_9cb36ad"
#: the Fernet key the fixture's credential was sealed with (see its make.py.txt)
LEGACY_CREDENTIALS_KEY = "xJ0tv7iIpWJ4gk0JeI9kJPuLj3fvW3d0QWZ6z6FbBdo="


def load_legacy_postgres(url: str) -> None:
    """Restore the fixture's ``pg_dump`` into the empty database at ``url``."""
    engine = make_engine(url)
    connection = engine.raw_connection()
    try:
        # plain SQL without parameters: psycopg runs the whole script in one call
        connection.cursor().execute((LEGACY / "postgres.sql").read_text())
        connection.commit()
    finally:
        connection.close()
        engine.dispose()  # the dump empties search_path: never reuse its connection


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def legacy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh copy of the legacy store (SQLite file or PostgreSQL database)."""
    if request.param == "sqlite":
        data = tmp_path / "data"
        data.mkdir(mode=0o700)
        shutil.copyfile(LEGACY / "tidewater.db", data / "tidewater.db")
        yield f"sqlite:///{data / 'tidewater.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        load_legacy_postgres(url)
        yield url


@pytest.fixture
def legacy_db(legacy_url: str) -> Iterator[Engine]:
    engine = make_engine(legacy_url)
    yield engine
    engine.dispose()
