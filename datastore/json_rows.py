"""``json_rows(*columns)``: an aggregate giving the rows of a group as one JSON array of arrays,
as text, on SQLite (``json_group_array(json_array(…))``) and PostgreSQL
(``json_agg(json_build_array(…))::text``). An empty group gives ``'[]'`` on SQLite and NULL on
PostgreSQL; the order inside the array is unspecified (sort after decoding).

It lets one row carry a job and all its results: every row SQLite steps through releases the
GIL for the step, which under a loaded gunicorn worker hands the interpreter to another thread
(two context switches per row; see README, Performance).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction


class json_rows(GenericFunction[str]):
    """The group's ``columns`` as a JSON array (text) of one array per row."""

    type = sa.Text()
    inherit_cache = True


@compiles(json_rows, "sqlite")
def _sqlite(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "postgresql")
def _postgresql(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"CAST(json_agg(json_build_array({compiler.process(element.clauses, **kw)})) AS TEXT)"


@compiles(json_rows)
def _other(element: json_rows, compiler: Any, **kw: Any) -> str:
    raise sa.exc.CompileError(f"json_rows is not defined for {compiler.dialect.name}")
