"""The admin API replayed against its documents (``shared/seeds`` 000, 001 and 003).

Each request example of the compute-environment (000), batch (001), service-info and token
(003) documents is sent to the real admin blueprint on a real SQLite store; each answer must
carry the document's fields with the document's types (tidewater's extensions may add more),
and every answer of this module is validated against the project's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from datastore.jobs import JobStore
from operator_engine.statuses import JobStatus
from provider.openapi import build_spec
from tests.admin.conftest import submit

# -- the documents' examples (verbatim where tidewater can serve them) ----------------------

DOC_LIST = {
    "message": None,
    "computeEnvs": [
        {
            "id": "5DDSatOUG2zd1fyqOBugBv",
            "name": "AWS Default Environment",
            "platform": "aws-batch",
            "status": "AVAILABLE",
            "message": None,
            "lastUsed": None,
            "primary": True,
        }
    ],
}
DOC_DESCRIBE = {
    "computeEnv": {
        "id": "5SCgzo3x3U2xnIQhO1oJ9o",
        "name": "AWS Default Environment",
        "description": "Principal AWS deployment environment",
        "platform": "aws-batch",
        "config": {},
    },
    "dateCreated": "2020-11-11T09:37:40Z",
    "lastUpdated": "2020-11-11T09:38:08Z",
    "lastUsed": None,
    "deleted": None,
    "status": "AVAILABLE",
    "message": None,
    "primary": True,
    "credentialsId": "68gQz4mHN6wMBbAnPeliG3",
}
DOC_CREATE = {
    "computeEnv": {
        "name": "AWS Default Environment",
        "description": "Principal AWS deployment environment",
        "platform": "aws-batch",
        "credentialsId": "68gQz4mHN6wMBbAnPeliG3",
        "config": {
            "region": "eu-west-1",
            "workDir": "s3://random-tower-bucket",
            "forge": {"type": "EC2", "minCpus": 1, "maxCpus": 1},
        },
        "primary": True,
    }
}
DOC_BAD_REQUEST = {
    "message": "Oops... Unable to process request - Error ID: 54apnFENQxbvCr23JaIjLb"
}
DOC_BATCHES = [
    {
        "batch_id": "string",
        "batch_tool": {"tool_id": "string", "tool_name": "string", "tool_description": "string"},
        "n_jobs": 123,
        "hardware": {
            "filesystem_list": [{"filesystem_id": "string", "filesystem_name": "string"}],
            "cpu": 123,
            "memory": 123,
        },
    }
]
DOC_BATCH_STATUS = {
    "submitted": 123,
    "pending": 123,
    "runnable": 123,
    "starting": 123,
    "running": 123,
    "succeeded": 123,
    "failed": 123,
}
DOC_JOBS = [
    {
        "job_id": "string",
        "job_tool": {"tool_id": "string", "tool_name": "string", "tool_description": "string"},
        "job_log_id": "string",
        "job_argument_list": [{"argument_key": "string", "argument_value": "string"}],
    }
]
DOC_JOB = [
    {
        "job_id": "string",
        "log_id": "string",
        "hardware": {"filesystems": ["id"], "memory": 123, "cpu": 123},
        "args": None,  # {"name": "value"}: a map of strings, checked below
        "status": "string",
        "reason": "string",
        "create_time": "string",
        "start_time": "string",
        "stop_time": "string",
    }
]
DOC_SERVICE_INFO = {
    "serviceInfo": {
        "version": "string",
        "apiVersion": "string",
        "commitId": "string",
        "authTypes": ["string"],
        "contentMaxFileSize": 0,
    }
}
DOC_TOKENS = {
    "tokens": [{"id": 0, "name": "string", "lastUsed": "string", "dateCreated": "string"}]
}


def assert_shape(example: Any, actual: Any, where: str = "$") -> None:
    """``actual`` has every field of ``example`` with a compatible type (a ``None`` in the
    example stands for any value; numbers match numbers; ids may be strings)."""
    if example is None:
        return
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in example.items():
            assert key in actual, f"{where}.{key}: missing"
            assert_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        for i, item in enumerate(actual):
            assert_shape(example[0], item, f"{where}[{i}]")
    elif isinstance(example, bool):
        assert isinstance(actual, bool) or actual is None, f"{where}: {actual!r} not a boolean"
    elif isinstance(example, int | float):
        assert isinstance(actual, int | float) or (where.endswith(".id") and actual), where
    else:
        assert isinstance(actual, str) or actual is None, f"{where}: {actual!r} not a string"


# -- fixtures ----------------------------------------------------------------------------------


class Checked:
    """A test client whose every answer is validated against the OpenAPI document."""

    def __init__(self, client: FlaskClient, spec: OpenAPI, token: str | None) -> None:
        self.client, self.spec = client, spec
        self.headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.seen = 0

    def call(self, method: str, url: str, **kw: Any) -> Any:
        resp = self.client.open(url, method=method, headers=self.headers, **kw)
        sent = Request(EnvironBuilder(url, method=method, headers=self.headers, **kw).get_environ())
        self.spec.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(resp))
        self.seen += 1
        return resp


@pytest.fixture
def api(app: Flask, token: str) -> Iterator[Checked]:
    spec = OpenAPI.from_dict(build_spec(app))
    checked = Checked(app.test_client(), spec, token)
    yield checked
    assert checked.seen > 0


@pytest.fixture
def keyed_app(app: Flask) -> Flask:
    svc = app.extensions["tidewater"]
    svc.settings = svc.settings.with_(credentials_key=Fernet.generate_key().decode())
    return app


def _docker_env(name: str, **spec: Any) -> dict[str, Any]:
    config = {"cpu": 1, "ramGB": 1, "diskGB": 1, "maxJobs": 2, "maxJobDuration": 60}
    return {"computeEnv": {"name": name, "platform": "docker", "config": config, **spec}}


# -- 000: compute environments -----------------------------------------------------------------


def test_list_and_describe_carry_the_documents_fields(api: Checked) -> None:
    listed = api.call("GET", "/api/compute-envs").get_json()
    assert_shape(DOC_LIST, listed)
    assert listed["computeEnvs"][0]["primary"] is True  # no flag yet: the first one is primary
    described = api.call("GET", "/api/compute-envs/tidewater-free").get_json()
    assert_shape(DOC_DESCRIBE, described)
    assert described["deleted"] is False and described["credentialsId"] is None


def test_the_documents_create_payload_is_answered_with_reasons(
    api: Checked, keyed_app: Flask
) -> None:
    resp = api.call("POST", "/api/compute-envs", json=DOC_CREATE)
    assert resp.status_code == 400
    assert_shape(DOC_BAD_REQUEST, resp.get_json())
    assert "platform" in resp.get_json()["message"]

    docker = {"computeEnv": {**DOC_CREATE["computeEnv"], "platform": "docker"}}
    resp = api.call("POST", "/api/compute-envs", json=docker)
    assert resp.status_code == 400 and "config.region" in resp.get_json()["message"]
    config = dict(DOC_CREATE["computeEnv"]["config"])  # type: ignore[index]
    del config["region"], config["forge"]
    docker["computeEnv"]["config"] = config
    resp = api.call("POST", "/api/compute-envs", json=docker)
    message = resp.get_json()["message"]
    assert resp.status_code == 400 and "workDir" in message and "not supported" in message

    del config["workDir"]
    config.update(cpu=1, ramGB=1, diskGB=1, maxJobs=1, maxJobDuration=60)
    docker["computeEnv"]["name"] = "aws-default"
    resp = api.call("POST", "/api/compute-envs", json=docker)
    assert resp.status_code == 400 and "credentialsId" in resp.get_json()["message"]

    cred = {"credentials": {"name": "hub", "provider": "container-reg", "keys": _REG_KEYS}}
    cred_id = api.call("POST", "/api/credentials", json=cred).get_json()["credentialsId"]
    docker["computeEnv"]["credentialsId"] = cred_id
    resp = api.call("POST", "/api/compute-envs", json=docker)
    assert resp.status_code == 200 and resp.get_json() == {"computeEnvId": "aws-default"}
    described = api.call("GET", "/api/compute-envs/aws-default").get_json()
    assert_shape(DOC_DESCRIBE, described)
    assert described["primary"] is True and described["credentialsId"] == cred_id
    assert described["dateCreated"].endswith("Z") and described["status"] == "AVAILABLE"
    listed = api.call("GET", "/api/compute-envs").get_json()["computeEnvs"]
    assert [e["id"] for e in listed] == ["aws-default", "tidewater-free"]  # primary first
    assert [e["primary"] for e in listed] == [True, False]


def test_duplicate_names_conflict_and_validate_answers_as_documented(api: Checked) -> None:
    assert api.call("POST", "/api/compute-envs", json=_docker_env("small")).status_code == 200
    resp = api.call("POST", "/api/compute-envs", json=_docker_env("small"))
    assert resp.status_code == 409 and "small" in resp.get_json()["message"]
    assert api.call("GET", "/api/compute-envs/validate?name=fresh").status_code == 204
    assert api.call("GET", "/api/compute-envs/validate?name=small").status_code == 409
    assert api.call("GET", "/api/compute-envs/validate?name=%21%21%21").status_code == 400
    assert api.call("GET", "/api/compute-envs/validate?name=small%20").status_code == 409
    assert api.call("GET", "/api/compute-envs/validate").status_code == 400


def test_primary_and_delete(api: Checked, store: JobStore) -> None:
    api.call("POST", "/api/compute-envs", json=_docker_env("small"))
    assert api.call("POST", "/api/compute-envs/small/primary").status_code == 204
    assert api.call("GET", "/api/compute-envs/small").get_json()["primary"] is True
    free = api.call("GET", "/api/compute-envs/tidewater-free").get_json()
    assert free["primary"] is False
    # a file environment can be primary too
    assert api.call("POST", "/api/compute-envs/tidewater-free/primary").status_code == 204
    assert api.call("GET", "/api/compute-envs").get_json()["computeEnvs"][0]["id"] == (
        "tidewater-free"
    )
    assert api.call("DELETE", "/api/compute-envs/small").status_code == 204
    assert api.call("GET", "/api/compute-envs/small").status_code == 404
    resp = api.call("POST", "/api/compute-envs/nope/primary")
    assert resp.status_code == 404


def test_environment_variables_are_applied_and_reserved_ones_refused(api: Checked) -> None:
    body = _docker_env("vars")
    body["computeEnv"]["config"]["environment"] = [{"name": "MODE", "value": "fast"}]
    assert api.call("POST", "/api/compute-envs", json=body).status_code == 200
    described = api.call("GET", "/api/compute-envs/vars").get_json()
    assert described["computeEnv"]["config"]["environment"] == [{"name": "MODE", "value": "fast"}]
    body = _docker_env("bad")
    body["computeEnv"]["config"]["environment"] = [{"name": "OUTPUTS", "value": "/etc"}]
    resp = api.call("POST", "/api/compute-envs", json=body)
    assert resp.status_code == 400 and "OUTPUTS" in resp.get_json()["message"]


# -- credentials -------------------------------------------------------------------------------

_REG_KEYS = {"registry": "registry.example", "userName": "ops", "password": "s3cret-pass"}


def test_credentials_are_encrypted_at_rest_and_never_returned(
    api: Checked, keyed_app: Flask, store: JobStore
) -> None:
    body = {"credentials": {"name": "reg", "provider": "container-reg", "keys": _REG_KEYS}}
    resp = api.call("POST", "/api/credentials", json=body)
    assert resp.status_code == 200
    cred_id = resp.get_json()["credentialsId"]
    assert api.call("POST", "/api/credentials", json=body).status_code == 409
    listed = api.call("GET", "/api/credentials").get_json()["credentials"]
    assert [c["id"] for c in listed] == [cred_id]
    assert listed[0]["keys"]["password"] == "********" and listed[0]["keys"]["userName"] == "ops"
    with store.engine.begin() as conn:
        raw = conn.exec_driver_sql("SELECT keys_encrypted FROM admin_credentials").scalar_one()
    assert b"s3cret-pass" not in raw and b"ops" not in raw

    env = _docker_env("private", credentialsId=cred_id)
    assert api.call("POST", "/api/compute-envs", json=env).status_code == 200
    assert api.call("DELETE", f"/api/credentials/{cred_id}").status_code == 204
    assert api.call("DELETE", f"/api/credentials/{cred_id}").status_code == 404
    described = api.call("GET", "/api/compute-envs/private").get_json()
    assert described["status"] == "INVALID" and cred_id in described["message"]


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({}, "credentials"),
        ({"name": "x", "provider": "s3", "keys": {}}, "provider"),
        (
            {"name": "x", "provider": "container-reg", "keys": {"registry": "r", "password": "p"}},
            "userName",
        ),
        ({"name": "x", "provider": "k8s", "keys": {"context": "c", "token": "t"}}, "token"),
        ({"name": "", "provider": "k8s", "keys": {"context": "c"}}, "name"),
    ],
)
def test_bad_credentials_are_400_naming_the_field(
    api: Checked, keyed_app: Flask, credentials: dict[str, Any], field: str
) -> None:
    resp = api.call("POST", "/api/credentials", json={"credentials": credentials})
    assert resp.status_code == 400 and field in resp.get_json()["message"]


def test_credentials_need_the_key_setting(api: Checked) -> None:
    body = {"credentials": {"name": "reg", "provider": "container-reg", "keys": _REG_KEYS}}
    resp = api.call("POST", "/api/credentials", json=body)
    assert resp.status_code == 503 and "TIDEWATER_CREDENTIALS_KEY" in resp.get_json()["message"]


# -- 003: service info and tokens --------------------------------------------------------------


def test_service_info_is_public(app: Flask) -> None:
    spec = OpenAPI.from_dict(build_spec(app))
    anonymous = Checked(app.test_client(), spec, None)
    resp = anonymous.call("GET", "/service-info")
    assert resp.status_code == 200
    assert_shape(DOC_SERVICE_INFO, resp.get_json())
    assert anonymous.call("GET", "/api/compute-envs").status_code == 403


def test_tokens_over_http(api: Checked, app: Flask) -> None:
    listed = api.call("GET", "/tokens").get_json()
    assert_shape(DOC_TOKENS, listed)
    assert [t["name"] for t in listed["tokens"]] == ["test"]
    created = api.call("POST", "/tokens", json={"name": "ci"})
    assert created.status_code == 200
    new = created.get_json()
    assert new["accessKey"].startswith("tw_") and new["token"]["name"] == "ci"
    assert api.call("POST", "/tokens", json={"name": "ci"}).status_code == 409
    assert api.call("POST", "/tokens", json={}).status_code == 400
    other = Checked(app.test_client(), api.spec, new["accessKey"])
    assert other.call("GET", "/tokens").status_code == 200
    assert api.call("DELETE", f"/tokens/{new['token']['id']}").status_code == 204
    assert other.call("GET", "/tokens").status_code == 403
    assert api.call("DELETE", f"/tokens/{new['token']['id']}").status_code == 404


# -- 001: batches ------------------------------------------------------------------------------


def test_batches_answer_in_the_documents_shapes(api: Checked, store: JobStore) -> None:
    api.call("POST", "/api/compute-envs", json=_docker_env("small"))
    job_id = submit(store, "small")
    batches = api.call("GET", "/api/batches").get_json()
    assert_shape(DOC_BATCHES, batches)
    assert {b["batch_id"] for b in batches} == {"tidewater-free", "small"}
    counts = api.call("GET", "/api/batches/small").get_json()
    assert counts == {**dict.fromkeys(DOC_BATCH_STATUS, 0), "submitted": 1}
    jobs = api.call("GET", "/api/batches/small/jobs").get_json()
    assert_shape(DOC_JOBS, jobs)
    assert jobs[0]["job_log_id"] == job_id
    one = api.call("GET", f"/api/batches/small/jobs/{job_id}").get_json()
    assert_shape(DOC_JOB, one)
    assert len(one) == 1 and one[0]["log_id"] == job_id
    assert one[0]["args"] and all(isinstance(v, str) for v in one[0]["args"].values())
    store.transition(job_id, JobStatus.WARMING_UP, JobStatus.STARTED, detail="test")
    store.transition(job_id, JobStatus.STARTED, JobStatus.CONFIGURING, detail="test")
    store.transition(job_id, JobStatus.CONFIGURING, JobStatus.PROVISIONED, detail="test")
    assert api.call("GET", "/api/batches/small").get_json()["starting"] == 1
    assert api.call("DELETE", "/api/batches/small").status_code == 204
