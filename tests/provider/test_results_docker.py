"""computeResult streaming a result a real container produced (integration: real Docker)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from eth_account import Account
from flask import Flask

from operator_engine.api import Engine
from operator_engine.backends.docker import DockerBackend
from operator_engine.statuses import JobStatus
from tests.provider.core_support import (
    CONSUMER_KEY,
    OTHER_KEY,
    docker_provider,
    result_query,
    run_raw_python_job,
)

pytestmark = pytest.mark.integration
ALGORITHM = """
import os
rows = open(os.environ["INPUTS"] + "/" + os.environ["DIDS"][2:-2] + "/0").read().splitlines()
with open("/data/outputs/squares.csv", "w") as out:
    for i in range(200000):
        out.write(f"{i},{i * i}\\n")
print("rows", len(rows))
"""


@pytest.fixture
def docker_app(
    tmp_path: Path, docker_client: docker.DockerClient
) -> Iterator[tuple[Flask, Engine]]:
    with docker_provider(tmp_path, DockerBackend(docker_client, pull=False)) as provider:
        yield provider


def test_compute_result_streams_a_real_container_result(
    docker_app: tuple[Flask, Engine], python_image: str
) -> None:
    app, engine = docker_app
    consumer, other = Account.from_key(CONSUMER_KEY), Account.from_key(OTHER_KEY)
    job_id = run_raw_python_job(
        engine, consumer.address, python_image, ALGORITHM, b"a,b\n1,2\n3,4\n"
    )
    done = engine.get(job_id)
    assert done is not None and done.status is JobStatus.FINISHED, done
    result = next(r for r in done.results if r.filename == "squares.csv")
    client = app.test_client()
    forged_query = result_query(other, job_id, result.index, "2", address=consumer.address)
    forged = client.get("/api/services/computeResult", query_string=forged_query)
    assert forged.status_code == 400 and b"0,0" not in forged.data
    reply = client.get(
        "/api/services/computeResult",
        query_string=result_query(consumer, job_id, result.index, "2"),
        buffered=False,
    )
    assert reply.status_code == 200
    assert reply.headers["Content-Disposition"] == "attachment;filename=squares.csv"
    chunks = list(reply.response)
    reply.close()
    body = b"".join(chunks)
    assert len(chunks) > 1 and len(body) == result.filesize
    assert body.startswith(b"0,0\n1,1\n2,4\n")
    if result.sha256:
        assert hashlib.sha256(body).hexdigest() == result.sha256
    log = next(r for r in done.results if r.type == "algorithmLog")
    log_reply = client.get(
        "/api/services/computeResult",
        query_string=result_query(consumer, job_id, log.index, "3"),
    )
    assert log_reply.status_code == 200 and b"rows 3" in log_reply.data
