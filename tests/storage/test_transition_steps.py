"""``JobStore.transition`` with ``via`` (statuses passed through in the same transaction, each
with its event) and ``results`` (written with the status), on SQLite and PostgreSQL: what a
refused move leaves (nothing), and the one-source fast path's refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from datastore.job_records import ResultRecord, TransitionError
from datastore.jobs import JobStore
from operator_engine.models import AlgorithmInput, DatasetInput, JobRequest
from operator_engine.statuses import JobStatus as S

RESULT = ResultRecord("out.txt", 3, "output", "ab" * 32, "outputs/out.txt")


def _queued(store: JobStore) -> str:
    request = JobRequest(
        owner="0x" + "ab" * 20,
        environment="env",
        datasets=[DatasetInput("did:op:1", {}, "svc", [])],
        algorithm=AlgorithmInput(container={"image": "i", "tag": "1"}, rawcode="x"),
    )
    job, _ = store.insert(request, algo_did="")
    return job.job_id


def _at_configuring(store: JobStore) -> str:
    job_id = _queued(store)
    store.transition(job_id, S.WARMING_UP, S.STARTED)
    store.transition(job_id, S.STARTED, S.CONFIGURING)
    return job_id


def test_via_writes_every_status_with_its_event_in_one_move(store_db: Engine) -> None:
    store = JobStore(store_db)
    job_id = _at_configuring(store)
    left = store.transition(
        job_id, S.CONFIGURING, S.RUNNING, via=[S.PROVISIONED], detail="run", exit_code=None
    )
    assert left is S.CONFIGURING
    assert store.events(job_id)[-2:] == [(20, 30, None), (30, 40, "run")]
    assert store.holder(job_id) == (S.RUNNING, None)


def test_a_refused_move_writes_neither_its_steps_nor_its_results(store_db: Engine) -> None:
    store = JobStore(store_db)
    job_id = _at_configuring(store)
    events = store.events(job_id)
    with pytest.raises(TransitionError) as refused:
        store.transition(job_id, S.STARTED, S.RUNNING, via=[S.CONFIGURING, S.PROVISIONED])
    assert refused.value.current is S.CONFIGURING and refused.value.to is S.CONFIGURING
    with pytest.raises(TransitionError) as gone:
        store.transition("nope", S.CONFIGURING, S.PROVISIONED)
    assert gone.value.current is None
    store.transition(job_id, S.CONFIGURING, S.STOPPED)  # a stop wins the race
    with pytest.raises(TransitionError):
        store.transition(job_id, S.CONFIGURING, S.RUNNING, via=[S.PROVISIONED], results=[RESULT])
    assert store.events(job_id) == [*events, (20, 7, None)]
    job = store.get(job_id)
    assert job is not None and job.status is S.STOPPED and job.results == []


def test_results_are_written_with_the_status(store_db: Engine) -> None:
    store = JobStore(store_db)
    job_id = _at_configuring(store)
    store.transition(job_id, S.CONFIGURING, S.RUNNING, via=[S.PROVISIONED])
    store.transition(job_id, S.RUNNING, S.FILTERING)
    store.transition(job_id, S.FILTERING, S.PUBLISHING)
    store.set_results(job_id, [RESULT, RESULT])  # a resumed publish's earlier results
    store.transition(job_id, S.PUBLISHING, S.FINISHED, results=[RESULT])
    job = store.get(job_id)
    assert job is not None and job.status is S.FINISHED
    assert [(r.filename, r.index) for r in job.results] == [("out.txt", 0)]
