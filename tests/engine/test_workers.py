"""Worker processes on real Docker: shared stores, crash recovery, stop and delete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from operator_engine import pipeline
from operator_engine.backends.docker import DockerBackend
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.lifecycle import Stage
from operator_engine.models import Job
from operator_engine.statuses import JobStatus
from operator_engine.workspace import JobFolder
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, write_envs
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _live_log(folder: JobFolder) -> Path:
    """The algorithm log while the job runs (in its disk-share area when one is mounted)."""
    in_area = folder.work / "logs" / "algorithm.log"
    return in_area if in_area.exists() else folder.log("algorithm.log")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    """A store + data dir shared by this test's engine and the worker processes it starts."""

    def __init__(self, tmp_path: Path, db_url: str, client: docker.DockerClient, **env_over: Any):
        self.data_dir = tmp_path / "data"
        self.envs = write_envs(tmp_path / "envs.json", [env(**env_over)])
        self.db_url = db_url
        self.settings = Settings(
            data_dir=self.data_dir,
            db_url=db_url,
            environments_file=self.envs,
            allow_non_public_ip=True,
        )
        self.engine = build_engine(
            self.settings, backend=DockerBackend(client, pull=False), lease_seconds=3
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.tmp = tmp_path

    def spawn(self, workers: int = 1) -> subprocess.Popen[bytes]:
        environ = {
            **os.environ,
            "TIDEWATER_DATA_DIR": str(self.data_dir),
            "TIDEWATER_DB": self.db_url,
            "TIDEWATER_ENVIRONMENTS": str(self.envs),
            "ALLOW_NON_PUBLIC_IP": "true",
            "TIDEWATER_LOG_LEVEL": "WARNING",
        }
        log = self.tmp / f"engine-{len(self.procs)}.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidewater.cli",
                "engine",
                "--workers",
                str(workers),
                "--lease-seconds",
                "3",
                "--poll-seconds",
                "0.1",
                "--no-pull",
            ],
            cwd=REPO,
            env=environ,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.engine.shutdown()
        for cid, _job in self.engine.backend.containers():
            self.engine.backend.remove(cid)
        self.engine.db.dispose()


@pytest.fixture
def stack_factory(
    tmp_path: Path, docker_client: docker.DockerClient
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def build(db_url: str | None = None, **env_over: Any) -> Stack:
        stack = Stack(
            tmp_path, db_url or f"sqlite:///{tmp_path / 'store.db'}", docker_client, **env_over
        )
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.close()


def submit(stack: Stack, server: FileServer, image: str, code: str, **kw: Any) -> Job:
    server.files.setdefault("/d", b"data\n")
    name, tag = image.rsplit(":", 1)
    return stack.engine.submit(
        request(
            files=[{"type": "url", "url": server.url("/d")}],
            rawcode=code,
            image=name,
            tag=tag,
            entrypoint="sh $ALGO",
            **kw,
        )
    )


def run_fifty_in_two_processes(stack: Stack, server: FileServer, image: str) -> None:
    jobs = [submit(stack, server, image, "echo ran > /data/outputs/out.txt") for _ in range(50)]
    procs = [stack.spawn(workers=2), stack.spawn(workers=2)]
    store = stack.engine.store

    def all_done() -> bool:
        return all(store.get(j.job_id).is_terminal for j in jobs)  # type: ignore[union-attr]

    wait_for(all_done, 240, "50 jobs to finish", every=0.5)
    claimers: Counter[str] = Counter()
    for job in jobs:
        done = store.get(job.job_id)
        assert done is not None and done.status is JobStatus.FINISHED, done.reason
        events = store.events(job.job_id)
        tos = [to for _f, to, _d in events]
        assert tos == [1, 10, 20, 30, 40, 50, 60, 70]  # claimed once, run once
        claimer = next(d for _f, to, d in events if to == 10)
        claimers[claimer.split(":")[1]] += 1  # the process
    assert len(claimers) == 2, claimers  # both processes worked
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(30) == 0
    assert not stack.engine.backend.containers()


def test_two_processes_share_sqlite(
    stack_factory: Callable[..., Stack], file_server: FileServer, busybox_image: str
) -> None:
    stack = stack_factory(maxJobs=4, cpuNumber=2, ramGB=1)
    run_fifty_in_two_processes(stack, file_server, busybox_image)


@pytest.mark.postgres
def test_two_processes_share_postgres(
    stack_factory: Callable[..., Stack],
    file_server: FileServer,
    busybox_image: str,
    pg_url: str,
) -> None:
    stack = stack_factory(pg_url, maxJobs=4, cpuNumber=2, ramGB=1)
    run_fifty_in_two_processes(stack, file_server, busybox_image)


def test_killed_worker_job_ends_terminal_and_nothing_is_orphaned(
    stack_factory: Callable[..., Stack], file_server: FileServer, busybox_image: str
) -> None:
    stack = stack_factory()
    job = submit(stack, file_server, busybox_image, "echo started; sleep 60")
    first = stack.spawn()
    store, runner = stack.engine.store, stack.engine.backend
    wait_for(
        lambda: (
            store.get(job.job_id).status is JobStatus.RUNNING  # type: ignore[union-attr]
            and runner.containers(job.job_id)
        ),
        60,
        "the job to run",
    )
    first.kill()  # SIGKILL mid-job
    first.wait(10)
    assert runner.containers(job.job_id)  # the container outlived its worker
    second = stack.spawn()
    done = wait_for(lambda: (j := store.get(job.job_id)) and j.is_terminal and j, 60, "recovery")
    assert done.status is JobStatus.RUN_FAILED
    assert "worker" in (done.reason or "") and "lost" in (done.reason or "")
    publish = [r for r in done.results if r.type == "publishLog"]
    assert (
        publish
        and "lost"
        in stack.engine.open_result(job.job_id, done.results.index(publish[0]))[0].read_text()
    )
    assert not runner.containers(job.job_id)
    folder = stack.engine.services.folder(job.job_id)
    assert sorted(p.name for p in folder.root.iterdir()) == ["logs", "outputs"]
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0


def test_stop_at_1_30_40_and_delete(
    stack_factory: Callable[..., Stack],
    file_server: FileServer,
    busybox_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = stack_factory(maxJobs=2, cpuNumber=2)
    engine, store, runner = stack.engine, stack.engine.store, stack.engine.backend

    # at 1: nobody has claimed it yet
    queued = submit(stack, file_server, busybox_image, "true")
    stopped = engine.stop(queued.job_id)
    assert stopped.status is JobStatus.STOPPED and stopped.stopreq == 1

    # at 30: a stage held right after provisioning
    at_30, release = threading.Event(), threading.Event()

    def hold(ctx: JobContext) -> Outcome:
        at_30.set()
        release.wait(30)
        return Outcome(Kind.OK)

    steps = list(pipeline.STEPS)
    steps[2] = (Stage.START, hold)
    monkeypatch.setattr(pipeline, "STEPS", steps)
    provisioned = submit(stack, file_server, busybox_image, "true")
    engine.start(1)
    assert at_30.wait(30)
    assert store.get(provisioned.job_id).status is JobStatus.PROVISIONED  # type: ignore[union-attr]
    stopped = engine.stop(provisioned.job_id, wait=0)
    release.set()
    done = wait_for(
        lambda: (
            store.row(provisioned.job_id).worker_id is None  # type: ignore[union-attr]
            and store.get(provisioned.job_id)
        ),
        30,
        "the worker to let go",
    )
    assert done.status is JobStatus.STOPPED and not runner.containers(provisioned.job_id)
    assert JobStatus.RUNNING not in [to for _f, to, _d in store.events(provisioned.job_id)]
    assert not (engine.services.folder(provisioned.job_id).inputs).exists()
    monkeypatch.undo()

    # at 40: the container is killed, partial logs kept
    running = submit(stack, file_server, busybox_image, "echo started; sleep 60")
    wait_for(
        lambda: (
            runner.containers(running.job_id)
            and store.get(running.job_id).status is JobStatus.RUNNING
        ),
        30,
        "run",
    )  # type: ignore[union-attr]
    wait_for(
        lambda: b"started" in _live_log(engine.services.folder(running.job_id)).read_bytes(),
        10,
        "output",
    )
    stopped = engine.stop(running.job_id)
    assert stopped.status is JobStatus.STOPPED and stopped.stopreq == 1
    assert not runner.containers(running.job_id)
    log_index = [r.type for r in stopped.results].index("algorithmLog")
    assert engine.open_result(running.job_id, log_index)[0].read_text().startswith("started")

    # delete: a stopped job and a running one; everything of theirs is gone
    live = submit(stack, file_server, busybox_image, "sleep 60")
    wait_for(lambda: runner.containers(live.job_id), 30, "second run")
    for job_id in (running.job_id, live.job_id):
        before = engine.delete(job_id)
        assert before.job_id == job_id
        assert engine.get(job_id) is None and store.events(job_id) == []
        assert not runner.containers(job_id)
        assert not engine.services.folder(job_id).exists()
    engine.shutdown()
    assert not engine.services.folder(live.job_id).exists()  # the worker did not recreate it
