"""Alembic's environment: migrates the connection :func:`datastore.migrate.upgrade` passes, or
(``alembic -c datastore/alembic.ini -x db=<url> …``, see docs/storage.md) the database at ``db``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from datastore.engine import make_engine
from datastore.schema import metadata


def _migrate(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: autogenerate writes batch operations for it
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _migrate(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("db")
    if not url:
        raise SystemExit("pass the database: alembic -c datastore/alembic.ini -x db=<url> …")
    engine = make_engine(url)
    with engine.begin() as conn:
        _migrate(conn)
    engine.dispose()
