"""Environment CRUD, drain-delete and the batch view on a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from datastore.jobs import JobStore
from operator_engine.backends.fake import FakeBackend
from operator_engine.environments import EnvironmentRegistry
from operator_engine.statuses import JobStatus
from provider.admin.envs import EnvAdmin
from provider.admin.routes import bp
from provider.admin.tokens import TokenStore
from provider.errors import register_error_handlers
from tests.admin.conftest import Admin, env_body, submit
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine


def _claim(store: JobStore, registry: EnvironmentRegistry) -> Any:
    """One scheduling decision, as the engine makes it: registry read fresh, then claim."""
    envs = {i: e.env for i, e in registry.entries().items() if e.schedulable}
    return store.claim("w1", envs)


def test_create_describe_list(admin) -> None:  # type: ignore[no-untyped-def]
    resp = admin.post("/api/compute-envs", json=env_body("small", cpu=2, feeToken="0x" + "0" * 40))
    assert resp.status_code == 200 and resp.json == {"computeEnvId": "small"}
    listed = {e["id"]: e for e in admin.get("/api/compute-envs").json["computeEnvs"]}
    assert listed["small"]["status"] == "AVAILABLE" and listed["small"]["platform"] == "docker"
    assert listed["tidewater-free"]["source"] == "file"
    described = admin.get("/api/compute-envs/small").json
    assert described["computeEnv"]["config"]["cpuNumber"] == 2
    assert described["status"] == "AVAILABLE" and described["dateCreated"]
    assert admin.post("/api/compute-envs/small/primary").status_code == 204
    assert admin.get("/api/compute-envs/small").json["primary"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "computeEnv"),
        ({"computeEnv": {"platform": "docker", "config": {}}}, "computeEnv.name"),
        (env_body(maxJobs=0), "maxJobs"),
        (env_body(cpu="two"), "cpuNumber"),
        (env_body(bogus=1), "bogus"),
        ({"computeEnv": {"name": "k", "platform": "kubernetes", "config": {}}}, "kubernetes"),
        ({"computeEnv": {"name": "k", "platform": "lsf", "config": {}}}, "platform"),
        ({"computeEnv": {"name": "k"}}, "computeEnv.config"),
        ({"computeEnv": {"name": "!!!", "config": {}}}, "computeEnv.name"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(admin, body: Any, field: str) -> None:  # type: ignore[no-untyped-def]
    resp = admin.post("/api/compute-envs", json=body)
    assert resp.status_code == 400
    assert field in resp.json["message"]
    assert [e["id"] for e in admin.get("/api/compute-envs").json["computeEnvs"]] == [
        "tidewater-free"
    ]


def test_unknown_and_read_only(admin) -> None:  # type: ignore[no-untyped-def]
    assert admin.get("/api/compute-envs/nope").status_code == 404
    assert admin.put("/api/compute-envs/nope", json=env_body("nope")).status_code == 404
    assert admin.get("/api/batches/nope").status_code == 404
    resp = admin.put("/api/compute-envs/tidewater-free", json=env_body("tidewater-free"))
    assert resp.status_code == 403 and "read-only" in resp.json["message"]
    assert admin.delete("/api/compute-envs/tidewater-free").status_code == 403
    assert admin.post("/api/compute-envs", json=env_body("tidewater-free")).status_code == 409


def test_raising_max_jobs_takes_effect_at_next_decision(admin, store, registry) -> None:  # type: ignore[no-untyped-def]
    admin.post("/api/compute-envs", json=env_body("small", maxJobs=1))
    ids = [submit(store, "small") for _ in range(3)]
    assert _claim(store, registry).job_id == ids[0]
    assert _claim(store, registry) is None  # maxJobs 1: full
    assert admin.get("/api/batches/small").json["pending"] == 1
    assert admin.get("/api/batches/small").json["submitted"] == 2
    assert (
        admin.put("/api/compute-envs/small", json=env_body("small", maxJobs=2)).status_code == 200
    )
    assert _claim(store, registry).job_id == ids[1]
    assert _claim(store, registry) is None


def test_delete_refused_then_drained(admin, store, registry) -> None:  # type: ignore[no-untyped-def]
    admin.post("/api/compute-envs", json=env_body("small"))
    job_id = submit(store, "small")
    resp = admin.delete("/api/compute-envs/small")
    assert resp.status_code == 400 and "drain=true" in resp.json["message"]
    assert admin.delete("/api/compute-envs/small?drain=true").status_code == 204
    assert admin.get("/api/compute-envs/small").json["status"] == "DELETING"
    assert not registry.entries()["small"].accepts_jobs
    assert registry.entries()["small"].schedulable
    assert EnvAdmin(store, registry).finish_drains() == []  # its job is still live
    store.transition(job_id, JobStatus.WARMING_UP, JobStatus.STOPPED, detail="test")
    assert EnvAdmin(store, registry).finish_drains() == ["small"]
    assert admin.get("/api/compute-envs/small").status_code == 404


def test_batches_views_and_delete(admin, store) -> None:  # type: ignore[no-untyped-def]
    admin.post("/api/compute-envs", json=env_body("small", cpu=2, ramGB=2))
    job_id = submit(store, "small")
    batches = {b["batch_id"]: b for b in admin.get("/api/batches").json}
    assert batches["small"]["batch_tool"]["tool_id"] == "docker"
    assert batches["small"]["n_jobs"] == 1
    assert batches["small"]["hardware"] == {
        "cpu": 2,
        "memory": 2048,
        "filesystem_list": [{"filesystem_id": "small-data", "filesystem_name": "/data (1.0 GB)"}],
    }
    jobs = admin.get("/api/batches/small/jobs").json
    assert [j["job_id"] for j in jobs] == [job_id] and jobs[0]["status"] == "submitted"
    assert jobs[0]["job_log_id"] == job_id
    (one,) = admin.get(f"/api/batches/small/jobs/{job_id}").json
    assert one["create_time"].endswith("Z") and one["args"]["algorithm"].startswith("did:op:")
    assert one["log_id"] == job_id and one["hardware"]["filesystems"] == ["small-data"]
    assert "request" not in one["args"]  # it held decrypted file URLs
    assert admin.get("/api/batches/small/jobs/other").status_code == 404
    assert admin.delete("/api/batches/small").status_code == 204
    assert store.row(job_id).stopreq == 1


def test_last_used_is_recorded_at_submit_and_survives_job_deletion(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [env()])
    engine = build_engine(settings, backend=FakeBackend())
    app = Flask("admin-last-used")
    app.extensions["tidewater"] = SimpleNamespace(db=engine.db, settings=settings, engine=engine)
    register_error_handlers(app)  # what create_app installs: the one error handler
    app.register_blueprint(bp)
    api = Admin(app.test_client(), TokenStore(engine.db).create("t"))
    assert api.post("/api/compute-envs", json=env_body("small")).status_code == 200
    assert api.get("/api/compute-envs/small").json["lastUsed"] is None

    job = engine.submit(request(environment="small"))
    used = api.get("/api/compute-envs/small").json["lastUsed"]
    assert used is not None
    engine.delete(job.job_id)
    assert engine.get(job.job_id) is None
    assert api.get("/api/compute-envs/small").json["lastUsed"] == used


def test_fee_token_without_code_is_400(admin, registry: EnvironmentRegistry) -> None:  # type: ignore[no-untyped-def]
    from operator_engine.environments import FeeTokenRule

    ocean = "0x" + "0c" * 20
    registry.fee_tokens = FeeTokenRule(
        ocean, lambda a: b"\x60" if a.lower() == ocean else b"", "chain 8996"
    )
    bad = admin.post("/api/compute-envs", json=env_body("paid", feeToken="0x" + "de" * 20))
    assert bad.status_code == 400 and "has no contract code on chain 8996" in bad.json["message"]
    assert admin.get("/api/compute-envs/paid").status_code == 404
    assert admin.post("/api/compute-envs", json=env_body("paid")).status_code == 200
    listed = {e["id"]: e for e in admin.get("/api/compute-envs").json["computeEnvs"]}
    assert listed["paid"]["status"] == "AVAILABLE"
    config = admin.get("/api/compute-envs/tidewater-free").json["computeEnv"]["config"]
    assert config["feeToken"].lower() == ocean
    changed = admin.put("/api/compute-envs/paid", json=env_body("paid", feeToken="0x" + "de" * 20))
    assert changed.status_code == 400


def test_fee_token_check_with_the_chain_down_is_503(admin, registry: EnvironmentRegistry) -> None:  # type: ignore[no-untyped-def]
    from operator_engine.environments import FeeTokenRule

    def chain_down(_address: str) -> bytes:
        raise ConnectionError("refused")

    registry.fee_tokens = FeeTokenRule("0x" + "0c" * 20, chain_down, "chain 8996")
    reply = admin.post("/api/compute-envs", json=env_body("later"))
    assert reply.status_code == 503 and "cannot check feeToken" in reply.json["message"]
    assert [row.id for row in registry.store.environments.rows()] == []  # nothing stored
    listed = admin.get("/api/compute-envs")  # the built-in env's token cannot be checked either
    assert listed.status_code == 503 and "chain 8996" in listed.json["message"]
