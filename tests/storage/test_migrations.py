"""The migrations and :mod:`datastore.schema` agree, and the first migration makes exactly the
schema that the release before migrations (9cb36ad) made with ``create_all``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from datastore import migrate
from datastore.engine import make_engine
from datastore.schema import metadata


@pytest.fixture
def fresh_db(store_db: Engine) -> Engine:
    """An empty database, upgraded to the newest revision."""
    return store_db


def describe(engine: Engine) -> dict[str, Any]:
    """Every table as the database reflects it: columns, keys, indexes, unique constraints."""
    inspector = sa.inspect(engine)
    found: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        found[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (tuple(k["constrained_columns"]), k["referred_table"], str(k.get("options")))
                for k in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
        }
    return found


def test_the_migrations_make_the_schema_the_code_declares(fresh_db: Engine) -> None:
    with fresh_db.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    assert migrate.current(fresh_db) == migrate.head()


def test_the_first_migration_makes_the_schema_of_the_release_before(legacy_db: Engine) -> None:
    """The old release's schema (tests/fixtures/legacy_9cb36ad), then the same database emptied
    and made again by the migrations: the same tables, columns, keys and indexes."""
    old = describe(legacy_db)
    with legacy_db.begin() as conn:
        metadata.drop_all(conn)
    assert describe(legacy_db) == {}
    migrate.upgrade(legacy_db)
    made = describe(legacy_db)
    assert set(made) == set(metadata.tables)
    assert made == old


def test_upgrading_twice_changes_nothing(fresh_db: Engine) -> None:
    before = describe(fresh_db)
    assert migrate.upgrade(fresh_db) == migrate.head()
    assert describe(fresh_db) == before


def test_downgrade_to_base_and_back(fresh_db: Engine) -> None:
    with fresh_db.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    assert set(sa.inspect(fresh_db).get_table_names()) <= {"alembic_version"}
    assert migrate.current(fresh_db) is None
    migrate.upgrade(fresh_db)
    assert set(describe(fresh_db)) == set(metadata.tables)


def test_processes_upgrading_one_new_store_at_once_do_not_race(store_url: str) -> None:
    """Without the host's schema lock (workers on several hosts), upgrades of one empty store
    at the same moment still make it once: the migration transaction holds the write lock."""
    engines = [make_engine(store_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        barrier.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert migrate.current(engines[0]) == migrate.head()
        assert set(describe(engines[0])) == set(metadata.tables)
    finally:
        for engine in engines:
            engine.dispose()


def test_a_store_from_a_newer_version_is_refused_with_a_clear_error(
    fresh_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operator_engine.api import EngineError
    from operator_engine.backends.fake import FakeBackend
    from tidewater.cli import main
    from tidewater.engine_config import build_engine
    from tidewater.settings import Settings

    with fresh_db.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaError, match="revision 9999, which this tidewater"):
        migrate.upgrade(fresh_db)
    url = fresh_db.url.render_as_string(hide_password=False)
    settings = Settings(data_dir=tmp_path / "data", db_url=url, pull_images=False)
    with pytest.raises(EngineError, match="a newer tidewater made it"):
        build_engine(settings, backend=FakeBackend())
    monkeypatch.setenv("TIDEWATER_DB", url)
    monkeypatch.setenv("TIDEWATER_DATA_DIR", str(tmp_path / "cli"))
    assert main(["db", "upgrade"]) == 2
    assert migrate.current(fresh_db) == "9999"  # nothing was touched
