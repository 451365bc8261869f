"""Real Docker: capacity and draining managed through the admin API while the engine runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest
from flask import Flask

from operator_engine.api import Engine
from operator_engine.backends.docker import DockerBackend
from provider.admin.routes import bp
from provider.admin.tokens import TokenStore
from provider.errors import register_error_handlers
from tests.admin.conftest import Admin, env_body
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer()
    srv.files["/data.csv"] = b"x\n1\n"
    yield srv
    srv.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path, [env()], allow_non_public_ip=True)


@pytest.fixture
def engine(settings: Settings, docker_client: docker.DockerClient) -> Iterator[Engine]:
    eng = build_engine(settings, backend=DockerBackend(docker_client, pull=False), poll_seconds=0.1)
    yield eng
    eng.shutdown()
    for job_id in eng.store.job_ids():  # only this test's containers: the daemon is shared
        for cid, _job in eng.backend.containers(job_id):
            eng.backend.remove(cid)


@pytest.fixture
def api(settings: Settings, engine: Engine) -> Admin:
    app = Flask("admin-docker")
    app.extensions["tidewater"] = SimpleNamespace(db=engine.db, settings=settings, engine=engine)
    register_error_handlers(app)  # what create_app installs: the one error handler
    app.register_blueprint(bp)
    return Admin(app.test_client(), TokenStore(engine.db).create("it"))


def _submit(engine: Engine, server: FileServer, image: str, env_id: str, code: str) -> str:
    name, tag = image.rsplit(":", 1)
    job = engine.submit(
        request(
            rawcode=code,
            image=name,
            tag=tag,
            entrypoint="sh $ALGO",
            environment=env_id,
            files=[{"type": "url", "url": server.url("/data.csv"), "method": "GET"}],
        )
    )
    return job.job_id


def _until(
    check: Callable[[], Any], what: str, timeout: float = 60, detail: Callable[[], Any] = str
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {detail()}")


def test_max_jobs_one_then_raised_to_two(
    api: Admin, engine: Engine, server: FileServer, busybox_image: str
) -> None:
    assert api.post("/api/compute-envs", json=env_body("small", maxJobs=1)).status_code == 200
    ids = [_submit(engine, server, busybox_image, "small", "sleep 2; echo ok") for _ in range(3)]
    assert "small" in [e.id for e in engine.environments()]
    assert engine.current_jobs()["small"] == 3
    engine.start(2)

    def one_running() -> bool:
        counts = api.get("/api/batches/small").json
        return counts["running"] == 1 and counts["submitted"] == 2

    _until(one_running, "1 running and 2 submitted")
    # capacity raised while two jobs wait: a second one starts without waiting for the first
    resp = api.put("/api/compute-envs/small", json=env_body("small", maxJobs=2))
    assert resp.status_code == 200

    def in_flight() -> dict[str, int] | None:
        counts = api.get("/api/batches/small").json
        busy = counts["running"] + counts["starting"] + counts["runnable"] + counts["pending"]
        return counts if busy == 2 else None

    # two in flight: the first job and a waiting one, or (if the first just ended) both waiters
    _until(in_flight, "two jobs in flight", detail=lambda: api.get("/api/batches/small").json)
    _until(
        lambda: api.get("/api/batches/small").json["succeeded"] == 3,
        "3 succeeded",
        detail=lambda: (
            api.get("/api/batches/small").json,
            api.get("/api/batches/small/jobs").json,
        ),
    )
    assert engine.current_jobs().get("small", 0) == 0
    jobs = api.get("/api/batches/small/jobs").json
    assert sorted(j["job_id"] for j in jobs) == sorted(ids)
    assert all(j["start_time"] and j["stop_time"] for j in jobs)


def test_delete_with_running_jobs_then_drain(
    api: Admin, engine: Engine, server: FileServer, busybox_image: str
) -> None:
    api.post("/api/compute-envs", json=env_body("drainme", maxJobs=1, maxJobDuration=60))
    _submit(engine, server, busybox_image, "drainme", "sleep 3; echo ok")
    engine.start(1)
    _until(lambda: api.get("/api/batches/drainme").json["running"] == 1, "the job running")
    resp = api.delete("/api/compute-envs/drainme")
    assert resp.status_code == 400 and "drain" in resp.json["message"]
    assert api.delete("/api/compute-envs/drainme?drain=true").status_code == 204
    assert api.get("/api/compute-envs/drainme").json["status"] == "DELETING"
    assert "drainme" not in [e.id for e in engine.environments()]  # no new jobs
    _until(lambda: api.get("/api/compute-envs/drainme").status_code == 404, "the env gone")
    assert api.get("/api/batches/drainme").status_code == 404


def test_unresolvable_allowed_image_is_errored(api: Admin, busybox_image: str) -> None:
    body = env_body("imgs", allowedImages=["tidewater/absent:1"])
    assert api.post("/api/compute-envs", json=body).status_code == 200
    described = api.get("/api/compute-envs/imgs").json
    assert described["status"] == "ERRORED" and "tidewater/absent:1" in described["message"]
    body = env_body("imgs", allowedImages=[busybox_image])
    assert api.put("/api/compute-envs/imgs", json=body).json["status"] == "AVAILABLE"
