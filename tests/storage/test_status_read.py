"""The status route's read (``JobStore.find``: one prepared statement, results as one JSON array
per job) gives exactly what the SQLAlchemy path gives (``JobStore.get``), on SQLite and
PostgreSQL: jobs without results, results written out of index order, several jobs, ``did``."""

from __future__ import annotations

from sqlalchemy import Engine

from datastore.job_records import ResultRecord
from datastore.jobs import JobStore
from operator_engine.models import AlgorithmInput, DatasetInput, JobRequest

OWNER = "0x" + "Ab" * 20


def _request(did: str) -> JobRequest:
    return JobRequest(
        owner=OWNER,
        environment="env",
        datasets=[DatasetInput(did, {}, "svc", [])],
        algorithm=AlgorithmInput(container={"image": "i", "tag": "1"}, rawcode="x"),
    )


def test_find_matches_get(store_db: Engine) -> None:
    store = JobStore(store_db)
    bare, _ = store.insert(_request("did:op:1"), algo_did="")
    done, _ = store.insert(_request("did:op:2"), algo_did="did:op:algo")
    other, _ = store.insert(_request("did:op:2"), algo_did="")
    store.set_results(
        done.job_id,
        [
            ResultRecord("b.txt", 2, "output", "bb" * 32, "outputs/b.txt"),
            ResultRecord("a.txt", 1, "algorithmLog", "aa" * 32, "logs/a.txt"),
            ResultRecord("ünï ☃.txt", 0, "output", "cc" * 32, "outputs/c.txt"),
        ],
    )
    store.set_results(other.job_id, [ResultRecord("x", 5, "output", "dd" * 32, "outputs/x")])

    expected = [store.get(j.job_id) for j in (bare, done, other)]
    assert store.find(OWNER.upper().replace("0X", "0x")) == expected
    assert store.find(OWNER, job_id=done.job_id) == [expected[1]]
    assert [r.filename for r in expected[1].results] == ["b.txt", "a.txt", "ünï ☃.txt"]
    assert [r.index for r in expected[1].results] == [0, 1, 2]
    assert store.find(OWNER, did="did:op:2") == expected[1:]
    assert store.find(OWNER, job_id="nope") == []
    assert store.find("0x" + "cd" * 20) == []


def test_holder_is_status_and_worker(store_db: Engine) -> None:
    store = JobStore(store_db)
    job, _ = store.insert(_request("did:op:1"), algo_did="")
    assert store.holder(job.job_id) == (job.status, None)
    store.update(job.job_id, worker_id="w-1")
    assert store.holder(job.job_id) == (job.status, "w-1")
    assert store.holder("nope") is None
