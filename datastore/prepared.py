"""Statements compiled once per dialect and run on the DBAPI connection directly.

:class:`PreparedRead` runs the hottest reads (a request's nonce, a job's status, a result's
file) and :class:`PreparedWrite` the request path's one-statement writes (a nonce's
compare-and-swap) with SQL compiled once per dialect: SQLAlchemy's per-execution work
(statement construction, cache key, execution context, a transaction's ``BEGIN``/``COMMIT``)
cost more than the statement itself.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import UpdateBase

from datastore.engine import is_sqlite
from datastore.thread_connections import has_thread_connections, thread_cursor


def _dialect_key(dialect: Dialect) -> tuple[str, str, str]:
    return (dialect.name, dialect.driver, dialect.paramstyle)


def _compiled_sql(statement: Any, dialect: Dialect) -> tuple[Any, str, Sequence[str] | None]:
    """``statement`` compiled for ``dialect``, its SQL, and its bind names in order (positional
    paramstyles; None for named ones)."""
    compiled = statement.compile(dialect=dialect)
    order = list(compiled.positiontup or ()) if dialect.positional else None
    return compiled, compiled.string, order


def _bind(order: Sequence[str] | None, params: dict[str, Any]) -> Any:
    """``params`` in the form the DBAPI wants (a list in ``order`` for positional styles)."""
    return [params[name] for name in order] if order is not None else params


class PreparedWrite:
    """An ``INSERT``/``UPDATE``/``DELETE`` (bound parameters named with
    ``sqlalchemy.bindparam``) compiled once per dialect and run alone, as its own transaction:
    on a SQLite file in the thread's connection's autocommit (one statement is atomic and
    holds the write lock only while it runs; :mod:`datastore.thread_connections`), elsewhere
    in a transaction of its own. :meth:`run` returns the rows changed; a constraint it breaks
    raises SQLAlchemy's ``IntegrityError`` either way. Parameters go to the DBAPI as given
    (no SQLAlchemy bind processing: plain strings and numbers only)."""

    def __init__(self, statement: UpdateBase) -> None:
        #: SQLAlchemy reports an INSERT's rowcount only when asked to keep it
        self.statement = statement.execution_options(preserve_rowcount=True)
        #: per dialect: the SQL, its positional bind order, the values written into it
        self._compiled: dict[
            tuple[str, str, str], tuple[str, Sequence[str] | None, dict[str, Any]]
        ] = {}

    def _entry(self, dialect: Dialect) -> tuple[str, Sequence[str] | None, dict[str, Any]]:
        key = _dialect_key(dialect)
        entry = self._compiled.get(key)
        if entry is None:
            compiled, sql, order = _compiled_sql(self.statement, dialect)
            entry = self._compiled[key] = (sql, order, dict(compiled.params))
        return entry

    def run(self, engine: Engine, **params: Any) -> int:
        """Execute with ``params``; the number of rows it changed."""
        if not has_thread_connections(engine):
            with engine.begin() as conn:
                return int(conn.execute(self.statement, params).rowcount)  # type: ignore[attr-defined]
        sql, order, literals = self._entry(engine.dialect)
        args = _bind(order, {**literals, **params})
        cursor = thread_cursor(engine)
        try:
            cursor.execute(sql, args)
        except engine.dialect.loaded_dbapi.IntegrityError as exc:
            raise IntegrityError(sql, args, exc) from exc
        return int(cursor.rowcount)


class PreparedRead:
    """A ``SELECT`` (bound parameters named with ``sqlalchemy.bindparam``) compiled once per
    dialect and run on a pooled DBAPI connection: alone (:meth:`rows`, :meth:`fetch`: one
    statement, one snapshot, no ``BEGIN`` on SQLite), or with others in one read transaction
    (:meth:`run` on a :func:`raw_reading` cursor). Rows are named tuples (``row.column``) whose
    values went through the columns' SQLAlchemy result processors, exactly as ``conn.execute``
    gives them (dates parsed, JSON decoded, booleans as ``bool``)."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._row: Any = namedtuple("Row", statement.selected_columns.keys())  # type: ignore[misc]
        #: per (dialect, driver, paramstyle): the SQL, positional bind order, result processors
        self._compiled: dict[tuple[str, str, str], tuple[str, Sequence[str] | None, list[Any]]] = {}
        self._makers: dict[tuple[str, str, str], Any] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, Sequence[str] | None, list[Any]]:
        _compiled, sql, order = _compiled_sql(self.statement, dialect)
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self.statement.selected_columns
        ]
        entry = (sql, order, processors)
        self._compiled[_dialect_key(dialect)] = entry
        return entry

    def _entry(self, dialect: Dialect) -> tuple[str, Sequence[str] | None, list[Any]]:
        return self._compiled.get(_dialect_key(dialect)) or self._compile(dialect)

    def run(self, cursor: Any, dialect: Dialect, params: dict[str, Any]) -> list[Any]:
        """Execute on a DBAPI ``cursor`` of ``dialect`` (see :func:`raw_reading`)."""
        make = self.maker(dialect)
        return [make(raw) for raw in self._fetch(cursor, dialect, params)]

    def _fetch(self, cursor: Any, dialect: Dialect, params: dict[str, Any]) -> list[Any]:
        sql, order, _processors = self._entry(dialect)
        cursor.execute(sql, _bind(order, params))
        return cursor.fetchall()  # type: ignore[no-any-return]

    def maker(self, dialect: Dialect) -> Any:
        """The function that turns one raw DBAPI row of :meth:`fetch` into a named row (the
        same function object for every call with the same dialect)."""
        key = _dialect_key(dialect)
        made = self._makers.get(key)
        if made is None:
            made = self._makers[key] = self._make_maker(dialect)
        return made

    def _make_maker(self, dialect: Dialect) -> Any:
        processors = self._entry(dialect)[2]
        make = self._row._make
        if not any(processors):
            return make
        return lambda raw: make(
            [value if p is None else p(value) for p, value in zip(processors, raw, strict=True)]
        )

    def fetch(self, engine: Engine, **params: Any) -> list[Any]:
        """The raw DBAPI rows for ``params`` (values not yet processed: see :meth:`maker`), for
        a caller that needs only some rows processed. One statement reads one snapshot, so on a
        SQLite file it runs without ``BEGIN``/``ROLLBACK`` (autocommit: two fewer calls into
        SQLite, each of which releases and retakes the GIL) on the thread's own connection
        (:mod:`datastore.thread_connections`: no pool checkout); elsewhere on a pooled connection in
        the driver's implicit transaction."""
        if not has_thread_connections(engine):
            with raw_reading(engine) as cursor:
                return self._fetch(cursor, engine.dialect, params)
        return self._fetch(thread_cursor(engine), engine.dialect, params)

    def rows(self, engine: Engine, **params: Any) -> list[Any]:
        """All rows for ``params``, processed (see :meth:`fetch`)."""
        make = self.maker(engine.dialect)
        return [make(raw) for raw in self.fetch(engine, **params)]


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
