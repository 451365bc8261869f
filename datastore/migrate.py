"""Schema migrations (Alembic): bring a database to the schema of :mod:`datastore.schema`.

:func:`upgrade` runs the migrations a database lacks, in one transaction that holds the write
lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so processes that start
together never race each other; ``tidewater serve`` and ``tidewater engine`` call it at every
start under :func:`schema_lock` too. A store made before migrations existed (no
``alembic_version`` table) is adopted by the first migration, which creates only the tables it
lacks and adds the nullable columns its tables lack, then records its revision.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from datastore.engine import is_sqlite, reading

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK_KEY = 0x7469_6462  # "tidb": one advisory lock serialises PostgreSQL upgrades


class SchemaError(RuntimeError):
    """The store's schema cannot be brought to this version's (made by a newer tidewater)."""


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for our migrations (``connection``: the one to migrate)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head() -> str:
    """The newest revision: what :func:`upgrade` brings a database to."""
    found = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert found is not None, "datastore/migrations has no revision"
    return found


@cache
def _known() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def current(engine: Engine) -> str | None:
    """The database's revision; None before its first upgrade."""
    with reading(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_legacy(engine: Engine) -> bool:
    """True for a store made before migrations: tables but no recorded revision."""
    tables = set(sa.inspect(engine).get_table_names())
    return "alembic_version" not in tables and "jobs" in tables


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Run the migrations up to ``revision``; returns the revision the database was at.
    :class:`SchemaError` when the store is at a revision this version does not know."""
    before = current(engine)
    if before == head() and revision == "head":
        return before  # the common case at every start: nothing to do, no write lock taken
    if before is not None and before not in _known():
        raise SchemaError(
            f"the store is at schema revision {before}, which this tidewater does not know "
            f"(its newest is {head()}): a newer tidewater made it; run that version"
        )
    if before is None and is_legacy(engine):
        log.info("adopting a store made before migrations (its rows are kept)")
    with engine.begin() as conn:
        if not is_sqlite(engine):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        command.upgrade(alembic_config(conn), revision)
    log.info("store upgraded from %s to %s", before or "nothing", current(engine))
    return before


@contextmanager
def schema_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock (``flock`` on ``data_dir/.schema.lock``) while a process upgrades
    the schema: processes of one host starting together (``tidewater serve``'s HTTP workers and
    engine) then wait for the first one instead of checking the schema all at once."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / ".schema.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
