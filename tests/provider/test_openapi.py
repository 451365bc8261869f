"""GET /openapi.json: a valid OpenAPI 3 document covering exactly the app's routes."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.provider.core_support import (  # noqa: F401 (fixtures)
    app_fixture,
    client_fixture,
    engine_fixture,
    settings_fixture,
)

_IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - _IGNORED_METHODS:
            found.add((method, path))
    return found


def _documented(spec: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch"}
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in methods
    }


def test_openapi_is_valid_and_matches_the_url_map(app: Flask, client: FlaskClient) -> None:
    reply = client.get("/openapi.json")
    assert reply.status_code == 200
    spec = reply.json
    validate(spec)
    routes, documented = _routes(app), _documented(spec)
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations that are not routed"


def test_operation_ids_are_unique(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    ids = [
        op["operationId"]
        for item in spec["paths"].values()
        for method, op in item.items()
        if method in {"get", "put", "post", "delete"}
    ]
    assert len(ids) == len(set(ids))


def test_compute_path_merges_both_developers_operations(client: FlaskClient) -> None:
    compute = client.get("/openapi.json").json["paths"]["/api/services/compute"]
    assert {"get", "put", "delete"} <= compute.keys()
