"""The admin blueprint inside the real provider app: auth, consumer view, OpenAPI."""

from __future__ import annotations

from pathlib import Path

from operator_engine.backends.fake import FakeBackend
from provider.admin.tokens import TokenStore
from provider.app import create_app
from tests.admin.conftest import env_body, submit
from tests.provider.core_support import FAKE_OCEAN, fake_web3, make_settings
from tidewater.engine_config import build_engine


def test_admin_routes_in_the_provider_app(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = build_engine(settings, backend=FakeBackend())
    try:
        client = create_app(settings, engine=engine, web3=fake_web3()).test_client()
        body = env_body("managed", maxJobs=2, feeToken=FAKE_OCEAN)
        assert client.post("/api/compute-envs", json=body).status_code == 403
        auth = {"Authorization": f"Bearer {TokenStore(engine.db).create('ops')}"}
        assert client.post("/api/compute-envs", json=body, headers=auth).status_code == 200
        submit(engine.store, "managed")
        envs = client.get("/api/services/computeEnvironments").get_json()
        envs = envs if isinstance(envs, list) else next(iter(envs.values()))
        managed = [e for e in envs if e["id"] == "managed"]
        assert managed and managed[0]["currentJobs"] == 1 and managed[0]["maxJobs"] == 2
        paths = client.get("/openapi.json").get_json()["paths"]
        assert "/api/compute-envs/{env_id}/primary" in paths and "/service-info" in paths
    finally:
        engine.shutdown()
        engine.db.dispose()
