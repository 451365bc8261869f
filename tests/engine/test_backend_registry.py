"""The runner is chosen by the environment's ``platform``; a platform without a backend is a
clear error (file environments), INVALID (stored ones) or a 400 (the admin API)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask

from operator_engine.api import Engine, EngineError, EnvironmentUnavailable
from operator_engine.backends.base import (
    BackendNotConfigured,
    BackendRegistry,
    ContainerSpec,
    Volume,
)
from operator_engine.backends.fake import FakeBackend
from operator_engine.environments import EnvironmentConfigError, parse_environment
from operator_engine.statuses import JobStatus
from provider.admin.routes import bp
from provider.admin.tokens import TokenStore
from provider.errors import register_error_handlers
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine, engine_config
from tidewater.settings import Settings


def _writes(text: str):  # type: ignore[no-untyped-def]
    def algo(spec: ContainerSpec, dirs: dict[Volume, Path], killed: threading.Event):
        (dirs["outputs"] / "where.txt").write_text(text)
        return 0, False, b""

    return algo


def test_each_job_runs_on_the_backend_of_its_environments_platform(
    tmp_path: Path, file_server: FileServer
) -> None:
    file_server.files["/d"] = b"1\n"
    docker, kube = (
        FakeBackend(_writes("docker")),
        FakeBackend(_writes("k8s"), platform="kubernetes"),
    )
    settings = settings_for(
        tmp_path,
        [env(id="on-docker"), env(id="on-kube", platform="kubernetes")],
        allow_non_public_ip=True,
    )
    engine = build_engine(
        settings, backend=BackendRegistry([docker, kube], engine_config(settings))
    )
    files = [{"type": "url", "url": file_server.url("/d")}]
    jobs = {
        name: engine.submit(request(files=files, environment=name)).job_id
        for name in ("on-docker", "on-kube")
    }
    engine.run_until_idle()
    for name, job_id in jobs.items():
        job = engine.get(job_id)
        assert job is not None and job.status is JobStatus.FINISHED, job
        index = [r.filename for r in job.results].index("where.txt")
        assert engine.open_result(job_id, index)[0].read_text() == (
            "k8s" if name == "on-kube" else "docker"
        )
    assert [s.job_id for s in kube.started] == [jobs["on-kube"]]
    assert [s.job_id for s in docker.started] == [jobs["on-docker"]]
    assert kube.scope == docker.scope == engine.wake_scope


def test_a_file_environment_without_its_backend_stops_start_up(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [env(platform="kubernetes")])
    with pytest.raises(EngineError, match="kubernetes"):
        build_engine(settings, backend=FakeBackend())


def test_a_stored_environment_without_its_backend_is_invalid_and_takes_no_jobs(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, [env()])
    engine = build_engine(settings, backend=BackendRegistry([FakeBackend()]))
    engine.store.environments.put("k", {"maxJobs": 1}, source="api", platform="kubernetes")
    entry = engine.registry.entries()["k"]
    assert entry.status == "INVALID" and entry.env.platform == "kubernetes"
    assert entry.message and "no kubernetes backend" in entry.message
    assert "k" not in {e.id for e in engine.environments()}
    with pytest.raises(EnvironmentUnavailable):
        engine.submit(request(environment="k"))


def test_the_registry_names_what_is_missing_and_remembers_it(tmp_path: Path) -> None:
    registry = BackendRegistry([FakeBackend()])
    assert registry.unavailable("docker") is None
    with pytest.raises(BackendNotConfigured, match="no kubernetes backend"):
        registry.get("kubernetes")
    assert "kubernetes" in (registry.unavailable("kubernetes") or "")
    with_settings = BackendRegistry([], engine_config(settings_for(tmp_path, [env()])))
    with pytest.raises(BackendNotConfigured, match="unknown platform 'lsf'"):
        with_settings.get("lsf")
    registry.close()
    assert all(b.closed for b in registry)  # type: ignore[attr-defined]


def test_environment_platforms_are_validated() -> None:
    assert parse_environment({"id": "e", "platform": "kubernetes"}, "f").platform == "kubernetes"
    assert parse_environment({"id": "e"}, "f").platform == "docker"
    with pytest.raises(EnvironmentConfigError, match="platform must be one of"):
        parse_environment({"id": "e", "platform": "lsf"}, "f")


def _admin_app(engine: Engine, settings: Settings) -> tuple[Flask, dict[str, str]]:
    app = Flask("admin-platforms")
    app.extensions["tidewater"] = SimpleNamespace(db=engine.db, settings=settings, engine=engine)
    register_error_handlers(app)  # what create_app installs: the one error handler
    app.register_blueprint(bp)
    token = TokenStore(engine.db).create(f"test-{len(list(engine.backends))}")
    return app, {"Authorization": f"Bearer {token}"}


BODY = {"name": "k8s-small", "config": {"cpu": 1, "ramGB": 1, "diskGB": 1, "maxJobs": 1}}


def test_the_admin_api_creates_kubernetes_environments_only_where_a_backend_runs_them(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, [env()])
    docker_only = build_engine(settings, backend=FakeBackend())
    app, auth = _admin_app(docker_only, settings)
    client = app.test_client()
    refused = client.post(
        "/api/compute-envs", json={"computeEnv": {**BODY, "platform": "kubernetes"}}, headers=auth
    )
    assert refused.status_code == 400
    assert "computeEnv.platform: kubernetes cannot run jobs here" in refused.get_json()["message"]
    assert client.get("/service-info").get_json()["serviceInfo"]["platforms"] == ["docker"]

    kube = FakeBackend(platform="kubernetes")
    both = build_engine(
        settings, backend=BackendRegistry([FakeBackend(), kube], engine_config(settings))
    )
    app, auth = _admin_app(both, settings)
    client = app.test_client()
    created = client.post(
        "/api/compute-envs", json={"computeEnv": {**BODY, "platform": "kubernetes"}}, headers=auth
    )
    assert created.status_code in (200, 201), created.get_json()
    listed = {
        e["id"]: e for e in client.get("/api/compute-envs", headers=auth).get_json()["computeEnvs"]
    }
    assert listed["k8s-small"]["platform"] == "kubernetes"
    assert listed["k8s-small"]["status"] == "AVAILABLE"
    assert both.registry.entries()["k8s-small"].env.platform == "kubernetes"
    platforms = client.get("/service-info").get_json()["serviceInfo"]["platforms"]
    assert platforms == ["docker", "kubernetes"]
