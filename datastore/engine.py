"""SQLAlchemy engine construction: every repository of :mod:`datastore` runs on one of these.

SQLite gets WAL, a busy timeout and foreign keys on every connection, and its transactions
begin with ``BEGIN IMMEDIATE`` so a claim takes the write lock before it reads; transactions
opened with :func:`reading` begin with a plain ``BEGIN`` instead, so readers never queue on the
write lock (WAL lets them read beside a writer). PostgreSQL is used as SQLAlchemy configures it
(claims there use ``FOR UPDATE SKIP LOCKED``).

A SQLite store holds private engine state: its folder is created 0700 and the database file
0600 before SQLite opens it (SQLite gives ``-wal`` and ``-shm`` the database file's mode).
The tables themselves come from the migrations (:func:`datastore.migrate.upgrade`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite connections kept open per process: more than a process's threads that read at once
#: (gunicorn threads, engine workers and loops), so a checkout never opens a new connection
#: (which costs its PRAGMAs and an open/close of three files).
SQLITE_POOL_SIZE = 32
READ_ONLY_OPTION = "tidewater_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads: on SQLite it does not take the write lock."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY_OPTION: True})
        with conn.begin():
            yield conn


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


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode (a no-op once it is). The first connections to a new file
    can race to switch it: each reads the header, then wants the exclusive lock, and SQLite
    answers "database is locked" at once to one of them (a deadlock, which the busy timeout
    does not wait out). That one retries until the other has switched, within the busy
    timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; for SQLite the parent folder is created (0700) if missing
    and the database file is 0600."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    pool: dict[str, int] = {}
    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        _private_sqlite_file(Path(parsed.database).expanduser())
        pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_SIZE}
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **pool,  # type: ignore[arg-type]
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # deleted rows and scrubbed columns are overwritten, not left in freed pages
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: read-then-write claims never interleave.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
