"""Per-thread SQLite read connections (datastore.thread_connections): one per thread, the pool's
PRAGMAs, no transaction left open, closed by dispose, never shared across a fork."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from datastore.engine import make_engine
from datastore.prepared import PreparedRead
from datastore.thread_connections import has_thread_connections, thread_cursor

metadata = sa.MetaData()
items = sa.Table(
    "reader_items",
    metadata,
    sa.Column("id", sa.String(8), primary_key=True),
    sa.Column("size", sa.Integer),
)
SIZE_OF = PreparedRead(sa.select(items.c.size).where(items.c.id == sa.bindparam("id")))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(items), [{"id": "a", "size": 1}])
    yield engine
    engine.dispose()


def _size(db: sa.Engine) -> int:
    return int(SIZE_OF.rows(db, id="a")[0].size)


def _set_size(db: sa.Engine, size: int) -> None:
    with db.begin() as conn:
        conn.execute(sa.update(items).values(size=size))


def test_only_sqlite_files_have_thread_connections(tmp_path: Path) -> None:
    assert has_thread_connections(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert not has_thread_connections(make_engine("sqlite://"))
    assert not has_thread_connections(make_engine("sqlite:///:memory:"))


def test_a_thread_keeps_one_connection_with_the_pools_pragmas(db: sa.Engine) -> None:
    cursor = thread_cursor(db)
    assert thread_cursor(db) is cursor
    connection = cursor.connection
    assert connection.isolation_level is None  # autocommit: each SELECT is its own snapshot
    assert connection.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
    assert connection.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(thread_cursor(db).connection))
    thread.start()
    thread.join()
    assert seen and seen[0] is not connection


def test_reads_hold_no_snapshot_between_statements(db: sa.Engine) -> None:
    """Each read sees the last commit, and an idle reader never blocks a full checkpoint."""
    assert _size(db) == 1
    _set_size(db, 2)
    assert _size(db) == 2
    assert db.url.database
    checkpointer = sqlite3.connect(db.url.database, isolation_level=None)
    try:
        busy, _log, _done = checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        checkpointer.close()
    assert busy == 0
    assert not thread_cursor(db).connection.in_transaction


def test_threads_read_side_by_side(db: sa.Engine) -> None:
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def reader() -> None:
        try:
            start.wait()
            results.extend(_size(db) for _ in range(50))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [1] * 400


def test_dispose_closes_the_readers_and_the_next_read_opens_one(db: sa.Engine) -> None:
    old = thread_cursor(db).connection
    db.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        old.execute("SELECT 1")
    _set_size(db, 3)
    assert _size(db) == 3
    assert thread_cursor(db).connection is not old


def _child_reads(url: str, out: multiprocessing.connection.Connection) -> None:
    engine = make_engine(url)
    out.send(int(SIZE_OF.rows(engine, id="a")[0].size))


def test_a_forked_child_opens_its_own_reader(db: sa.Engine) -> None:
    parent = thread_cursor(db).connection
    _size(db)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        cursor = thread_cursor(db)
        send.send((cursor.connection is not parent, _size(db)))

    process = context.Process(target=child)
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    assert receive.recv() == (True, 1)
    assert thread_cursor(db).connection is parent and _size(db) == 1


def test_a_finished_threads_reader_is_closed_by_the_next_thread(db: sa.Engine) -> None:
    opened: list[sqlite3.Connection] = []

    def read() -> None:
        opened.append(thread_cursor(db).connection)
        _size(db)

    for _ in range(2):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    first, second = opened
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")
    assert second.execute("SELECT 1").fetchone() == (1,)
