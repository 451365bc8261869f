"""Admin environment settings reaching jobs: container variables, registry logins, primary."""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography.fernet import Fernet

from operator_engine.api import Engine
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.credentials import CredentialStore
from operator_engine.statuses import JobStatus
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine

KEYS = {"registry": "registry.example", "userName": "ops", "password": "pw"}


def _engine(tmp_path: Path, runner: FakeBackend, *envs: dict[str, object]) -> Engine:
    settings = settings_for(
        tmp_path,
        list(envs),
        allow_non_public_ip=True,
        credentials_key=Fernet.generate_key().decode(),
    )
    return build_engine(settings, backend=runner)


def test_environment_variables_and_registry_login_reach_the_job(
    tmp_path: Path, file_server: FileServer
) -> None:
    file_server.files["/d"] = b"x"
    seen: dict[str, str] = {}

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        seen.update(spec.environment)
        return 0, False, b""

    runner = FakeBackend(algo)
    runner.images["registry.example/algo:1"] = "sha256:" + "e" * 64
    engine = _engine(tmp_path, runner, env())
    creds = CredentialStore(engine.db, engine.config.credentials_key)
    cred_id = creds.create(
        {"credentials": {"name": "r", "provider": "container-reg", "keys": KEYS}}
    )
    config = {**env(), "environment": [{"name": "MODE", "value": "fast"}], "credentialsId": cred_id}
    del config["id"]
    engine.store.environments.put("private", config, source="api")
    files = [{"type": "url", "url": file_server.url("/d")}]
    private = engine.submit(
        request(environment="private", image="registry.example/algo", files=files)
    )
    public = engine.submit(request(environment="private", files=files))
    engine.run_until_idle()
    assert engine.get(private.job_id).status is JobStatus.FINISHED  # type: ignore[union-attr]
    assert engine.get(public.job_id).status is JobStatus.FINISHED  # type: ignore[union-attr]
    assert seen["MODE"] == "fast" and seen["OUTPUTS"] == "/data/outputs"
    login = {"username": "ops", "password": "pw", "serveraddress": "registry.example"}
    # the login goes with its own registry's image only, never to another registry
    assert sorted(runner.auths, key=str) == sorted([login, None], key=str)


def test_a_job_naming_no_environment_uses_the_primary_one(tmp_path: Path) -> None:
    engine = _engine(tmp_path, FakeBackend(), env(id="first"), env(id="second"))
    assert engine.primary_environment().id == "first"  # type: ignore[union-attr]
    assert [e.id for e in engine.environments()] == ["first", "second"]
    engine.store.environments.set_primary("second")
    assert engine.primary_environment().id == "second"  # type: ignore[union-attr]
    assert [e.id for e in engine.environments()] == ["second", "first"]
    engine.store.environments.set_primary("gone")  # a deleted primary falls back to the first
    assert engine.primary_environment().id == "first"  # type: ignore[union-attr]


def test_compute_requests_without_environment_resolve_to_the_primary(tmp_path: Path) -> None:
    from provider.compute_validation import environment_of

    engine = _engine(tmp_path, FakeBackend(), env(id="first"), env(id="second"))
    engine.store.environments.set_primary("second")
    assert environment_of(engine, None).id == "second"
    assert environment_of(engine, "first").id == "first"
