"""A new SQLite store's first connections switching it to WAL together: the one SQLite
refuses at once ("database is locked": a lock deadlock the busy timeout does not wait out)
retries until the other has switched, and every connection comes up in WAL mode."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from datastore import engine as engine_module
from datastore.engine import make_engine


class _LockedTwice:
    """A cursor whose first two ``PRAGMA journal_mode=WAL`` fail as in the race."""

    def __init__(self, error: str = "database is locked") -> None:
        self.error = error
        self.calls = 0

    def execute(self, sql: str) -> None:
        assert sql == "PRAGMA journal_mode=WAL"
        self.calls += 1
        if self.calls <= 2:
            raise sqlite3.OperationalError(self.error)


def test_a_locked_switch_is_retried() -> None:
    cursor = _LockedTwice()
    engine_module._use_wal(cursor)
    assert cursor.calls == 3


def test_other_errors_are_not_retried() -> None:
    cursor = _LockedTwice("disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        engine_module._use_wal(cursor)
    assert cursor.calls == 1


def test_a_switch_waits_for_a_writer_holding_a_new_file(tmp_path: Path) -> None:
    """A connection (still in the rollback journal) holds the new file's exclusive lock for a
    while: the engine's first connection waits, then switches the file to WAL."""
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE t (x)")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        release.join()
        holder.close()
        engine.dispose()


def test_many_first_connections_at_once_all_come_up_in_wal(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    engines = [make_engine(f"sqlite:///{path}") for _ in range(8)]
    barrier = threading.Barrier(len(engines))
    modes: list[str] = []
    errors: list[BaseException] = []

    def connect(engine: object) -> None:
        try:
            barrier.wait()
            with engine.connect() as conn:  # type: ignore[attr-defined]
                modes.append(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == [] and modes == ["wal"] * len(engines)
