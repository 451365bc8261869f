"""One SQLite connection per thread, for the one-statement reads and writes of the request path.

A pool checkout and check-in (SQLAlchemy's connection fairy, its lock, its reset) cost more
interpreter time than the nonce or status query itself, and the pool's lock is contended by
every request thread of a gunicorn worker. :func:`thread_cursor` instead gives each thread a
connection of its own, opened through the engine's pool (so it gets the same ``connect``
PRAGMAs: WAL, busy timeout, foreign keys, autocommit) and then detached from it, with one
reusable cursor.

Only single statements run on it, in SQLite's autocommit (:class:`datastore.prepared.
PreparedRead`, :class:`datastore.prepared.PreparedWrite`): a ``SELECT`` reads one snapshot that
ends when its rows are fetched, so an idle connection holds no transaction (it never blocks a
WAL checkpoint); a write is atomic and holds the write lock for that statement only. The
connection of a thread that has ended is closed when the next thread opens one; all are closed
when their engine is disposed (the next statement in each thread opens a new one); none crosses
a ``fork``: the child starts with none.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, event


class _ThreadCursor(threading.local):
    """This thread's cursor on its connection to one engine's database."""

    cursor: Any = None


class _EngineConnections:
    def __init__(self) -> None:
        self.local = _ThreadCursor()
        #: every open connection and its thread (sqlite3 connections take no weak references)
        self.connections: list[tuple[weakref.ref[threading.Thread], Any]] = []
        self.lock = threading.Lock()

    def add(self, connection: Any) -> None:
        """Keep ``connection`` as this thread's; close those of threads that have ended."""
        with self.lock:
            alive = []
            for thread, other in self.connections:
                owner = thread()
                if owner is None or not owner.is_alive():
                    other.close()
                else:
                    alive.append((thread, other))
            alive.append((weakref.ref(threading.current_thread()), connection))
            self.connections = alive

    def close_all(self) -> None:
        with self.lock:
            for _thread, connection in self.connections:
                connection.close()
            self.connections = []


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, _EngineConnections] = weakref.WeakKeyDictionary()
_REGISTER = threading.Lock()


def has_thread_connections(engine: Engine) -> bool:
    """True when ``engine`` is a SQLite database file (an in-memory database exists only on
    its own connection, so it cannot have connections per thread)."""
    database = engine.url.database or ""
    return (
        engine.dialect.name == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
    )


def thread_cursor(engine: Engine) -> Any:
    """This thread's cursor on its own connection to ``engine``'s SQLite database."""
    held = _BY_ENGINE.get(engine) or _register(engine)
    cursor = held.local.cursor
    if cursor is None:
        proxied = engine.raw_connection()  # through the pool: the connect event's PRAGMAs
        proxied.detach()  # the pool forgets it (and opens another when it needs one)
        connection = proxied.dbapi_connection
        held.add(connection)
        cursor = held.local.cursor = connection.cursor()  # type: ignore[union-attr]
    return cursor


def _register(engine: Engine) -> _EngineConnections:
    with _REGISTER:
        held = _BY_ENGINE.get(engine)
        if held is None:
            held = _BY_ENGINE[engine] = _EngineConnections()
            event.listen(engine, "engine_disposed", _close_all)
        return held


def _close_all(engine: Engine) -> None:
    """``engine.dispose()``: close its connections (each thread's next statement opens one)."""
    with _REGISTER:
        held = _BY_ENGINE.pop(engine, None)
    if held is not None:
        held.close_all()


#: In a forked child: the parent's connections, kept from being closed there (SQLite's rule
#: for a connection that crossed a fork is to neither use nor close it).
_INHERITED: list[_EngineConnections] = []


def _forget_after_fork() -> None:
    """A forked child never uses its parent's connections; it opens its own."""
    _INHERITED.extend(_BY_ENGINE.values())
    _BY_ENGINE.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
