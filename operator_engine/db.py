"""SQLAlchemy engine construction shared by the job store, the provider and the admin API.

SQLite gets WAL, a busy timeout and foreign keys on every connection, and its transactions
begin with ``BEGIN IMMEDIATE`` so a claim takes the write lock before it reads; transactions
opened with :func:`reading` begin with a plain ``BEGIN`` instead, so readers never queue on the
write lock (WAL lets them read beside a writer). PostgreSQL is used as SQLAlchemy configures it
(claims there use ``FOR UPDATE SKIP LOCKED``).

:class:`PreparedRead` runs the hottest reads (a request's nonce, a job's status) on the DBAPI
connection directly, with SQL compiled once per dialect: SQLAlchemy's per-execution work
(statement construction, cache key, execution context) cost more than the query itself.

A SQLite store holds private engine state: its folder is created 0700 and the database file
0600 before SQLite opens it (SQLite gives ``-wal`` and ``-shm`` the database file's mode).
There are no migrations yet: :func:`add_missing_columns` adds columns that a newer version
declares to tables an older version created (nullable columns only, so old rows stay valid).
"""

from __future__ import annotations

import fcntl
import os
from collections import namedtuple
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import Dialect, make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "tidewater_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads: on SQLite it does not take the write lock."""
    with engine.connect() as conn:
        conn.execution_options(**{_READ_ONLY: True})
        with conn.begin():
            yield conn


def _dialect_key(dialect: Dialect) -> tuple[str, str, str]:
    return (dialect.name, dialect.driver, dialect.paramstyle)


class PreparedRead:
    """A ``SELECT`` (bound parameters named with ``sqlalchemy.bindparam``) compiled once per
    dialect and run on a pooled DBAPI connection, in a read transaction as :func:`reading`
    opens it (plain ``BEGIN`` on SQLite). Rows are named tuples (``row.column``) whose values
    went through the columns' SQLAlchemy result processors, exactly as ``conn.execute`` gives
    them (dates parsed, JSON decoded, booleans as ``bool``)."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._row: Any = namedtuple("Row", statement.selected_columns.keys())  # type: ignore[misc]
        #: per (dialect, driver, paramstyle): the SQL, positional bind order, result processors
        self._compiled: dict[tuple[str, str, str], tuple[str, Sequence[str] | None, list[Any]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, Sequence[str] | None, list[Any]]:
        compiled = self.statement.compile(dialect=dialect)
        order = list(compiled.positiontup or ()) if dialect.positional else None
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self.statement.selected_columns
        ]
        entry = (compiled.string, order, processors)
        self._compiled[_dialect_key(dialect)] = entry
        return entry

    def run(self, cursor: Any, dialect: Dialect, params: dict[str, Any]) -> list[Any]:
        """Execute on a DBAPI ``cursor`` of ``dialect`` (see :func:`raw_reading`)."""
        sql, order, processors = self._compiled.get(_dialect_key(dialect)) or self._compile(dialect)
        cursor.execute(sql, [params[name] for name in order] if order is not None else params)
        make = self._row._make
        if not any(processors):
            return [make(raw) for raw in cursor.fetchall()]
        return [
            make(
                [value if p is None else p(value) for p, value in zip(processors, raw, strict=True)]
            )
            for raw in cursor.fetchall()
        ]

    def rows(self, engine: Engine, **params: Any) -> list[Any]:
        """All rows for ``params``, in a read transaction of their own."""
        with raw_reading(engine) as cursor:
            return self.run(cursor, engine.dialect, params)


@contextmanager
def raw_reading(engine: Engine) -> Iterator[Any]:
    """A DBAPI cursor in a read-only transaction (for :meth:`PreparedRead.run`): on SQLite a
    plain ``BEGIN`` (no write lock); elsewhere the driver's implicit transaction. Ended with a
    rollback: it wrote nothing."""
    connection = engine.raw_connection()  # pool checkout (pre-ping and events as usual)
    try:
        cursor = connection.cursor()
        try:
            if is_sqlite(engine):
                cursor.execute("BEGIN")
            yield cursor
        finally:
            cursor.close()
            connection.rollback()
    finally:
        connection.close()  # back to the pool


def is_sqlite(engine: Engine) -> bool:
    """True when ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; a folder this creates is 0700."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    return path


def _private_sqlite_file(database: Path) -> None:
    """Create the database file 0600 (or tighten an existing one and its ``-wal``/``-shm``)
    before SQLite opens it: SQLite creates the journal files with the database's mode."""
    private_dir(database.parent)
    fd = os.open(database, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.chmod(f"{database}{suffix}", 0o600)
        except FileNotFoundError:
            pass


def add_missing_columns(engine: Engine, table: sa.Table) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` for each nullable column of ``table`` that the existing
    table lacks (a store created by an older version); returns the names added."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    added = []
    with engine.begin() as conn:
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            preparer = engine.dialect.identifier_preparer
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(table)} "
                f"ADD COLUMN {preparer.format_column(column)} {kind}"
            )
            added.append(column.name)
    return added


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; for SQLite the parent folder is created (0700) if missing
    and the database file is 0600."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        _private_sqlite_file(Path(parsed.database).expanduser())
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # deleted rows and scrubbed columns are overwritten, not left in freed pages
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: read-then-write claims never interleave.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def schema_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock (``flock`` on ``data_dir/.schema.lock``) while a process creates
    or upgrades tables: processes of one host starting together (``tidewater serve``'s HTTP
    workers and engine) would otherwise race ``CREATE TABLE`` on a fresh store."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / ".schema.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
