"""One contract suite for the job store, on SQLite (temporary file) and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datastore.engine import make_engine
from datastore.jobs import JobStore, ResultRecord, TransitionError
from datastore.migrate import upgrade
from operator_engine.models import ComputeEnvironment, utcnow
from operator_engine.statuses import JobStatus
from operator_engine.worker import worker_is_dead
from tests.engine.helpers import request

S = JobStatus
ENVS = {"test-env": ComputeEnvironment(id="test-env", max_jobs=2)}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = make_engine(url)
    job_store = JobStore(engine)
    upgrade(job_store.engine)
    yield job_store
    engine.dispose()


def test_insert_is_idempotent_on_agreement(store: JobStore) -> None:
    a, created_a = store.insert(request(agreement_id="0x1"), algo_did="raw")
    b, created_b = store.insert(request(agreement_id="0x1"), algo_did="raw")
    assert (created_a, created_b) == (True, False) and a.job_id == b.job_id
    assert a.owner == a.owner.lower() and a.status is S.WARMING_UP


def test_concurrent_inserts_of_one_agreement_make_one_job(store: JobStore) -> None:
    ids: list[str] = []

    def submit() -> None:
        ids.append(store.insert(request(agreement_id="0xsame"), algo_did="raw")[0].job_id)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1


def test_transition_is_guarded_and_logged(store: JobStore) -> None:
    job, _ = store.insert(request(), algo_did="raw")
    with pytest.raises(TransitionError):
        store.transition(job.job_id, None, S.RUNNING)  # 1 -> 40 is not allowed
    with pytest.raises(TransitionError):
        store.transition(job.job_id, S.CONFIGURING, S.PROVISIONED)  # not at 20
    assert store.transition(job.job_id, None, S.STARTED) is S.WARMING_UP
    store.transition(job.job_id, S.STARTED, S.STOPPED, stopreq=1, reason="owner")
    for target in S:
        with pytest.raises(TransitionError):
            store.transition(job.job_id, None, target)  # terminal never changes
    done = store.get(job.job_id)
    assert done is not None and done.status is S.STOPPED and done.date_finished is not None
    assert done.stopreq == 1 and done.reason == "owner"
    assert [(f, t) for f, t, _d in store.events(job.job_id)] == [(None, 1), (1, 10), (10, 7)]
    assert store.row(job.job_id).request is None  # private request scrubbed once terminal
    with pytest.raises(TransitionError):
        store.transition("missing", None, S.STOPPED)


def test_claim_respects_max_jobs_and_order(store: JobStore) -> None:
    jobs = [store.insert(request(), algo_did="raw")[0] for _ in range(3)]
    first = store.claim("w1", ENVS)
    second = store.claim("w2", ENVS)
    assert first is not None and second is not None
    assert [first.job_id, second.job_id] == [j.job_id for j in jobs[:2]]
    assert store.claim("w3", ENVS) is None  # maxJobs 2 in flight
    assert store.claim("w3", {}) is None  # unknown/unschedulable environment
    store.transition(first.job_id, None, S.STOPPED)
    third = store.claim("w3", ENVS)
    assert third is not None and third.job_id == jobs[2].job_id
    assert store.live_counts() == {"test-env": 2}


def test_concurrent_claims_never_share_a_job(store: JobStore) -> None:
    for _ in range(30):
        store.insert(request(), algo_did="raw")
    envs = {"test-env": ComputeEnvironment(id="test-env", max_jobs=1000)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (job := store.claim(name, envs)) is not None:
            with lock:
                claimed.append(job.job_id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 30 and max(Counter(claimed).values()) == 1


def test_leases_results_and_delete(store: JobStore) -> None:
    job, _ = store.insert(request(), algo_did="raw")
    claimed = store.claim("w1", ENVS)
    assert claimed is not None
    assert store.heartbeat(job.job_id, "w1") and not store.heartbeat(job.job_id, "w2")
    assert not store.take_over(job.job_id, "w9", "w2")
    assert store.take_over(job.job_id, "w1", "w2")
    assert not store.heartbeat(job.job_id, "w1")
    assert [(r.job_id, r.worker_id) for r in store.in_flight_rows()] == [(job.job_id, "w2")]
    store.set_results(job.job_id, [ResultRecord("a.txt", 3, "output", "ab" * 32, "outputs/a.txt")])
    found = store.result_path(job.job_id, 0)
    assert found is not None and found[0] == "outputs/a.txt" and found[1].filesize == 3
    assert store.delete(job.job_id) and store.get(job.job_id) is None
    assert store.events(job.job_id) == []


def test_api_managed_environments(store: JobStore) -> None:
    store.environments.put("gpu", {"maxJobs": 1}, status="CREATING")
    store.environments.put("gpu", {"maxJobs": 3}, status="AVAILABLE")
    rows = store.environments.rows()
    assert [(r.id, r.status, r.config["maxJobs"]) for r in rows] == [("gpu", "AVAILABLE", 3)]
    with pytest.raises(ValueError):
        store.environments.put("gpu", {}, status="BOGUS")
    assert store.environments.delete("gpu") and store.environments.rows() == []


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite reads naive


def test_a_lease_is_judged_by_the_expiry_its_holder_stored(store: JobStore) -> None:
    """A worker with a 5 s lease setting must not take a job whose holder (on another host)
    leased it for an hour and heartbeat 10 s ago."""
    job, _ = store.insert(request(), algo_did="raw")
    holder = "other-host:1-1:0:abcd"
    assert store.claim(holder, ENVS, lease_seconds=3600) is not None
    row = store.row(job.job_id)
    assert row.lease_expires_at is not None
    assert not worker_is_dead(row, lease_seconds=5)
    later = utcnow() + timedelta(seconds=60)
    assert _aware(row.lease_expires_at) > later
    assert store.heartbeat(job.job_id, holder, lease_seconds=1)
    assert _aware(store.row(job.job_id).lease_expires_at) < later  # the holder's own length
    assert store.take_over(job.job_id, holder, "w2", lease_seconds=3600)
    assert _aware(store.row(job.job_id).lease_expires_at) > later


def test_a_store_from_before_lease_expiries_keeps_working(store: JobStore) -> None:
    """A store made before migrations whose jobs table lacks lease_expires_at gets the column
    from the first migration."""
    old, _ = store.insert(request(), algo_did="raw")
    with store.engine.begin() as conn:  # the jobs table as the previous version created it
        conn.exec_driver_sql("ALTER TABLE jobs DROP COLUMN lease_expires_at")
        conn.exec_driver_sql("DROP TABLE alembic_version")  # made before migrations
    store.engine.dispose()
    upgraded = JobStore(store.engine)
    upgrade(store.engine)
    upgrade(store.engine)  # idempotent
    assert upgraded.row(old.job_id).lease_expires_at is None
    assert upgraded.claim("w1", ENVS, lease_seconds=30) is not None
    assert upgraded.row(old.job_id).lease_expires_at is not None
