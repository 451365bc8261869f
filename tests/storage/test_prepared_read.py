"""PreparedRead gives what SQLAlchemy's own execution gives (types processed the same way), on
SQLite and PostgreSQL, and leaves no transaction or write lock behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from datastore.engine import is_sqlite, make_engine, reading
from datastore.prepared import PreparedRead, PreparedWrite, raw_reading

metadata = sa.MetaData()
things = sa.Table(
    "prepared_things",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("owner", sa.String(42), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("tags", sa.JSON),
    sa.Column("flag", sa.Boolean),
    sa.Column("size", sa.BigInteger),
)
BY_OWNER = PreparedRead(
    sa.select(things).where(things.c.owner == sa.bindparam("owner")).order_by(things.c.id)
)
BY_OWNER_AND_ID = PreparedRead(
    sa.select(things.c.id, things.c.tags).where(
        things.c.owner == sa.bindparam("owner"), things.c.id == sa.bindparam("id")
    )
)


@pytest.fixture
def db(store_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(store_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(things),
            [
                {
                    "id": "a",
                    "owner": "0xab",
                    "at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                    "tags": ["did:op:1", {"k": [1, 2]}],
                    "flag": True,
                    "size": 2**40,
                },
                {"id": "b", "owner": "0xab", "at": None, "tags": None, "flag": False, "size": 0},
                {"id": "c", "owner": "0xcd", "at": None, "tags": [], "flag": None, "size": None},
            ],
        )
    yield engine
    engine.dispose()


def test_rows_match_sqlalchemy_execution(db: sa.Engine) -> None:
    with reading(db) as conn:
        expected = conn.execute(
            sa.select(things).where(things.c.owner == "0xab").order_by(things.c.id)
        ).all()
    got = BY_OWNER.rows(db, owner="0xab")
    assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    assert got[0].tags == ["did:op:1", {"k": [1, 2]}] and got[0].flag is True
    assert got[1].flag is False and got[0].size == 2**40
    assert BY_OWNER.rows(db, owner="0xnobody") == []


def test_several_statements_share_one_read_transaction(db: sa.Engine) -> None:
    with raw_reading(db) as cursor:
        mine = BY_OWNER.run(cursor, db.dialect, {"owner": "0xcd"})
        one = BY_OWNER_AND_ID.run(cursor, db.dialect, {"owner": "0xab", "id": "a"})
    assert [row.id for row in mine] == ["c"] and mine[0].tags == []
    assert [(row.id, row.tags) for row in one] == [("a", ["did:op:1", {"k": [1, 2]}])]


def test_a_read_leaves_writers_free(db: sa.Engine) -> None:
    """After a prepared read (and while one is open, on SQLite) a writer gets its lock."""
    BY_OWNER.rows(db, owner="0xab")
    with raw_reading(db) as cursor:
        BY_OWNER.run(cursor, db.dialect, {"owner": "0xab"})
        if is_sqlite(db):  # a plain BEGIN: WAL lets the writer in beside the reader
            with db.begin() as conn:
                conn.execute(sa.update(things).where(things.c.id == "b").values(size=1))
    with db.begin() as conn:
        conn.execute(sa.update(things).where(things.c.id == "b").values(size=2))
    assert BY_OWNER.rows(db, owner="0xab")[1].size == 2


ADD = PreparedWrite(
    sa.insert(things).values(id=sa.bindparam("key"), owner=sa.bindparam("who"), flag=True)
)
RESIZE = PreparedWrite(
    sa.update(things)
    .where(things.c.id == sa.bindparam("key"), things.c.size == sa.bindparam("was"))
    .values(size=sa.bindparam("now"))
)


def test_a_prepared_write_commits_alone_and_reports_what_it_changed(db: sa.Engine) -> None:
    assert ADD.run(db, key="d", who="0xef") == 1
    with pytest.raises(sa.exc.IntegrityError):
        ADD.run(db, key="d", who="0xef")
    assert RESIZE.run(db, key="b", was=0, now=5) == 1
    assert RESIZE.run(db, key="b", was=0, now=6) == 0  # compare-and-swap: "was" is stale
    with db.connect() as other:  # another connection sees both: each write committed alone
        assert other.execute(sa.select(things.c.owner).where(things.c.id == "d")).scalar() == "0xef"
        assert other.execute(sa.select(things.c.size).where(things.c.id == "b")).scalar() == 5
    with db.begin() as conn:  # and no write lock is left behind
        conn.execute(sa.update(things).where(things.c.id == "c").values(size=1))
