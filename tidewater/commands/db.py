"""``tidewater db``: the store's schema (Alembic migrations, see docs/storage.md).

``upgrade`` brings the store at ``TIDEWATER_DB`` to the newest schema (``serve`` and ``engine``
do it at every start); ``current`` prints its revision and whether it is up to date.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tidewater.errors import CommandError

HELP = "show or upgrade the store's schema (migrations)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("upgrade", help="run the migrations the store lacks (keeps every row)")
    sub.add_parser("current", help="print the store's revision and the newest one")


def run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from datastore import migrate
    from datastore.engine import make_engine
    from tidewater.settings import Settings

    settings = Settings.from_env()
    engine = make_engine(settings.db_url)
    try:
        if args.action == "upgrade":
            with migrate.schema_lock(Path(settings.data_dir)):
                before = migrate.upgrade(engine)
            now = migrate.current(engine)
            print(
                f"store at {now} (already up to date)"
                if before == now
                else f"store upgraded from {before or 'no revision'} to {now}"
            )
            return 0
        revision, head = migrate.current(engine), migrate.head()
        if revision == head:
            print(f"{revision} (up to date)")
        elif revision is None and migrate.is_legacy(engine):
            print(f"none: made before migrations; `tidewater db upgrade` adopts it ({head})")
        elif revision is None:
            print(f"none: an empty store; `tidewater db upgrade` creates it ({head})")
        else:
            print(f"{revision} (newest: {head}; run `tidewater db upgrade`)")
        return 0
    except migrate.SchemaError as exc:
        raise CommandError(str(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        raise CommandError(f"store {settings.db_url}: {exc}") from None
    finally:
        engine.dispose()
