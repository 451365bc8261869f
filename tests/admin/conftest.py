"""Admin suite fixtures: the admin blueprint on a real SQLite store, and a live token."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from datastore.engine import make_engine
from datastore.jobs import JobStore
from datastore.migrate import upgrade
from operator_engine.backends.base import BackendRegistry
from operator_engine.backends.fake import FakeBackend
from operator_engine.environments import EnvironmentRegistry
from operator_engine.models import AlgorithmInput, DatasetInput, JobRequest
from provider.admin.routes import bp
from provider.admin.tokens import TokenStore
from provider.errors import register_error_handlers
from tidewater.settings import Settings


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(store.engine)
    return store


@pytest.fixture
def registry(store: JobStore) -> EnvironmentRegistry:
    return EnvironmentRegistry(None, store)


@pytest.fixture
def app(store: JobStore, registry: EnvironmentRegistry, tmp_path: Path) -> Flask:
    app = Flask("admin-test")
    settings = Settings.from_env({"TIDEWATER_DATA_DIR": str(tmp_path)})
    # a docker backend only: environments on other platforms are refused
    engine = SimpleNamespace(registry=registry, backends=BackendRegistry([FakeBackend()]))
    app.extensions["tidewater"] = SimpleNamespace(db=store.engine, settings=settings, engine=engine)
    register_error_handlers(app)  # what create_app installs: the one error handler
    app.register_blueprint(bp)
    return app


@pytest.fixture
def token(store: JobStore) -> str:
    return TokenStore(store.engine).create("test")


class Admin:
    """A test client that sends the bearer token."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)
        return lambda url, **kw: call(url, headers=self.headers, **kw)


@pytest.fixture
def admin(app: Flask, token: str) -> Admin:
    return Admin(app.test_client(), token)


def env_body(name: str = "small", **config: Any) -> dict[str, Any]:
    base = {"cpu": 1, "ramGB": 1, "diskGB": 1, "maxJobs": 1, "maxJobDuration": 60}
    return {"computeEnv": {"name": name, "platform": "docker", "config": {**base, **config}}}


def submit(store: JobStore, env_id: str) -> str:
    request = JobRequest(
        owner="0x" + "ab" * 20,
        environment=env_id,
        datasets=[DatasetInput(did="did:op:" + "1" * 64, ddo={}, service_id="s", files=[])],
        algorithm=AlgorithmInput(container={"image": "busybox"}, rawcode="echo hi"),
    )
    job, _ = store.insert(request, algo_did="did:op:" + "2" * 64)
    return job.job_id
