"""Request accounting off the request thread (provider.request_accounting): every answer (errors,
unexpected failures and preflights included) carries the request id and CORS headers exactly
once; its access line and metrics are written by a thread of their own; a forked worker starts
with an empty queue."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from provider import request_accounting
from provider.request_accounting import ACCOUNTANT, Entry
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    app_fixture,
    client_fixture,
    engine_fixture,
    settings_fixture,
)

ONCE = ("X-Request-Id", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers")


def _assert_common_headers_once(headers: object) -> None:
    for name in ONCE:
        assert len(headers.getlist(name)) == 1, name  # type: ignore[attr-defined]


def test_every_answer_carries_the_common_headers_once(app: Flask, client: FlaskClient) -> None:
    @app.get("/_test_boom")
    def _boom() -> str:
        raise RuntimeError("unexpected")

    for reply in (
        client.get("/"),
        client.get("/api/services/nonce", query_string={"userAddress": "0x" + "ab" * 20}),
        client.get("/api/services/nonce"),  # 400
        client.get("/nowhere"),  # 404
        client.patch("/api/services/compute"),  # 405
        client.get("/_test_boom"),  # 500 from the catch-all handler
    ):
        _assert_common_headers_once(reply.headers)
        assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/_test_boom").json == {"error": "internal error"}
    preflight = client.options(
        "/api/services/compute",
        headers={"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x"},
    )
    _assert_common_headers_once(preflight.headers)
    for name in ("Allow-Methods", "Allow-Headers", "Max-Age"):
        assert len(preflight.headers.getlist(f"Access-Control-{name}")) == 1, name


def test_lines_are_written_without_being_asked(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reply = client.get("/", headers={"X-Request-Id": "by-the-thread"})
    assert reply.status_code == 200
    deadline = time.monotonic() + 30
    while True:  # the accountant's thread, not a flush, writes it (within 0.1 s when idle)
        lines = [r.getMessage() for r in caplog.records if r.name == "tidewater.access"]
        if any(json.loads(line)["request_id"] == "by-the-thread" for line in lines):
            break
        assert time.monotonic() < deadline, "no access line within 30 s"
        time.sleep(0.05)
    line = next(json.loads(x) for x in lines if "by-the-thread" in x)
    assert line == {
        "request_id": "by-the-thread",
        "method": "GET",
        "path": "/",
        "status": 200,
        "duration_ms": line["duration_ms"],
    }


def test_a_forked_child_starts_with_an_empty_queue() -> None:
    entry = Entry(time.time(), "r", "GET", "/", "/", 200, 0.001, [], None)
    with ACCOUNTANT._draining:  # the parent's thread cannot take it before the fork
        ACCOUNTANT._queue.put(entry)
        pid = os.fork()
        if pid == 0:  # the child: its own empty queue, no thread yet
            os._exit(0 if ACCOUNTANT._queue.empty() and ACCOUNTANT._thread is None else 1)
        assert not ACCOUNTANT._queue.empty()  # the parent's entry is still its own
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    request_accounting.flush()
    assert ACCOUNTANT._queue.empty()


def test_a_failing_sink_loses_one_batch_not_the_thread(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import provider.metrics

    caplog.set_level(logging.INFO)
    real = provider.metrics.count
    failures: list[int] = []

    def failing_once(batch: list[Entry]) -> None:
        if not failures:
            failures.append(len(batch))
            raise RuntimeError("sink down")
        real(batch)

    monkeypatch.setattr(provider.metrics, "count", failing_once)
    client.get("/", headers={"X-Request-Id": "first-batch"})
    deadline = time.monotonic() + 30
    while not failures:  # the thread's batch failed (logged, not raised)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.get("/", headers={"X-Request-Id": "second-batch"})
    while not any("second-batch" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the accountant thread died"
        time.sleep(0.05)
    assert any(r.getMessage() == "request accounting failed" for r in caplog.records)
