"""Bounded JSON nesting (issue 10 item 7): the scan agrees with the parser, and every route of
the real app refuses a deeply nested body with 400 before anything recursive runs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.asset_checks import parse_json_field
from provider.errors import RequestValidationError
from provider.json_limits import MAX_DEPTH, JsonTooDeep, loads, nesting_exceeds
from provider.params import parse_json
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    app_fixture,
    client_fixture,
    engine_fixture,
    settings_fixture,
)

#: 200 KB: what crashed the provider (SIGSEGV) before the bound.
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text("[]{}\"\\ab'", max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=6))
def test_scan_agrees_with_the_depth_of_real_json(value: Any, limit: int) -> None:
    text = json.dumps(value)
    assert nesting_exceeds(text, limit) is (depth(value) > limit)
    assert nesting_exceeds(text.encode(), limit) is (depth(value) > limit)


@pytest.mark.parametrize(
    "text",
    [b"[" * 100_000, b"]" * 70 + b"[" * 70, b"[" * 65 + b"}" * 65, b'"' + b"[" * 70],
    ids=["unclosed", "reversed", "mismatched", "unterminated-string"],
)
def test_unbalanced_brackets_past_the_limit_are_refused(text: bytes) -> None:
    assert nesting_exceeds(text)


def test_loads_refuses_before_parsing() -> None:
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    for body in (DEEP, DEEP_OBJECT):
        with pytest.raises(JsonTooDeep):
            loads(body)
        with pytest.raises(JsonTooDeep):
            parse_json(body)


def _concrete(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?[^>]+>", "x1", rule)


def _json_routes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its url_map: new routes are covered too."""
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, _concrete(rule.rule)))
    return routes


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_every_route_refuses_a_deep_body_with_400(
    app: Flask, client: FlaskClient, content_type: str
) -> None:
    routes = _json_routes(app)
    assert ("POST", "/api/services/compute") in routes and ("POST", "/api/compute-envs") in routes
    reading_params = {"/api/services/compute", "/api/services/initializeCompute"}
    for method, path in routes:
        for body in (DEEP, DEEP_OBJECT):
            reply = client.open(path, method=method, data=body, content_type=content_type)
            if content_type == "application/json" or path in reading_params:
                assert reply.status_code == 400, (method, path, reply.get_data()[:200])
                assert "error" in reply.get_json() or "errors" in reply.get_json()
            else:  # a route that never parses a non-JSON body answers as it would anyway
                assert reply.status_code != 500, (method, path)
    ok = client.get("/api/services/nonce?userAddress=0x" + "ab" * 20)
    assert ok.status_code == 200  # the app is alive and well afterwards


def test_a_deep_json_body_is_named(client: FlaskClient) -> None:
    reply = client.post("/api/services/compute", data=DEEP, content_type="application/json")
    assert reply.status_code == 400
    assert "nested deeper than 64 levels" in reply.get_json()["error"]


def test_a_deep_json_text_inside_a_field_is_refused() -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_json_field(DEEP.decode(), "userdata")
    assert refused.value.status_code == 400
