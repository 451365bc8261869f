"""Tokens, auth on every route, the batch-state mapping, service info."""

from __future__ import annotations

import pytest
from flask import Flask

from datastore.jobs import JobStore
from operator_engine.statuses import JobStatus
from provider.admin.batches import batch_state
from provider.admin.routes import PUBLIC, ROUTES
from provider.admin.tokens import TokenError, TokenStore
from tests.admin.conftest import env_body


def test_token_is_stored_hashed_and_revocable(store: JobStore) -> None:
    tokens = TokenStore(store.engine)
    token = tokens.create("ops")
    assert tokens.is_valid(token)
    assert not tokens.is_valid(token + "x")
    with store.engine.begin() as conn:
        raw = conn.exec_driver_sql("SELECT token_hash FROM admin_tokens").scalar_one()
    assert token not in raw and len(raw) == 64
    with pytest.raises(TokenError):
        tokens.create("ops")
    assert [t.name for t in tokens.list()] == ["ops"]
    assert tokens.revoke("ops")
    assert not tokens.is_valid(token)
    assert not tokens.revoke("ops")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (JobStatus.WARMING_UP, "submitted"),
        (JobStatus.STARTED, "pending"),
        (JobStatus.CONFIGURING, "runnable"),
        (JobStatus.PROVISIONED, "starting"),
        (JobStatus.RUNNING, "running"),
        (JobStatus.FILTERING, "running"),
        (JobStatus.PUBLISHING, "running"),
        (JobStatus.SETTLING, "running"),
        (JobStatus.FINISHED, "succeeded"),
        (JobStatus.STOPPED, "failed"),
        (JobStatus.RUN_FAILED, "failed"),
        (JobStatus.UPLOAD_FAILED, "failed"),
    ],
)
def test_batch_state_mapping(status: JobStatus, state: str) -> None:
    assert batch_state(status) == state


def _url(rule: str) -> str:
    return (
        rule.replace("<env_id>", "small")
        .replace("<job_id>", "nojob")
        .replace("<credentials_id>", "nocred")
        .replace("<token_id>", "notoken")
    )


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "revoked"])
@pytest.mark.parametrize(("method", "rule"), [r for r in ROUTES if r[1] not in PUBLIC])
def test_every_route_refuses_bad_tokens(
    app: Flask, store: JobStore, token: str, method: str, rule: str, header: str | None
) -> None:
    client = app.test_client()
    good = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/compute-envs", json=env_body(), headers=good).status_code == 200
    before = client.get("/api/compute-envs/small", headers=good).get_json()
    if header == "revoked":
        revoked = TokenStore(store.engine).create("old")
        TokenStore(store.engine).revoke("old")
        header = f"Bearer {revoked}"
    headers = {} if header is None else {"Authorization": header}
    resp = client.open(_url(rule), method=method, json=env_body("other"), headers=headers)
    assert resp.status_code == 403
    assert "message" in resp.get_json()
    assert client.get("/api/compute-envs/small", headers=good).get_json() == before
    assert [e["id"] for e in client.get("/api/compute-envs", headers=good).json["computeEnvs"]] == [
        "tidewater-free",
        "small",
    ]


def test_every_route_is_registered(app: Flask) -> None:
    rules = {
        (m, r.rule)
        for r in app.url_map.iter_rules()
        for m in r.methods or ()
        if m in {"GET", "POST", "PUT", "DELETE"} and r.endpoint.startswith("admin.")
    }
    assert rules == set(ROUTES)


def test_service_info_is_public(app: Flask) -> None:
    resp = app.test_client().get("/service-info")
    assert resp.status_code == 200
    info = resp.get_json()["serviceInfo"]
    assert info["authTypes"] == ["bearer"]
    assert info["version"] and info["apiVersion"] and info["commitId"]
    assert info["contentMaxFileSize"] == 16 * 1024 * 1024


def test_openapi_documents_every_admin_route(app: Flask) -> None:
    from openapi_spec_validator import validate

    from provider.openapi import build_spec

    spec = build_spec(app)
    validate(spec)
    for method, rule in ROUTES:
        path = rule.replace("<", "{").replace(">", "}")
        assert method.lower() in spec["paths"][path], (method, path)
