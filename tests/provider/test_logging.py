"""Structured request logs: one JSON line per request, request ids, and no secrets logged."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from flask.testing import FlaskClient

from operator_engine.api import Engine
from provider import request_accounting
from provider.logs import BackgroundHandler, JsonFormatter
from provider.request_auth import decrypt_text, result_text, unsigned_nonce_stop_text
from tests.engine.conftest import FileServer
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    CHAIN_ID,
    DID,
    PROVIDER_KEY,
    app_fixture,
    client_fixture,
    consumer_fixture,
    engine_fixture,
    files_fixture,
    next_nonce,
    settings_fixture,
    sign,
    submit,
)


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    request_accounting.flush()  # the lines are made off the request thread, within 0.1 s
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "tidewater.access"]


def test_one_json_line_per_request_with_request_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = client.get(
        "/api/services/nonce?userAddress=0x" + "ab" * 20, headers={"X-Request-Id": "trace-42"}
    )
    assert reply.headers["X-Request-Id"] == "trace-42"
    missing = client.get("/nowhere")
    generated = missing.headers["X-Request-Id"]
    assert len(generated) == 32
    lines = _access_lines(caplog)
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == "trace-42" and first["method"] == "GET"
    assert first["path"] == "/api/services/nonce" and first["status"] == 200
    assert isinstance(first["duration_ms"], float)
    assert second["request_id"] == generated and second["status"] == 404


def test_unsafe_request_ids_are_replaced(client: FlaskClient) -> None:
    reply = client.get("/", headers={"X-Request-Id": 'x" injected\t{'})
    assert reply.headers["X-Request-Id"] != 'x" injected\t{'
    assert len(reply.headers["X-Request-Id"]) == 32


def test_no_secret_in_any_log_line(
    client: FlaskClient,
    engine: Engine,
    consumer: LocalAccount,
    files: FileServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [PROVIDER_KEY, PROVIDER_KEY[2:], "0x" + bytes(consumer.key).hex()[:20]]
    secrets.append(files.url("/data.csv"))  # the decrypted dataset URL the engine fetched
    job = submit(engine, consumer.address, files)
    # computeResult (signed, query string)
    nonce = next_nonce(client, consumer.address)
    signature = sign(consumer, result_text(consumer.address, job.job_id, 0, nonce))
    secrets.append(signature[2:40])
    reply = client.get(
        "/api/services/computeResult",
        query_string={
            "consumerAddress": consumer.address,
            "jobId": job.job_id,
            "index": "0",
            "nonce": nonce,
            "signature": signature,
        },
    )
    assert reply.status_code == 200
    reply.close()
    # stop with a JSON body (ocean.js form)
    stop_sig = sign(consumer, unsigned_nonce_stop_text(consumer.address, job.job_id))
    secrets.append(stop_sig[2:40])
    client.put(
        "/api/services/compute",
        json={"consumerAddress": consumer.address, "jobId": job.job_id, "signature": stop_sig},
    )
    # encrypt a file object with a secret URL, then a decrypt attempt carrying it
    secret_url = "https://data.example/secret-token-1234567890"
    secrets.append("secret-token-1234567890")
    cipher = client.post(
        f"/api/services/encrypt?chainId={CHAIN_ID}",
        data=json.dumps({"files": [{"type": "url", "url": secret_url}]}),
    )
    assert cipher.status_code == 201
    decrypt_sig = sign(consumer, decrypt_text("0x" + "cd" * 20, consumer.address, CHAIN_ID, "99"))
    secrets.append(decrypt_sig[2:40])
    client.post(
        "/api/services/decrypt",
        json={
            "decrypterAddress": consumer.address,
            "chainId": CHAIN_ID,
            "dataNftAddress": "0x" + "cd" * 20,
            "encryptedDocument": cipher.get_data(as_text=True),
            "flags": 2,
            "documentHash": "0x" + "00" * 32,
            "nonce": "99",
            "signature": decrypt_sig,
        },
    )
    # an unexpected failure is logged too, without the request's values
    formatter = JsonFormatter()
    logged = "\n".join(
        [r.getMessage() for r in caplog.records] + [formatter.format(r) for r in caplog.records]
    )
    assert len(_access_lines(caplog)) >= 5
    for secret in secrets:
        assert secret.lower() not in logged.lower(), secret
    for line in _access_lines(caplog):
        assert "?" not in line["path"] and "signature" not in line["path"]


def test_json_formatter_merges_access_fields() -> None:
    record = logging.LogRecord(
        "tidewater.access",
        logging.INFO,
        __file__,
        1,
        json.dumps({"request_id": "r", "status": 200}),
        None,
        None,
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "r" and entry["status"] == 200 and entry["level"] == "INFO"
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
    assert json.loads(JsonFormatter().format(plain))["message"] == "hello w"


def test_background_handler_writes_every_record_from_many_threads_and_after_a_fork(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.jsonl"
    with path.open("a", buffering=1) as stream:
        target = logging.StreamHandler(stream)
        target.setFormatter(JsonFormatter())
        handler = BackgroundHandler(target)
        logger = logging.Logger("background-test")
        logger.addHandler(handler)

        def log_some(thread: int) -> None:
            for n in range(200):
                logger.warning("thread %d line %d", thread, n)

        threads = [threading.Thread(target=log_some, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        handler.flush()
        pid = os.fork()
        if pid == 0:  # the child: a thread of its own writes its record
            try:
                logger.warning("from the child")
                handler.flush()
            finally:
                os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        logger.warning("last")
        handler.close()
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert len(messages) == 8 * 200 + 2
    for thread in range(8):  # each thread's lines, whole and in order
        mine = [m for m in messages if m.startswith(f"thread {thread} ")]
        assert mine == [f"thread {thread} line {n}" for n in range(200)]
    assert messages[-2:] == ["from the child", "last"]
