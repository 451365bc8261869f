"""The job lifecycle has one owner (fast layer): the crash map by status, failure codes by
stage, named resume points, stop reasons, and one status write that always records an event."""

from __future__ import annotations

from pathlib import Path

import pytest

from datastore.job_writes import write_status
from datastore.jobs import JobStore
from operator_engine.api import Engine
from operator_engine.backends.fake import FakeBackend
from operator_engine.lifecycle import (
    CRASH_FAILURE,
    FAILURE,
    EnvState,
    Kind,
    Stage,
    StopReason,
    finish_drains,
    is_allowed,
    resume_stage,
    stop_reason,
)
from operator_engine.statuses import IN_FLIGHT, OCCUPYING, TERMINAL, TRANSITIONS, JobStatus
from operator_engine.worker import Worker
from operator_engine.workspace import FILE_OBJECTS
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, write_envs
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

S = JobStatus


def _engine(tmp_path: Path) -> Engine:
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        environments_file=write_envs(tmp_path / "envs.json", [env()]),
        pull_images=False,
        allow_non_public_ip=True,
    )
    return build_engine(settings, backend=FakeBackend())


# -- the crash map, by status ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "ends_at"),
    [
        (S.STARTED, S.STOPPED),
        (S.CONFIGURING, S.DATA_PROVISIONING_FAILED),
        # provisioning succeeded: what comes next is the run, so a crash is a run failure
        (S.PROVISIONED, S.RUN_FAILED),
        (S.RUNNING, S.RUN_FAILED),
        (S.FILTERING, S.UPLOAD_FAILED),
        (S.PUBLISHING, S.UPLOAD_FAILED),
    ],
)
def test_a_crash_ends_a_job_by_the_status_it_was_in(at: JobStatus, ends_at: JobStatus) -> None:
    assert CRASH_FAILURE[at] is ends_at
    assert is_allowed(at, ends_at) and ends_at.is_terminal


def test_the_crash_map_covers_every_occupying_status_and_no_other() -> None:
    assert set(CRASH_FAILURE) == set(OCCUPYING)  # 71 has published: it settles, never fails


# -- failure codes by stage --------------------------------------------------------------------

#: how each stage's work may end (the stage modules' outcomes)
_FAILS_WITH = {
    Stage.CONFIGURE: {Kind.DATA_FAILED},
    Stage.PROVISION: {Kind.DATA_FAILED, Kind.ALGO_FAILED},
    Stage.RUN: {Kind.RUN_FAILED, Kind.TIMED_OUT, Kind.EGRESS_EXCEEDED},
    Stage.FILTER: {Kind.PUBLISH_FAILED, Kind.EGRESS_EXCEEDED},
    Stage.PUBLISH: {Kind.PUBLISH_FAILED},
}


def _statuses_working(stage: Stage) -> set[JobStatus]:
    """Every status a job can be at while ``stage`` works: its own, and those a job resumed
    at an earlier stage still carries (a job found at 30 provisions again at 30)."""
    carried = {s for s in IN_FLIGHT if resume_stage(s) is stage and s >= stage.status}
    if stage is Stage.PROVISION:
        carried |= _statuses_working(Stage.CONFIGURE)
    return {stage.status} | carried


@pytest.mark.parametrize("stage", list(_FAILS_WITH))
def test_every_failure_a_stage_can_end_with_is_an_allowed_move(stage: Stage) -> None:
    for at in _statuses_working(stage):
        for kind in _FAILS_WITH[stage]:
            assert is_allowed(at, FAILURE[kind]), (stage, at, kind)


def test_a_job_resumed_at_30_provisions_again_and_its_data_failure_is_31(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path)
    store = engine.store
    job = engine.submit(request())
    lost = "elsewhere:1-1:0:gone"  # a worker on another host whose lease has expired
    assert store.claim(lost, engine.services.schedulable_envs(), lease_seconds=-1) is not None
    store.transition(job.job_id, S.STARTED, S.CONFIGURING)
    store.transition(job.job_id, S.CONFIGURING, S.PROVISIONED)
    (engine.services.folder(job.job_id).root / FILE_OBJECTS).unlink()

    assert Worker(engine.services, 2).sweep() == 1
    ended = engine.get(job.job_id)
    assert ended is not None and ended.status is S.DATA_PROVISIONING_FAILED, ended
    assert "file objects are missing" in (ended.reason or "")
    assert [(f, t) for f, t, _ in store.events(job.job_id)][-1] == (30, 31)


class _PaidAndSettled:
    """A settlement whose jobs are all paid and settle at once (the fast layer's stand-in)."""

    def __init__(self) -> None:
        self.settled: list[str] = []

    def is_paid(self, job_id: str) -> bool:
        return True

    def start_refusal(self, job_id: str) -> str | None:
        return None

    def settle(self, job_id: str) -> bool:
        self.settled.append(job_id)
        return True

    def sweep(self, job_status: object) -> int:
        return 0


def _lost_at(engine: Engine, status: JobStatus, environment: str = "test-env") -> str:
    """A job at ``status`` held by a worker on another host whose lease has expired."""
    store = engine.store
    job = engine.submit(request(environment=environment))
    lost = "elsewhere:1-1:0:gone"
    assert store.claim(lost, engine.services.schedulable_envs(), lease_seconds=-1) is not None
    for step in (S.CONFIGURING, S.PROVISIONED, S.RUNNING, S.FILTERING, S.PUBLISHING, S.SETTLING):
        if step > status:
            break
        store.transition(job.job_id, None, step)
    return job.job_id


@pytest.mark.parametrize(
    ("at", "ends_at"),
    [
        (S.CONFIGURING, S.DATA_PROVISIONING_FAILED),
        (S.PROVISIONED, S.DATA_PROVISIONING_FAILED),
        (S.FILTERING, S.UPLOAD_FAILED),
        (S.PUBLISHING, S.UPLOAD_FAILED),
        (S.SETTLING, S.FINISHED),  # published already: only the settlement was left
    ],
)
def test_a_resumed_job_whose_environment_is_gone_ends_instead_of_looping(
    tmp_path: Path, at: JobStatus, ends_at: JobStatus
) -> None:
    engine = _engine(tmp_path)
    engine.services.settlement = settlement = _PaidAndSettled()
    engine.store.environments.put("api-env", {"maxJobs": 1}, source="api")
    job_id = _lost_at(engine, at, "api-env")
    engine.store.environments.delete("api-env")

    assert Worker(engine.services, 2).sweep() == 1
    ended = engine.get(job_id)
    assert ended is not None and ended.status is ends_at, ended
    if at is S.SETTLING:
        assert job_id in settlement.settled
    else:
        assert ended.reason == "environment api-env no longer exists"
    assert Worker(engine.services, 3).sweep() == 0  # nothing left to recover


# -- resume points -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "stage"),
    [
        (S.STARTED, Stage.CONFIGURE),
        (S.CONFIGURING, Stage.CONFIGURE),
        (S.PROVISIONED, Stage.CONFIGURE),
        (S.RUNNING, None),  # an interrupted run is not repeated behind the owner's back
        (S.FILTERING, Stage.FILTER),
        (S.PUBLISHING, Stage.FILTER),
        (S.SETTLING, Stage.SETTLE),
    ],
)
def test_a_job_found_without_its_worker_resumes_at_a_named_stage(
    status: JobStatus, stage: Stage | None
) -> None:
    assert resume_stage(status) is stage
    assert set(IN_FLIGHT) == {
        S.STARTED,
        S.CONFIGURING,
        S.PROVISIONED,
        S.RUNNING,
        S.FILTERING,
        S.PUBLISHING,
        S.SETTLING,
    }


def test_only_walks_that_provision_need_the_file_objects() -> None:
    assert [s for s in Stage if s.needs_inputs] == [Stage.CONFIGURE, Stage.PROVISION]


# -- stop reasons ------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(StopReason))
def test_a_stop_reason_round_trips_through_the_store_and_the_wire(
    tmp_path: Path, reason: StopReason
) -> None:
    engine = _engine(tmp_path)
    job = engine.submit(request())
    engine.store.transition(job.job_id, S.WARMING_UP, S.STOPPED, stopreq=int(reason))
    stopped = engine.get(job.job_id)
    assert stopped is not None and stopped.stopreq is reason
    assert stopped.to_ocean()["stopreq"] == int(reason)
    assert type(stopped.to_ocean()["stopreq"]) is int  # plain JSON number
    assert StopReason(int(reason)) is reason


def test_the_stop_reason_of_a_stop_and_of_a_timeout(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    by_owner = engine.stop(engine.submit(request()).job_id)
    assert by_owner.stopreq is StopReason.OWNER and by_owner.reason == "stopped by its owner"
    limited = engine.stop(engine.submit(request()).job_id, stopreq=StopReason.TIME_LIMIT)
    assert limited.stopreq is StopReason.TIME_LIMIT
    assert limited.reason == "stopped: time limit reached"
    assert stop_reason(Kind.TIMED_OUT) is StopReason.TIME_LIMIT
    assert {stop_reason(k) for k in Kind if k is not Kind.TIMED_OUT} == {StopReason.NONE}
    assert FAILURE[Kind.TIMED_OUT] is S.STOPPED


# -- one status write, always with its event ---------------------------------------------------


def _assert_history_matches(store: JobStore, job_id: str) -> None:
    """The job's events form one chain of allowed moves from its submission to its status:
    a status written without its event would break the chain."""
    events = store.events(job_id)
    row = store.row(job_id)
    assert row is not None and events, job_id
    previous: int | None = None
    for from_, to, _detail in events:
        assert from_ == previous, events
        assert is_allowed(None if from_ is None else S(from_), S(to)), events
        previous = to
    assert previous == row.status, (events, row.status)


def test_every_status_write_path_records_its_event(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/d.csv"] = b"x\n"
    engine = _engine(tmp_path)
    store = engine.store
    data = [{"type": "url", "url": file_server.url("/d.csv")}]
    finished = engine.submit(request(files=data))  # insert, claim, the pipeline's moves
    engine.run_until_idle()
    stopped_queued = engine.stop(engine.submit(request()).job_id)  # a stop at 1
    failed = engine.submit(request(files=[]))  # a stage's failure
    engine.run_until_idle()
    held = engine.submit(request())
    assert store.claim("w", engine.services.schedulable_envs()) is not None
    store.transition(held.job_id, S.STARTED, S.CONFIGURING)
    Worker(engine.services, 4).fail_unexpectedly(held.job_id)  # the worker's catch-all
    lost = engine.submit(request())
    assert store.claim("elsewhere:1-1:0:x", engine.services.schedulable_envs(), -1) is not None
    for step in (S.CONFIGURING, S.PROVISIONED, S.RUNNING):
        store.transition(lost.job_id, None, step)
    Worker(engine.services, 5).sweep()  # a lost run ends at 41

    ends = {
        finished.job_id: S.FINISHED,
        stopped_queued.job_id: S.STOPPED,
        failed.job_id: S.DATA_PROVISIONING_FAILED,
        held.job_id: S.DATA_PROVISIONING_FAILED,
        lost.job_id: S.RUN_FAILED,
    }
    for job_id, status in ends.items():
        assert store.get(job_id).status is status, job_id  # type: ignore[union-attr]
        _assert_history_matches(store, job_id)


def test_the_one_status_write_refuses_a_move_the_lifecycle_does_not_allow(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path)
    job = engine.submit(request())
    store = engine.store
    with store.engine.begin() as conn, pytest.raises(ValueError, match="not an allowed move"):
        write_status(conn, job.job_id, S.WARMING_UP, S.FINISHED, at=job.date_created, detail=None)
    with pytest.raises(ValueError, match="transition"):
        store.update(job.job_id, status=int(S.FINISHED))
    assert store.get(job.job_id).status is S.WARMING_UP  # type: ignore[union-attr]


def test_no_terminal_status_moves() -> None:
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert not any(is_allowed(status, to) for to in JobStatus)


# -- environment states and drains -------------------------------------------------------------


def test_environment_states_decide_what_takes_and_runs_jobs(tmp_path: Path) -> None:
    assert [s for s in EnvState if s.accepts_jobs] == [EnvState.AVAILABLE]
    assert {s for s in EnvState if s.schedulable} == {EnvState.AVAILABLE, EnvState.DELETING}
    store = _engine(tmp_path).store
    with pytest.raises(ValueError, match="DRAINED"):
        store.environments.put("e", {"maxJobs": 1}, status="DRAINED")
    store.environments.put("e", {"maxJobs": 1}, status=EnvState.ERRORED)
    assert [(r.id, r.status) for r in store.environments.rows()] == [("e", "ERRORED")]


def test_a_drain_finishes_once_its_last_job_ends(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    store = engine.store
    store.environments.put("api-env", {"maxJobs": 1}, source="api")
    store.environments.put("idle", {"maxJobs": 1}, status=EnvState.AVAILABLE, source="api")
    job = engine.submit(request(environment="api-env"))
    store.environments.put("api-env", {"maxJobs": 1}, status=EnvState.DELETING)
    assert engine.registry.entries()["api-env"].schedulable
    assert finish_drains(store) == []  # its job is still queued
    engine.stop(job.job_id)
    assert finish_drains(store) == ["api-env"]
    # an available one is never drained
    assert [r.id for r in store.environments.rows()] == ["idle"]


def test_a_stage_failure_the_table_refuses_ends_the_job_at_the_crash_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stage at 20 that reports a run failure (41 is no move from 20) must still end its job
    (at the crash map's 31), not leave it at 20 for a sweep that would refuse the move again."""
    from types import SimpleNamespace

    from operator_engine import pipeline
    from operator_engine.context import Outcome, StageState

    engine = _engine(tmp_path)
    job = engine.submit(request(files=[]))
    assert engine.store.claim("w", engine.services.schedulable_envs()) is not None
    engine.store.transition(job.job_id, S.STARTED, S.CONFIGURING)
    ctx = SimpleNamespace(  # the parts of a JobContext that fail() reads
        job_id=job.job_id,
        env=engine.registry.entries()["test-env"].env,
        workspace=engine.services.workspace(job.job_id),
        state=StageState(),
    )
    outcome = Outcome(Kind.RUN_FAILED, "boom")
    ended = pipeline.fail(ctx, engine.store, S.CONFIGURING, outcome)  # type: ignore[arg-type]
    assert ended is S.DATA_PROVISIONING_FAILED
    row = engine.store.row(job.job_id)
    assert row is not None and row.status == S.DATA_PROVISIONING_FAILED
    assert "failed at 41, not a move from 20" in caplog.text
    _assert_history_matches(engine.store, job.job_id)
