"""A store made by the release before migrations (9cb36ad) is adopted without losing a row,
and the engine and the provider's stores read it afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from datastore import migrate
from datastore.asset_index import AssetIndex
from datastore.escrow_ledger import EscrowLedger
from datastore.jobs import JobStore
from datastore.node_records import NodeJobs, RevokedTokens
from operator_engine.backends.fake import FakeBackend
from operator_engine.credentials import CredentialStore
from operator_engine.statuses import TERMINAL, JobStatus
from provider.admin.tokens import TokenStore
from provider.nonces import NonceStore
from tests.engine.conftest import FileServer
from tests.engine.helpers import request
from tests.storage.conftest import LEGACY_CREDENTIALS_KEY
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

OWNER = "0xabc0000000000000000000000000000000000001"
S = JobStatus


def test_the_fixture_is_a_store_made_before_migrations(legacy_db: Engine) -> None:
    assert migrate.is_legacy(legacy_db) and migrate.current(legacy_db) is None


def test_upgrade_keeps_every_job_with_its_results_and_events(legacy_db: Engine) -> None:
    assert migrate.upgrade(legacy_db) is None
    assert migrate.current(legacy_db) == migrate.head()
    assert migrate.upgrade(legacy_db) == migrate.head()  # idempotent
    store = JobStore(legacy_db)
    jobs = {job.status: job for job in store.find(OWNER)}
    assert sorted(jobs) == [S.WARMING_UP, S.STOPPED, S.STARTED, S.DATA_PROVISIONING_FAILED,
                            S.RUNNING, S.FINISHED]  # fmt: skip
    finished = jobs[S.FINISHED]
    assert [(r.filename, r.filesize, r.type) for r in finished.results] == [
        ("summary.json", 644, "output"),
        ("algorithm.log", 107, "algorithmLog"),
    ]
    assert [(f, t) for f, t, _ in store.events(finished.job_id)] == [
        (None, 1), (1, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70)
    ]  # fmt: skip
    assert finished.date_finished is not None and store.row(finished.job_id).request is None
    assert jobs[S.DATA_PROVISIONING_FAILED].reason == "fetch failed: 404"
    assert (jobs[S.STOPPED].stopreq, jobs[S.STOPPED].reason) == (1, "stopped by owner")
    assert jobs[S.WARMING_UP].agreement_id == "0xagree1"
    assert store.request_of(jobs[S.WARMING_UP].job_id) is not None  # its private request too
    running = store.row(jobs[S.RUNNING].job_id)
    assert running.worker_id == "worker-legacy" and running.lease_expires_at is not None
    assert store.consumed(8996, ["0x" + "b" * 64]) == {"0x" + "b" * 64}
    path, result = store.result_path(finished.job_id, 0) or ("", None)
    assert path == "outputs/summary.json" and result is not None and result.sha256 == "3" * 64


def test_upgrade_keeps_environments_and_the_provider_state(legacy_db: Engine) -> None:
    migrate.upgrade(legacy_db)
    store = JobStore(legacy_db)
    envs = {row.id: row for row in store.environments.rows()}
    assert set(envs) == {"api-env", "draining-env"}
    assert envs["api-env"].config["maxJobs"] == 2 and envs["api-env"].last_used is not None
    assert (envs["draining-env"].status, envs["draining-env"].message) == ("DELETING", "draining")
    assert store.environments.primary() == "api-env"

    nonces = NonceStore(legacy_db)
    assert nonces.get("0x" + "1" * 40) == "1700000000123" and nonces.get(OWNER) == "42"
    nonces.consume(OWNER, "43")  # and it still advances
    assert nonces.get(OWNER) == "43"

    tokens = {t.name: t for t in TokenStore(legacy_db).list()}
    assert tokens["ops"].revoked_at is None and tokens["old"].revoked_at is not None

    (credential,) = CredentialStore(legacy_db, LEGACY_CREDENTIALS_KEY).list()
    assert credential.keys["password"] == "p4ss" and credential.name == "registry"

    running = next(j for j in store.find(OWNER) if j.status is S.RUNNING)
    node_job = NodeJobs(legacy_db).get(running.job_id)
    assert node_job is not None and node_job.kind == "paid" and node_job.max_duration == 600
    assert RevokedTokens(legacy_db).is_revoked("deadbeef")
    lock = EscrowLedger(legacy_db).get(running.job_id)
    assert lock is not None and lock.state == "locked" and lock.lock_id == 12345678901234567890

    index = AssetIndex(legacy_db)
    assert index.chain_of("did:op:" + "a" * 64) == 8996
    assert index.cursor("8996:0x" + "f" * 40) == 9


def test_the_engine_starts_on_the_old_store_and_runs_its_jobs(
    legacy_url: str, tmp_path: Path, file_server: FileServer
) -> None:
    """``build_engine`` (what serve and engine run) upgrades the store; its sweep then
    takes the jobs the old release left in flight and every job ends, none lost."""
    file_server.files["/d.csv"] = b"a,b\n1,2\n"
    settings = Settings(
        data_dir=tmp_path / "engine",
        db_url=legacy_url,
        pull_images=False,
        allow_non_public_ip=True,
    )
    engine = build_engine(settings, backend=FakeBackend())
    try:
        assert migrate.current(engine.db) == migrate.head()
        before = {job.job_id: job.status for job in engine.find(OWNER)}
        assert len(before) == 6
        files = [{"type": "url", "url": file_server.url("/d.csv")}]
        new = engine.submit(request(environment="tidewater-free", files=files))
        engine.run_until_idle()
        after = {job.job_id: job.status for job in engine.find(OWNER)}
        assert set(after) == {*before, new.job_id}
        assert all(status in TERMINAL for status in after.values()), after
        for job_id, status in before.items():
            if status in TERMINAL:
                assert after[job_id] == status  # a terminal status never changes
        assert after[new.job_id] is S.FINISHED
    finally:
        engine.db.dispose()


@pytest.mark.parametrize("action", ["current", "upgrade"])
def test_the_db_command_reports_and_adopts_the_old_store(
    legacy_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str,
) -> None:
    from tidewater.cli import main

    monkeypatch.setenv("TIDEWATER_DB", legacy_url)
    monkeypatch.setenv("TIDEWATER_DATA_DIR", str(tmp_path / "cli"))
    assert main(["db", action]) == 0
    out = capsys.readouterr().out
    if action == "current":
        assert out.startswith("none: made before migrations")
    else:
        assert out.strip() == f"store upgraded from no revision to {migrate.head()}"
        assert main(["db", "current"]) == 0
        assert capsys.readouterr().out.strip() == f"{migrate.head()} (up to date)"
