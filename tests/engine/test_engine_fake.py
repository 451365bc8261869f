"""The engine's fast layer: FakeBackend, a temporary SQLite store, a local file server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from operator_engine.api import Engine, EnvironmentUnavailable, ResultNotFound, UnknownEnvironment
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.statuses import JobStatus
from tests.engine.conftest import FileServer
from tests.engine.helpers import did, env, request, settings_for
from tidewater.engine_config import build_engine

LADDER = [1, 10, 20, 30, 40, 50, 60, 70]


def make(tmp_path: Path, runner: FakeBackend | None = None, **env_over: object) -> Engine:
    settings = settings_for(tmp_path, [env(**env_over)], allow_non_public_ip=True)
    return build_engine(settings, backend=runner or FakeBackend())


def test_job_walks_every_status_and_publishes(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/d.csv"] = b"a,b\n1,2\n"
    seen: dict[str, object] = {}

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        seen["input"] = (dirs["inputs"] / did(1)[7:] / "0").read_bytes()
        seen["env"] = spec.environment
        (dirs["outputs"] / "sub").mkdir()
        (dirs["outputs"] / "sub" / "r.txt").write_text("result")
        (dirs["outputs"] / "link").symlink_to("/etc/passwd")
        return 0, False, b"hello log\n"

    engine = make(tmp_path, FakeBackend(algo))
    job = engine.submit(
        request(files=[{"type": "url", "url": file_server.url("/d.csv")}], customdata={"k": 1})
    )
    assert job.status is JobStatus.WARMING_UP
    assert engine.run_until_idle() == 1
    done = engine.get(job.job_id)
    assert done is not None and done.status is JobStatus.FINISHED, done
    assert done.date_finished is not None
    assert [to for _f, to, _d in engine.store.events(job.job_id)] == LADDER
    assert seen["input"] == b"a,b\n1,2\n"
    assert seen["env"]["DIDS"] == f'["{did(1)[7:]}"]'  # type: ignore[index]
    types = [(r.filename, r.type) for r in done.results]
    assert types == [
        ("sub/r.txt", "output"),
        ("algorithm.log", "algorithmLog"),
        ("configure.log", "configrationLog"),
        ("publish.log", "publishLog"),
    ]
    path, res = engine.open_result(job.job_id, 0)
    assert path.read_text() == "result" and res.filesize == 6
    publish_log = engine.open_result(job.job_id, 3)[0].read_text()
    assert "link: symbolic link" in publish_log
    assert not (path.parents[1] / "inputs").exists()  # the dataset copy is gone
    with pytest.raises(ResultNotFound):
        engine.open_result(job.job_id, 4)


def test_agreement_is_idempotent_and_owner_case_insensitive(tmp_path: Path) -> None:
    engine = make(tmp_path)
    a = engine.submit(request(agreement_id="0xorder"))
    b = engine.submit(request(agreement_id="0xorder"))
    assert a.job_id == b.job_id
    assert [j.job_id for j in engine.find(a.owner.upper().replace("0X", "0x"))] == [a.job_id]
    assert engine.find(a.owner, did=did(1))[0].job_id == a.job_id
    assert engine.find(a.owner, did=did(9)) == []


def test_unknown_and_draining_environments(tmp_path: Path) -> None:
    engine = make(tmp_path)
    with pytest.raises(UnknownEnvironment):
        engine.submit(request(environment="nope"))
    engine.store.environments.put("api-env", {"maxJobs": 1}, status="DELETING", source="api")
    with pytest.raises(EnvironmentUnavailable):
        engine.submit(request(environment="api-env"))
    engine.store.environments.put("api-env", {"maxJobs": 1}, status="AVAILABLE", source="api")
    assert engine.environment("api-env") is not None  # takes effect without a restart
    engine.submit(request(environment="api-env"))


def test_stop_while_queued_and_delete(tmp_path: Path) -> None:
    engine = make(tmp_path)
    job = engine.submit(request())
    stopped = engine.stop(job.job_id)
    assert stopped.status is JobStatus.STOPPED and stopped.stopreq == 1
    assert stopped.date_finished is not None
    engine.run_until_idle()
    assert engine.get(job.job_id).status is JobStatus.STOPPED  # type: ignore[union-attr]
    engine.delete(job.job_id)
    assert engine.get(job.job_id) is None
