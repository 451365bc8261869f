"""One SQLite read connection per thread, for the one-statement reads of the request path.

A pool checkout and check-in (SQLAlchemy's connection fairy, its lock, its reset) cost more
interpreter time than the nonce or status query itself, and the pool's lock is contended by
every request thread of a gunicorn worker. :func:`read_cursor` instead gives each thread a
connection of its own, opened through the engine's pool (so it gets the same ``connect``
PRAGMAs: WAL, busy timeout, foreign keys, autocommit) and then detached from it, with one
reusable cursor.

Only single ``SELECT`` statements run on it, in SQLite's autocommit: each reads one snapshot
that ends when its rows are fetched, so an idle reader holds no transaction (it never blocks a
WAL checkpoint). A connection is closed when its thread ends, when its engine is disposed (the
next read in each thread opens a new one), and never crosses a ``fork``: the child starts with
none.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event


class _Readers(threading.local):
    """An engine's per-thread cursor, and every connection it opened (for dispose)."""

    cursor: Any = None


class _EngineReaders:
    def __init__(self) -> None:
        self.local = _Readers()
        self.connections: list[Any] = []
        self.lock = threading.Lock()


_BY_ENGINE: WeakKeyDictionary[Engine, _EngineReaders] = WeakKeyDictionary()
_REGISTER = threading.Lock()


def has_thread_readers(engine: Engine) -> bool:
    """True when ``engine`` is a SQLite database file (an in-memory database exists only on
    its own connection, so it cannot have readers of its own)."""
    database = engine.url.database or ""
    return (
        engine.dialect.name == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
    )


def read_cursor(engine: Engine) -> Any:
    """This thread's cursor on its own connection to ``engine``'s SQLite database."""
    readers = _BY_ENGINE.get(engine) or _register(engine)
    cursor = readers.local.cursor
    if cursor is None:
        proxied = engine.raw_connection()  # through the pool: the connect event's PRAGMAs
        proxied.detach()  # the pool forgets it (and opens another when it needs one)
        connection = proxied.dbapi_connection
        with readers.lock:
            readers.connections.append(connection)
        cursor = readers.local.cursor = connection.cursor()  # type: ignore[union-attr]
    return cursor


def _register(engine: Engine) -> _EngineReaders:
    with _REGISTER:
        readers = _BY_ENGINE.get(engine)
        if readers is None:
            readers = _BY_ENGINE[engine] = _EngineReaders()
            event.listen(engine, "engine_disposed", _close_all)
        return readers


def _close_all(engine: Engine) -> None:
    """``engine.dispose()``: close its readers; each thread's next read opens a new one."""
    with _REGISTER:
        readers = _BY_ENGINE.pop(engine, None)
    if readers is not None:
        with readers.lock:
            for connection in readers.connections:
                connection.close()


def _forget_after_fork() -> None:
    """A forked child never reads through its parent's connections (SQLite forbids it)."""
    _BY_ENGINE.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
