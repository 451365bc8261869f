"""The admin job view shows no decrypted file URL; admin and indexer reads take no write lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
from flask import Flask
from web3 import Web3

from datastore.jobs import JobStore
from datastore.schema import jobs
from operator_engine.api import Engine
from operator_engine.backends.fake import FakeBackend
from provider.admin import batches
from provider.admin.routes import bp
from provider.admin.tokens import TokenStore
from provider.errors import register_error_handlers
from provider.indexer import Indexer
from tests.admin.conftest import Admin
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

SECRET = "http://127.0.0.1:9/publisher-secret-path.csv"


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Every SQL statement ``engine`` sends while the block runs."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _app(engine: Engine, settings: Settings) -> tuple[Flask, Admin]:
    app = Flask("admin-private")
    app.extensions["tidewater"] = SimpleNamespace(db=engine.db, settings=settings, engine=engine)
    register_error_handlers(app)  # what create_app installs: the one error handler
    app.register_blueprint(bp)
    return app, Admin(app.test_client(), TokenStore(engine.db).create("ops"))


def test_the_admin_job_view_never_shows_decrypted_file_urls(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [env()])
    engine = build_engine(settings, backend=FakeBackend())
    api = _app(engine, settings)[1]
    live = engine.submit(request(files=[{"type": "url", "url": SECRET}]))
    # a row written by a version that kept the file objects in the store
    with engine.db.begin() as conn:
        stored = dict(engine.store.row(live.job_id).request)
        stored["datasets"] = [{**stored["datasets"][0], "files": [{"url": SECRET}]}]
        stored["algorithm"] = {**stored["algorithm"], "files": [{"url": SECRET}]}
        conn.execute(jobs.update().where(jobs.c.job_id == live.job_id).values(request=stored))
    for url in (f"/api/batches/test-env/jobs/{live.job_id}", "/api/batches/test-env/jobs"):
        resp = api.get(url)
        assert resp.status_code == 200 and "publisher-secret-path" not in resp.get_data(True)
    [view] = api.get(f"/api/batches/test-env/jobs/{live.job_id}").json
    assert view["job_id"] == live.job_id and live.input_dids[0] in view["args"]["datasets"]


def test_token_checks_batch_views_and_indexer_reads_take_no_write_lock(tmp_path: Path) -> None:
    engine = build_engine(settings_for(tmp_path, [env()]), backend=FakeBackend())
    engine.submit(request())
    token = TokenStore(engine.db).create("ops")
    indexer = Indexer(Web3(), engine.db, factory="0x" + "11" * 20, chain_id=8996, private_key=None)
    with statements(engine.db) as seen:
        store = TokenStore(engine.db)  # once per request in the admin API
        assert store.is_valid(token) and not store.is_valid("tw_nope")
        assert len(batches.job_rows(engine.db, "test-env")) == 1
        assert indexer.cursor() == -1 and indexer.get("did:op:" + "0" * 64) is None
        JobStore(engine.db).get("none")
    assert seen, "the reads ran statements"
    assert not [s for s in seen if "IMMEDIATE" in s.upper()], seen
    assert not [s for s in seen if "table_info" in s or s.upper().startswith("CREATE")], seen
