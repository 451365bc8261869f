"""Receipts of real jobs (real Docker): they verify, name the image the container really ran
and every result's hash; a failed run gets one too (integration)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from eth_account import Account
from flask import Flask

from operator_engine.api import Engine
from operator_engine.backends.base import ContainerSpec, RunArea
from operator_engine.backends.docker import DockerBackend
from operator_engine.receipts import verify
from operator_engine.statuses import JobStatus
from tests.provider.core_support import (
    CONSUMER_KEY,
    PROVIDER_KEY,
    docker_provider,
    result_query,
    run_raw_python_job,
)
from tidewater.cli import main

pytestmark = pytest.mark.integration


class RecordingRunner(DockerBackend):
    """The Docker runner, noting the image id Docker reports for each container it starts."""

    ran: dict[str, str]

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        cid = super().start(spec, area)
        self.ran[spec.job_id] = str(self.client.containers.get(cid).attrs["Image"])
        return cid


@pytest.fixture
def docker_app(
    tmp_path: Path, docker_client: docker.DockerClient
) -> Iterator[tuple[Flask, Engine, RecordingRunner]]:
    runner = RecordingRunner(docker_client, pull=False)
    runner.ran = {}
    with docker_provider(tmp_path, runner) as (app, engine):
        yield app, engine, runner


def _run(engine: Engine, python_image: str, code: str) -> str:
    consumer = Account.from_key(CONSUMER_KEY)
    return run_raw_python_job(engine, consumer.address, python_image, code)


def test_a_real_jobs_receipt_verifies_and_names_what_ran(
    docker_app: tuple[Flask, Engine, RecordingRunner], python_image: str, tmp_path: Path
) -> None:
    app, engine, runner = docker_app
    consumer = Account.from_key(CONSUMER_KEY)
    job_id = _run(engine, python_image, "open('/data/outputs/o.txt', 'w').write('42')")
    done = engine.get(job_id)
    assert done is not None and done.status is JobStatus.FINISHED, done
    client = app.test_client()
    reply = client.get(
        "/api/services/computeReceipt",
        query_string={"jobId": job_id, "consumerAddress": consumer.address},
    )
    assert reply.status_code == 200
    receipt = reply.get_json()
    message = receipt["message"]
    assert message["image"] == runner.ran[job_id]  # the image Docker really ran
    assert message["status"] == 70 and message["exitCode"] == 0
    assert message["owner"].lower() == consumer.address.lower()
    assert message["inputs"][0]["sha256"] != "0x" + "00" * 32
    provider = Account.from_key(PROVIDER_KEY).address
    assert all(ok for ok, _ in verify(receipt, provider=provider))

    # download every result the way a consumer does, then verify them all with the CLI
    results = tmp_path / "results"
    results.mkdir()
    listed = {r["name"] for r in message["results"]}
    for n, result in enumerate(done.results):
        got = client.get(
            "/api/services/computeResult",
            query_string=result_query(consumer, job_id, result.index, str(10 + n)),
        )
        assert got.status_code == 200
        (results / result.filename).write_bytes(got.data)
    assert listed == {r.filename for r in done.results if r.type != "receipt"}
    receipt_path = results / "receipt.json"
    assert json.loads(receipt_path.read_text()) == receipt
    args = ["receipt", "verify", str(receipt_path), "--results", str(results)]
    assert main([*args, "--provider", provider]) == 0
    (results / "o.txt").write_text("43")
    assert main(args) == 1
    other = client.get(
        "/api/services/computeReceipt",
        query_string={"jobId": job_id, "consumerAddress": "0x" + "12" * 20},
    )
    assert other.status_code == 404


def test_a_failed_run_gets_a_receipt_with_its_exit_code(
    docker_app: tuple[Flask, Engine, RecordingRunner], python_image: str
) -> None:
    _app, engine, _runner = docker_app
    job_id = _run(engine, python_image, "import sys; sys.exit(3)")
    done = engine.get(job_id)
    assert done is not None and done.status.is_terminal and done.status != 70
    (receipt_result,) = [r for r in done.results if r.type == "receipt"]
    path, _ = engine.open_result(job_id, receipt_result.index)
    message = json.loads(path.read_text())["message"]
    assert message["exitCode"] == 3 and message["status"] == int(done.status)
