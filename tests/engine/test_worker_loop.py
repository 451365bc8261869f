"""The worker loop takes work back to back: a worker that ends a job claims the next at once, and
an idle worker woken by a new job never waits out its poll (fast layer: FakeBackend, SQLite).
Every engine here polls once an hour, so a job left for the next poll would never finish."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from operator_engine.api import Engine
from operator_engine.backends.fake import FakeBackend
from operator_engine.statuses import JobStatus
from operator_engine.wakeup import WakeSignal
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tests.engine.test_shutdown import until
from tidewater.engine_config import build_engine

HOUR = 3600.0


def _engine(
    tmp_path: Path, file_server: FileServer, backend: FakeBackend, max_jobs: int = 1
) -> tuple[Engine, list[dict[str, Any]]]:
    """An engine polling once an hour, and the file objects of a small dataset."""
    settings = settings_for(tmp_path, [env(maxJobs=max_jobs)], allow_non_public_ip=True)
    file_server.files["/d.csv"] = b"a,b\n1,2\n"
    engine = build_engine(settings, backend=backend, poll_seconds=HOUR)
    return engine, [{"type": "url", "url": file_server.url("/d.csv")}]


def test_a_queue_runs_back_to_back_without_waiting_a_poll(
    tmp_path: Path, file_server: FileServer
) -> None:
    engine, data = _engine(tmp_path, file_server, FakeBackend())
    jobs = [engine.submit(request(files=data, agreement_id=f"q{n}")) for n in range(5)]
    engine.start(2)  # one worker runs a job, the other waits: maxJobs 1
    try:
        until(
            lambda: all(engine.get(j.job_id).status is JobStatus.FINISHED for j in jobs),  # type: ignore[union-attr]
            "the queue to finish without a poll",
        )
    finally:
        engine.shutdown()
    for job in jobs:  # each ran once, through every status
        moves = [to for _from, to, _detail in engine.store.events(job.job_id)]
        assert moves.count(int(JobStatus.RUNNING)) == 1, moves
        assert moves[-1] == int(JobStatus.FINISHED)


def test_jobs_queued_while_the_workers_idle_run_without_a_poll(
    tmp_path: Path, file_server: FileServer
) -> None:
    engine, data = _engine(tmp_path, file_server, FakeBackend(), max_jobs=2)
    engine.start(2)
    try:
        for n in range(3):  # each arrives while both workers wait out their hour
            job = engine.submit(request(files=data, agreement_id=f"i{n}"))
            until(
                lambda job=job: engine.get(job.job_id).status is JobStatus.FINISHED,  # type: ignore[union-attr,misc]
                f"job {n} to run",
            )
    finally:
        engine.shutdown()


def test_a_nudge_between_a_look_and_the_wait_is_not_lost() -> None:
    signal = WakeSignal()
    seen = signal.mark()  # a worker looks for work: none yet
    signal.set()  # a job is queued before it waits
    assert signal.wait(seen, timeout=HOUR)  # it does not sleep through it
    assert not signal.wait(signal.mark(), timeout=0)  # nothing new since: it would wait


class _SlowRemoval(FakeBackend):
    """Removes a container only once the test allows it."""

    def __init__(self) -> None:
        super().__init__()
        self.removing = threading.Event()
        self.may_remove = threading.Event()

    def remove(self, container_id: str) -> None:
        self.removing.set()
        assert self.may_remove.wait(60), "the test never allowed the removal"
        super().remove(container_id)


def test_a_finished_container_is_removed_while_the_job_publishes_and_before_it_ends(
    tmp_path: Path, file_server: FileServer
) -> None:
    backend = _SlowRemoval()
    engine, data = _engine(tmp_path, file_server, backend)
    job = engine.submit(request(files=data))
    engine.start(1)
    try:
        until(backend.removing.is_set, "the container's removal to begin")
        # the stages after the run go on meanwhile, up to publishing, and the job waits there
        until(
            lambda: engine.store.row(job.job_id).status == JobStatus.PUBLISHING,  # type: ignore[union-attr]
            "the job to publish while its container is being removed",
        )
        assert backend.containers(job.job_id), "removed before the test allowed it"
        backend.may_remove.set()
        until(
            lambda: engine.get(job.job_id).status is JobStatus.FINISHED,  # type: ignore[union-attr]
            "the job to finish once its container is gone",
        )
        assert not backend.containers(job.job_id)
    finally:
        backend.may_remove.set()
        engine.shutdown()
