"""Engine start and stop orchestration (issue 10 items 8, 9), fast layer: FakeBackend, SQLite.

``start`` returns before any recovery and recovered jobs run side by side on the worker
threads; ``shutdown`` lets a running algorithm finish within the grace, else stops it at 7 with
its logs, and leaves a job that has not run yet to resume."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_engine import pipeline
from operator_engine.api import SHUTDOWN_REASON, Engine
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.leases import HOST
from operator_engine.lifecycle import Stage
from operator_engine.models import utcnow
from operator_engine.statuses import JobStatus
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine


def make(tmp_path: Path, runner: FakeBackend, **env_over: object) -> Engine:
    settings = settings_for(tmp_path, [env(**env_over)], allow_non_public_ip=True)
    return build_engine(settings, backend=runner, poll_seconds=0.05)


@pytest.fixture
def data(file_server: FileServer) -> Iterator[list[dict[str, Any]]]:
    file_server.files["/d.csv"] = b"a,b\n1,2\n"
    yield [{"type": "url", "url": file_server.url("/d.csv")}]


def until(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_running_algorithm_is_stopped_at_7_after_the_grace(
    tmp_path: Path, data: list[dict[str, Any]]
) -> None:
    started = threading.Event()

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        started.set()
        killed.wait(30)
        return 0, False, b"partial output\n"

    engine = make(tmp_path, FakeBackend(algo))
    job = engine.submit(request(files=data))
    engine.start(1)
    assert started.wait(30)
    outcomes = engine.shutdown(grace=0.2)
    done = engine.get(job.job_id)
    assert done is not None and done.status is JobStatus.STOPPED
    assert engine.store.row(job.job_id).reason == SHUTDOWN_REASON  # type: ignore[union-attr]
    assert "stopped at shutdown" in outcomes[job.job_id]
    assert not engine.backend.containers(job.job_id)
    log = engine.open_result(job.job_id, [r.type for r in done.results].index("algorithmLog"))
    assert log[0].read_bytes().startswith(b"partial output")


def test_an_algorithm_that_ends_within_the_grace_finishes(
    tmp_path: Path, data: list[dict[str, Any]]
) -> None:
    started, release = threading.Event(), threading.Event()

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        started.set()
        release.wait(30)
        (dirs["outputs"] / "r.txt").write_text("done")
        return 0, False, b"ok\n"

    engine = make(tmp_path, FakeBackend(algo))
    job = engine.submit(request(files=data))
    engine.start(1)
    assert started.wait(30)

    def let_go() -> None:
        until(engine.services.stopping.is_set, "the stop to begin")
        release.set()

    letting_go = threading.Thread(target=let_go)
    letting_go.start()
    outcomes = engine.shutdown(grace=30)
    letting_go.join()
    assert engine.get(job.job_id).status is JobStatus.FINISHED  # type: ignore[union-attr]
    assert outcomes[job.job_id] == "ended at status 70 before the shutdown"


def test_a_job_that_has_not_run_is_left_to_resume(
    tmp_path: Path, data: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    at_30, release = threading.Event(), threading.Event()

    def hold(ctx: JobContext) -> Outcome:
        at_30.set()
        release.wait(30)
        return Outcome(Kind.OK)

    steps = list(pipeline.STEPS)
    steps[2] = (Stage.START, hold)
    monkeypatch.setattr(pipeline, "STEPS", steps)
    engine = make(tmp_path, FakeBackend())
    job = engine.submit(request(files=data))
    engine.start(1)
    assert at_30.wait(30)
    outcomes = engine.shutdown(grace=0.2)
    assert outcomes[job.job_id] == "left at status 30: it resumes when an engine starts"
    release.set()  # the stage ends after the stop: the job yields at the next boundary
    until(lambda: engine.store.row(job.job_id).worker_id is None, "the lease released")  # type: ignore[union-attr]
    assert engine.get(job.job_id).status is JobStatus.PROVISIONED  # type: ignore[union-attr]
    monkeypatch.undo()
    engine.start(1)  # the next start resumes it
    until(lambda: engine.get(job.job_id).status is JobStatus.FINISHED, "the job to finish")  # type: ignore[union-attr]
    engine.shutdown()


def test_start_returns_at_once_and_recovered_jobs_run_side_by_side(
    tmp_path: Path, data: list[dict[str, Any]]
) -> None:
    both_running = threading.Barrier(2)

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        both_running.wait(30)  # passes only when the two recovered jobs run at the same time
        return 0, False, b"ok\n"

    engine = make(tmp_path, FakeBackend(algo), maxJobs=2)
    dead = f"{HOST}:999999999-1:0:gone"  # a worker of a process that no longer exists
    jobs = [engine.submit(request(files=data, agreement_id=f"a{n}")) for n in range(2)]
    for job in jobs:
        engine.store.transition(
            job.job_id,
            JobStatus.WARMING_UP,
            JobStatus.STARTED,
            worker_id=dead,
            heartbeat_at=utcnow(),
        )
    engine.start(2)
    assert all(not engine.get(j.job_id).is_terminal for j in jobs)  # type: ignore[union-attr]
    for job in jobs:
        until(
            lambda job=job: engine.get(job.job_id).status is JobStatus.FINISHED,  # type: ignore[union-attr,misc]
            f"recovered job {job.job_id} to finish",
        )
    engine.shutdown()


def test_a_job_queued_by_another_process_wakes_an_idle_engine(
    tmp_path: Path, data: list[dict[str, Any]]
) -> None:
    settings = settings_for(tmp_path, [env()], allow_non_public_ip=True)
    running = build_engine(settings, backend=FakeBackend(), poll_seconds=60)
    api = build_engine(settings, backend=FakeBackend())  # as the API process's engine
    running.start(1)
    try:
        for n in range(2):  # the second arrives while the worker waits out its 60 s poll
            job = api.submit(request(files=data, agreement_id=f"w{n}"))
            until(
                lambda job=job: running.get(job.job_id).status is JobStatus.FINISHED,  # type: ignore[union-attr,misc]
                "the nudged engine to run the job",
            )
    finally:
        running.shutdown()
        api.db.dispose()
