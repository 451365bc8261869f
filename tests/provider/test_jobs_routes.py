"""Status, stop, delete and computeResult on the real engine (FakeBackend, temporary SQLite).

Both clients' signing forms are exercised: ocean.py (query string, v 0/1, nonce signed) and
ocean.js 3.4 (JSON body, v 27/28; stop signs consumerAddress + jobId, delete signs stored + 1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from eth_account.signers.local import LocalAccount
from flask import Flask, jsonify
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from operator_engine.api import Engine
from operator_engine.models import Job, JobResult
from operator_engine.statuses import JobStatus
from provider.request_auth import job_text, unsigned_nonce_stop_text
from tests.engine.conftest import FileServer
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    BIG,
    DID,
    app_fixture,
    client_fixture,
    consumer_fixture,
    engine_fixture,
    files_fixture,
    next_nonce,
    other_fixture,
    result_query,
    settings_fixture,
    sign,
    sign_v01,
    stored_nonce,
    submit,
)

COMPUTE = "/api/services/compute"
RESULT = "/api/services/computeResult"


def _py_query(
    signer: LocalAccount, job_id: str, nonce: str, *, address: str = ""
) -> dict[str, str]:
    """ocean.py's stop/delete query string for ``address`` (default: the signer's)."""
    address = address or signer.address
    return {
        "consumerAddress": address,
        "jobId": job_id,
        "documentId": DID,
        "nonce": nonce,
        "signature": sign_v01(signer, job_text(address, job_id, DID, nonce)),
    }


def _result0_query(
    signer: LocalAccount, job_id: str, nonce: str, *, address: str = ""
) -> dict[str, str]:
    return result_query(signer, job_id, 0, nonce, address=address)


#: The ocean.py request acting on one job: verb -> (HTTP method, path, its query for result 0).
ROUTES: dict[str, tuple[str, str, Callable[..., dict[str, str]]]] = {
    "stop": ("PUT", COMPUTE, _py_query),
    "delete": ("DELETE", COMPUTE, _py_query),
    "result": ("GET", RESULT, _result0_query),
}


def _send(
    client: FlaskClient, verb: str, signer: LocalAccount, job_id: str, nonce: str, **kw: str
) -> TestResponse:
    """``verb`` on ``job_id`` signed by ``signer`` (``address=`` claims another consumer)."""
    method, path, query_for = ROUTES[verb]
    return client.open(path, method=method, query_string=query_for(signer, job_id, nonce, **kw))


# -- status ------------------------------------------------------------------------------------


def test_status_lists_only_the_owners_jobs(
    client: FlaskClient,
    engine: Engine,
    consumer: LocalAccount,
    other: LocalAccount,
    files: FileServer,
) -> None:
    mine = submit(engine, consumer.address, files)
    theirs = submit(engine, other.address, files)
    reply = client.get(COMPUTE, query_string={"consumerAddress": consumer.address})
    assert reply.status_code == 200
    assert [j["jobId"] for j in reply.json] == [mine.job_id]
    job = reply.json[0]
    assert job["status"] == 70 and job["statusText"] == "Job finished"
    assert job["dateFinished"] is not None and job["inputDID"] == [DID]
    assert [r["type"] for r in job["results"]][:2] == ["output", "output"]
    one = client.get(
        COMPUTE, query_string={"consumerAddress": consumer.address, "jobId": theirs.job_id}
    )
    assert one.json == []  # someone else's job is invisible
    by_doc = client.get(
        COMPUTE, query_string={"consumerAddress": consumer.address, "documentId": DID}
    )
    assert [j["jobId"] for j in by_doc.json] == [mine.job_id]


def test_status_body_is_jsonify_byte_for_byte_and_follows_each_change(
    app: Flask, client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    """The status answer is built from each job's JSON encoded once (the store hands out one
    Job per unchanged row): the same bytes as jsonify of the Ocean objects, and a job that
    changes gets a new answer."""
    submit(engine, consumer.address, files)
    queued = submit(engine, consumer.address, files, run=False)
    query = {"consumerAddress": consumer.address}

    def expected() -> bytes:
        with app.app_context():
            return jsonify([j.to_ocean() for j in engine.find(consumer.address)]).get_data()

    first = client.get(COMPUTE, query_string=query)
    assert first.status_code == 200 and first.mimetype == "application/json"
    assert first.get_data() == expected()
    assert [j["status"] for j in first.json] == [70, 1]
    again = client.get(COMPUTE, query_string=query)
    assert again.get_data() == first.get_data()
    engine.run_until_idle()
    after = client.get(COMPUTE, query_string=query)
    assert after.get_data() == expected() != first.get_data()
    assert [j["status"] for j in after.json] == [70, 70]
    one = client.get(COMPUTE, query_string={**query, "jobId": queued.job_id})
    assert one.json == [after.json[1]]


def test_a_jobs_encoded_json_is_what_the_apps_jsonify_writes(app: Flask) -> None:
    job = Job(
        job_id="j1",
        owner="0xab",
        environment="free",
        status=JobStatus.FINISHED,
        date_created=datetime(2026, 1, 2, tzinfo=UTC),
        input_dids=["did:op:1", "did:op:2"],
        algo_did="raw",
        date_finished=datetime(2026, 1, 3, tzinfo=UTC),
        exit_code=3,
        oom_killed=True,
        results=[JobResult("résumé ✓.txt", 5, "output", 0, "ab")],
    )
    with app.app_context():
        assert jsonify([job.to_ocean()]).get_data() == f"[{job.ocean_json}]\n".encode()


# -- stop --------------------------------------------------------------------------------------


def test_stop_ocean_py_query_then_replay_rejected(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files, run=False)
    query = _py_query(consumer, job.job_id, next_nonce(client, consumer.address))
    reply = client.put(COMPUTE, query_string=query)
    assert reply.status_code == 200, reply.json
    assert reply.json[0]["status"] == 7 and reply.json[0]["statusText"] == "Job stopped"
    again = client.put(COMPUTE, query_string=query)
    assert again.status_code == 400
    assert "expected nonce" in again.json["errors"]["signature"][0]


def test_stop_ocean_js_json_signs_address_and_job_only(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files, run=False)
    nonce = next_nonce(client, consumer.address)
    body = {
        "consumerAddress": consumer.address,
        "jobId": job.job_id,
        "signature": sign(consumer, unsigned_nonce_stop_text(consumer.address, job.job_id)),
        "nonce": nonce,
    }
    reply = client.put(COMPUTE, json=body)
    assert reply.status_code == 200, reply.json
    assert engine.get(job.job_id).status is JobStatus.STOPPED  # type: ignore[union-attr]
    assert stored_nonce(client, consumer.address) == nonce
    assert client.put(COMPUTE, json=body).status_code == 400  # verbatim replay


# -- delete ------------------------------------------------------------------------------------


def test_delete_ocean_py_answers_status_8_and_removes(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    query = _py_query(consumer, job.job_id, next_nonce(client, consumer.address))
    reply = client.delete(COMPUTE, query_string=query)
    assert reply.status_code == 200, reply.json
    assert reply.json[0]["jobId"] == job.job_id
    assert reply.json[0]["status"] == 8
    assert reply.json[0]["statusText"] == "Job deleted successfully"
    assert engine.get(job.job_id) is None
    assert client.delete(COMPUTE, query_string=query).status_code == 400  # replay


def test_delete_ocean_js_signs_stored_plus_one_without_nonce_field(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    client.get("/")  # ocean.js reads the root first; harmless here
    stored = stored_nonce(client, consumer.address)
    body = {
        "consumerAddress": consumer.address,
        "jobId": job.job_id,
        "documentId": DID,
        "signature": sign(
            consumer, job_text(consumer.address, job.job_id, DID, str(int(stored) + 1))
        ),
    }
    reply = client.delete(COMPUTE, json=body)
    assert reply.status_code == 200, reply.json
    assert reply.json[0]["status"] == 8
    assert stored_nonce(client, consumer.address) == str(int(stored) + 1)
    replay = client.delete(COMPUTE, json=body)
    assert replay.status_code == 400 and "signature" in replay.json["errors"]


# -- computeResult -----------------------------------------------------------------------------


def test_compute_result_streams_the_file(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    index = next(r.index for r in job.results if r.filename == "summary.csv")
    query = result_query(consumer, job.job_id, index, next_nonce(client, consumer.address))
    reply = client.get(RESULT, query_string=query, buffered=False)
    assert reply.status_code == 200
    assert reply.headers["Content-Disposition"] == "attachment;filename=summary.csv"
    assert reply.headers["Content-Length"] == str(len(BIG))
    assert reply.is_streamed
    chunks = list(reply.response)
    assert len(chunks) > 1 and b"".join(chunks) == BIG
    reply.close()
    again = client.get(RESULT, query_string=query)
    assert again.status_code == 400 and "expected nonce" in again.json["errors"]["signature"][0]


@pytest.mark.parametrize("past_end", [0, 1, 1000])
def test_compute_result_index_out_of_range(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer, past_end: int
) -> None:
    job = submit(engine, consumer.address, files)
    index = len(job.results) + past_end
    query = result_query(consumer, job.job_id, index, next_nonce(client, consumer.address))
    reply = client.get(RESULT, query_string=query)
    assert reply.status_code == 404 and reply.json == {"error": "Result not found"}
    assert "Content-Disposition" not in reply.headers


def test_compute_result_last_index_is_served(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    last = job.results[-1]
    query = result_query(consumer, job.job_id, last.index, next_nonce(client, consumer.address))
    reply = client.get(RESULT, query_string=query)
    assert reply.status_code == 200 and len(reply.data) == last.filesize


def test_compute_result_unknown_job(client: FlaskClient, consumer: LocalAccount) -> None:
    reply = client.get(RESULT, query_string=result_query(consumer, "nope", 0, "2"))
    assert reply.status_code == 404


def test_compute_result_deleted_file_is_404(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    path, _ = engine.open_result(job.job_id, 0)
    path.unlink()
    query = result_query(consumer, job.job_id, 0, next_nonce(client, consumer.address))
    assert client.get(RESULT, query_string=query).status_code == 404


# -- someone else's job, someone else's key -----------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "status"),
    [
        ("stop", JobStatus.WARMING_UP),
        ("delete", JobStatus.FINISHED),
        ("result", JobStatus.FINISHED),
    ],
    ids=["stop", "delete", "result"],
)
def test_someone_elses_job_is_404_and_left_alone(
    client: FlaskClient,
    engine: Engine,
    consumer: LocalAccount,
    other: LocalAccount,
    files: FileServer,
    verb: str,
    status: JobStatus,
) -> None:
    job = submit(engine, other.address, files, run=status is JobStatus.FINISHED)
    reply = _send(client, verb, consumer, job.job_id, "2")
    assert reply.status_code == 404 and reply.json == {"error": "Job not found"}
    assert b"row,value" not in reply.data and "Content-Disposition" not in reply.headers
    assert engine.get(job.job_id).status is status  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("verb", "status"),
    [("stop", JobStatus.WARMING_UP), ("result", JobStatus.FINISHED)],
    ids=["stop", "result"],
)
def test_signed_by_another_key_is_400_and_changes_nothing(
    client: FlaskClient,
    engine: Engine,
    consumer: LocalAccount,
    other: LocalAccount,
    files: FileServer,
    verb: str,
    status: JobStatus,
) -> None:
    job = submit(engine, consumer.address, files, run=status is JobStatus.FINISHED)
    reply = _send(client, verb, other, job.job_id, "2", address=consumer.address)
    assert reply.status_code == 400
    assert reply.json["errors"]["signature"] == [
        "Invalid signature: the signer is not consumerAddress."
    ]
    assert b"row,value" not in reply.data
    assert engine.get(job.job_id).status is status  # type: ignore[union-attr]
    assert stored_nonce(client, consumer.address) == "1"


# -- concurrency -------------------------------------------------------------------------------


def test_fifty_concurrent_requests_same_nonce_exactly_one_accepted(
    app: Flask, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    job = submit(engine, consumer.address, files)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import requests

        base = f"http://127.0.0.1:{server.server_port}"
        query = result_query(consumer, job.job_id, 0, "2")
        barrier = threading.Barrier(50)

        def one(_: int) -> int:
            barrier.wait()
            with requests.get(base + RESULT, params=query, timeout=60) as reply:
                return reply.status_code

        with ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(one, range(50)))
    finally:
        server.shutdown()
        server.server_close()
    assert codes.count(200) == 1, codes
    assert codes.count(400) == 49, codes
