"""Engine integrity (fast layer): secrets kept out of the store, one crash map, a sweep whose
steps are independent."""

from __future__ import annotations

import os
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from operator_engine import pipeline
from operator_engine.api import Engine
from operator_engine.backends.base import BackendError, ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.context import JobContext, Outcome
from operator_engine.lifecycle import CRASH_FAILURE
from operator_engine.models import utcnow
from operator_engine.provision import MAX_ALGORITHM_BYTES
from operator_engine.reconcile import ORPHAN_GRACE_SECONDS
from operator_engine.statuses import OCCUPYING, TRANSITIONS, JobStatus
from operator_engine.worker import Worker
from operator_engine.workspace import FILE_OBJECTS, jobs_root
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, write_envs
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

S = JobStatus
SECRET_PATH = "/publisher-secret-7f3a9c.csv"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _store_bytes(db: Path) -> bytes:
    parts = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def _engine(tmp_path: Path, runner: FakeBackend | None = None) -> tuple[Engine, Path]:
    data = tmp_path / "data"  # the default layout: the store inside the data dir
    settings = Settings(
        data_dir=data,
        db_url=f"sqlite:///{data / 'tidewater.db'}",
        environments_file=write_envs(tmp_path / "envs.json", [env()]),
        pull_images=False,
        allow_non_public_ip=True,
    )
    return build_engine(settings, backend=runner or FakeBackend()), data / "tidewater.db"


def test_decrypted_urls_never_reach_the_store_and_its_files_are_private(
    tmp_path: Path, file_server: FileServer
) -> None:
    file_server.files[SECRET_PATH] = b"a,b\n1,2\n"
    seen: list[bytes] = []

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        seen.append((dirs["inputs"] / spec.environment["DIDS"][2:-2] / "0").read_bytes())
        return 0, False, b""

    engine, db = _engine(tmp_path, FakeBackend(algo))
    secret = file_server.url(SECRET_PATH).encode()
    job = engine.submit(request(files=[{"type": "url", "url": secret.decode()}]))
    folder = engine.services.folder(job.job_id)
    assert _mode(folder.root / FILE_OBJECTS) == 0o600 and _mode(folder.root) == 0o700
    assert secret in (folder.root / FILE_OBJECTS).read_bytes()
    assert SECRET_PATH.encode() not in _store_bytes(db)  # not even while queued
    assert engine.run_until_idle() == 1
    assert engine.get(job.job_id).status is S.FINISHED  # type: ignore[union-attr]
    assert seen == [b"a,b\n1,2\n"]  # the worker found the file objects
    assert not (folder.root / FILE_OBJECTS).exists()  # deleted with the inputs
    assert SECRET_PATH.encode() not in _store_bytes(db)
    assert _mode(db.parent) == 0o700
    for part in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert part.exists() and _mode(part) == 0o600, part
    assert _mode(jobs_root(db.parent)) == 0o700


def test_an_existing_store_is_tightened_to_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tidewater.db").touch(mode=0o644)
    os.chmod(data / "tidewater.db", 0o644)
    engine, db = _engine(tmp_path)
    engine.submit(request())
    assert _mode(db) == 0o600 and _mode(Path(f"{db}-wal")) == 0o600


def test_a_job_whose_file_objects_are_gone_fails_with_the_reason(tmp_path: Path) -> None:
    engine, _db = _engine(tmp_path)
    job = engine.submit(request())
    (engine.services.folder(job.job_id).root / FILE_OBJECTS).unlink()
    engine.run_until_idle()
    done = engine.get(job.job_id)
    assert done is not None and done.status is S.DATA_PROVISIONING_FAILED
    assert "file objects are missing" in (done.reason or "")


# -- item 16: one crash map ------------------------------------------------------------------


def test_every_crash_target_is_an_allowed_move() -> None:
    assert set(CRASH_FAILURE) == set(OCCUPYING)  # 71 settles, it never fails
    for status, target in CRASH_FAILURE.items():
        assert target in TRANSITIONS[status] and target.is_terminal


def _crash(_ctx: JobContext) -> Outcome:
    raise ZeroDivisionError("surprise")


@pytest.mark.parametrize("at", [S.CONFIGURING, S.PROVISIONED, S.FILTERING, S.PUBLISHING])
def test_a_crash_at_a_status_is_named_the_same_by_the_pipeline_and_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_server: FileServer, at: JobStatus
) -> None:
    file_server.files["/d.csv"] = b"x\n"
    files = [{"type": "url", "url": file_server.url("/d.csv")}]
    engine, _db = _engine(tmp_path)
    steps = list(pipeline.STEPS)
    index = max(i for i, (stage, _work) in enumerate(steps) if stage.status is at)
    steps.insert(index + 1, (steps[index][0], _crash))
    monkeypatch.setattr(pipeline, "STEPS", steps)
    crashed = engine.submit(request(files=files))
    engine.run_until_idle()
    by_pipeline = engine.get(crashed.job_id)
    assert by_pipeline is not None and by_pipeline.status is CRASH_FAILURE[at]
    assert "internal error in _crash" in (by_pipeline.reason or "")
    monkeypatch.undo()

    # the worker's own catch-all, for a job found at the same status
    held = engine.submit(request(files=files))
    store = engine.store
    assert store.claim("w", engine.services.schedulable_envs()) is not None
    current = S.STARTED
    for step in (S.CONFIGURING, S.PROVISIONED, S.RUNNING, S.FILTERING, S.PUBLISHING):
        if current >= at:
            break
        store.transition(held.job_id, current, step)
        current = step
    Worker(engine.services, 7).fail_unexpectedly(held.job_id)
    by_worker = engine.get(held.job_id)
    assert by_worker is not None and by_worker.status is by_pipeline.status


# -- item 14: independent sweep steps ----------------------------------------------------------


class _BrokenRemoval(FakeBackend):
    """Lists two leftover containers; removing the first one fails."""

    def __init__(self, job_ids: list[str], error: type[Exception]) -> None:
        super().__init__()
        self.leftovers = [(f"c{n}", job_id) for n, job_id in enumerate(job_ids)]
        self.removed: list[str] = []
        self.error = error

    def containers(self, job_id: str | None = None) -> list[tuple[str, str]]:
        return [c for c in self.leftovers if job_id is None or c[1] == job_id]

    def remove(self, container_id: str) -> None:
        if container_id == "c0":
            raise self.error("the daemon refused")
        self.removed.append(container_id)


@pytest.mark.parametrize("error", [BackendError, RuntimeError])
def test_one_failing_container_removal_does_not_abort_the_sweep(
    tmp_path: Path, error: type[Exception]
) -> None:
    runner = _BrokenRemoval(["gone-1", "gone-2"], error)
    engine, _db = _engine(tmp_path, runner)
    store = engine.store
    # an old folder of a job that no longer exists
    orphan = jobs_root(engine.services.data_dir) / ("f" * 32)
    orphan.mkdir(parents=True)
    old = orphan.stat().st_mtime - ORPHAN_GRACE_SECONDS - 60
    os.utime(orphan, (old, old))
    # a fresh one (a submit between saving its file objects and inserting its row)
    fresh = jobs_root(engine.services.data_dir) / ("e" * 32)
    fresh.mkdir()
    # a finished job whose results expired
    expired = engine.submit(request())
    engine.run_until_idle()
    store.update(expired.job_id, results_expire_at=utcnow() - timedelta(seconds=1))
    # a draining environment with no live job
    store.environments.put("draining", {"maxJobs": 1}, status="DELETING", source="api")

    Worker(engine.services, 3).sweep()

    assert set(runner.removed) == {"c1"}  # c0 failed, c1 was still removed
    assert not orphan.exists() and fresh.exists()
    assert store.get(expired.job_id).results == []  # type: ignore[union-attr]
    assert not engine.services.folder(expired.job_id).exists()
    assert [r.id for r in store.environments.rows()] == []


# -- item 5: one algorithm size limit ---------------------------------------------------------


def test_the_provider_and_the_engine_accept_the_same_largest_algorithm(
    tmp_path: Path, file_server: FileServer
) -> None:
    from types import SimpleNamespace

    from provider.compute_validation import ComputeValidator
    from provider.errors import ResourceError

    limit = MAX_ALGORITHM_BYTES
    file_server.files["/d.csv"] = b"x\n"
    file_server.files["/fits.py"] = b"#" * limit
    file_server.files["/over.py"] = b"#" * (limit + 1)
    provider_side = object.__new__(ComputeValidator)
    provider_side.svc = SimpleNamespace(settings=Settings(allow_non_public_ip=True))
    engine, _db = _engine(tmp_path, FakeBackend())
    engine.backend.images["tidewater/fake:1"] = "sha256:" + "f" * 64  # type: ignore[attr-defined]
    outcomes = {}
    for name in ("fits", "over"):
        files = [{"type": "url", "url": file_server.url(f"/{name}.py")}]
        try:
            provider_side.fetch_all(files)
            outcomes[f"provider {name}"] = "accepted"
        except ResourceError:
            outcomes[f"provider {name}"] = "refused"
        job = engine.submit(
            request(
                files=[{"type": "url", "url": file_server.url("/d.csv")}],
                algo_files=files,
            )
        )
        engine.run_until_idle()
        status = engine.get(job.job_id).status  # type: ignore[union-attr]
        outcomes[f"engine {name}"] = "accepted" if status is S.FINISHED else "refused"
    assert outcomes == {
        "provider fits": "accepted",
        "engine fits": "accepted",
        "provider over": "refused",
        "engine over": "refused",
    }


def test_a_resubmit_with_a_known_job_id_keeps_that_jobs_file_objects(tmp_path: Path) -> None:
    """An id chosen before submit (escrow) sent twice: the first job's folder stays."""
    import dataclasses

    engine, _db = _engine(tmp_path)
    first = engine.submit(dataclasses.replace(request(), job_id="a" * 32))
    again = engine.submit(dataclasses.replace(request(), job_id="a" * 32))
    assert again.job_id == first.job_id == "a" * 32
    assert (engine.services.folder(first.job_id).root / FILE_OBJECTS).exists()
