"""Fixtures for provider-core's route tests (import the ``*_fixture`` names to use them).

Route tests run the real ``operator_engine.api.Engine`` on a temporary SQLite store with the
engine's ``FakeBackend`` (a Python function per container; no Docker), and dataset files served
by a local HTTP server on 127.0.0.1. The chain is faked: only its chain id is read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from flask import Flask
from flask.testing import FlaskClient

from operator_engine.api import Engine
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.models import AlgorithmInput, DatasetInput, Job, JobRequest
from provider.app import create_app
from provider.request_auth import result_text
from provider.signatures import sign_text
from tests.engine.conftest import FileServer
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

CHAIN_ID = 8996
PROVIDER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
CONSUMER_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
OTHER_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"
DID = "did:op:" + "ab" * 32
#: What the fake algorithm leaves in /data/outputs (big enough to stream in several chunks).
BIG = b"row,value\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(80_000))
OUTPUTS = {"summary.csv": BIG, "note.txt": b"done\n"}
FAKE_CONTAINER = {"image": "tidewater/fake", "tag": "1", "entrypoint": "python3 $ALGO"}
#: The fake chain's fee token (it has no address file, so no default Ocean token).
FAKE_OCEAN = "0x" + "0c" * 20
ENVS = [
    {
        "id": "free",
        "cpuNumber": 1,
        "ramGB": 1,
        "diskGB": 1,
        "maxJobs": 4,
        "priceMin": 0,
        "maxJobDuration": 60,
        "storageExpiry": 3600,
        "feeToken": FAKE_OCEAN,
    },
    {
        "id": "paid",
        "cpuNumber": 2,
        "ramGB": 2,
        "diskGB": 2,
        "maxJobs": 2,
        "priceMin": 1.5,
        "maxJobDuration": 60,
        "storageExpiry": 3600,
        "consumerAddress": "0x1212121212121212121212121212121212121212",
        "feeToken": FAKE_OCEAN,
    },
]


def _algorithm(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
    for name, data in OUTPUTS.items():
        (dirs["outputs"] / name).write_bytes(data)
    return 0, False, b"fake run\n"


def fake_web3(chain_id: int = CHAIN_ID) -> Any:
    """Enough of ``web3.Web3`` for routes that only need the chain id, and for the fee-token
    check: every address but the zero one holds code."""

    def get_code(address: str) -> bytes:
        return b"" if int(address, 16) == 0 else b"\x60\x80"

    return SimpleNamespace(eth=SimpleNamespace(chain_id=chain_id, get_code=get_code))


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    envs_file = tmp_path / "envs.json"
    envs_file.write_text(json.dumps(ENVS))
    return Settings.from_env(
        {
            "PROVIDER_PRIVATE_KEY": PROVIDER_KEY,
            "TIDEWATER_DATA_DIR": str(tmp_path / "data"),
            "TIDEWATER_ENVIRONMENTS": str(envs_file),
            "ALLOW_NON_PUBLIC_IP": "true",
            "NETWORK_URL": "http://127.0.0.1:9",
            "TIDEWATER_PULL_IMAGES": "false",  # tests build their images; nothing leaves loopback
        }
    ).with_(**changes)


@pytest.fixture(name="files")
def files_fixture() -> Iterator[FileServer]:
    server = FileServer()
    server.files["/data.csv"] = b"a,b\n1,2\n"
    yield server
    server.close()


@pytest.fixture(name="settings")
def settings_fixture(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(name="engine")
def engine_fixture(settings: Settings) -> Iterator[Engine]:
    real = build_engine(settings, backend=FakeBackend(_algorithm))
    yield real
    real.shutdown()
    real.db.dispose()


@pytest.fixture(name="app")
def app_fixture(settings: Settings, engine: Engine) -> Flask:
    return create_app(settings, engine=engine, web3=fake_web3())


@pytest.fixture(name="client")
def client_fixture(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(name="consumer")
def consumer_fixture() -> LocalAccount:
    return Account.from_key(CONSUMER_KEY)


@pytest.fixture(name="other")
def other_fixture() -> LocalAccount:
    return Account.from_key(OTHER_KEY)


def job_request(
    owner: str,
    data_url: str,
    *,
    container: Mapping[str, str] = FAKE_CONTAINER,
    rawcode: str = "print('hi')",
    service_id: str = "svc",
) -> JobRequest:
    """``owner``'s request to run ``rawcode`` in ``container`` on env ``free`` over dataset DID,
    whose one file is ``data_url``."""
    return JobRequest(
        owner=owner,
        environment="free",
        datasets=[
            DatasetInput(
                did=DID,
                ddo={"id": DID},
                service_id=service_id,
                files=[{"type": "url", "url": data_url}],
            )
        ],
        algorithm=AlgorithmInput(container=dict(container), rawcode=rawcode),
    )


def submit(engine: Engine, owner: str, files: FileServer, *, run: bool = True) -> Job:
    """A job of ``owner`` on env ``free`` (finished with OUTPUTS when ``run``)."""
    job = engine.submit(job_request(owner, files.url("/data.csv")))
    if run:
        engine.run_until_idle()
    found = engine.get(job.job_id)
    assert found is not None
    return found


def sign(account: LocalAccount, text: str) -> str:
    return sign_text("0x" + bytes(account.key).hex(), text)


def sign_v01(account: LocalAccount, text: str) -> str:
    """The same signature with v as 0/1 (what ocean.py sends)."""
    signature = sign(account, text)
    return signature[:-2] + f"{int(signature[-2:], 16) - 27:02x}"


def result_query(
    signer: LocalAccount, job_id: str, index: int, nonce: str, *, address: str = ""
) -> dict[str, str]:
    """ocean.py's computeResult query, signed by ``signer``, for ``address`` (default: its own)."""
    address = address or signer.address
    return {
        "consumerAddress": address,
        "jobId": job_id,
        "index": str(index),
        "nonce": nonce,
        "signature": sign_v01(signer, result_text(address, job_id, index, nonce)),
    }


def stored_nonce(client: FlaskClient, address: str) -> str:
    reply = client.get("/api/services/nonce", query_string={"userAddress": address})
    return str(reply.json["nonce"])  # type: ignore[index]


def next_nonce(client: FlaskClient, address: str) -> str:
    return str(int(stored_nonce(client, address)) + 1)


@contextmanager
def docker_provider(tmp_path: Path, runner: Any) -> Iterator[tuple[Flask, Engine]]:
    """The provider app on an engine with ``runner`` (a real Docker runner); every container
    it left is removed afterwards."""
    settings = make_settings(tmp_path)
    engine = build_engine(settings, backend=runner)
    try:
        yield create_app(settings, engine=engine, web3=fake_web3()), engine
    finally:
        engine.shutdown()
        for cid, _job in engine.backend.containers():
            engine.backend.remove(cid)
        engine.db.dispose()


def run_raw_python_job(
    engine: Engine, owner: str, python_image: str, code: str, data: bytes = b"a,b\n1,2\n"
) -> str:
    """Run ``code`` as raw algorithm code in ``python_image`` on ``data`` (served from
    loopback) through ``engine`` until idle; the job id."""
    server = FileServer()
    server.files["/data.csv"] = data
    try:
        name, tag = python_image.rsplit(":", 1)
        request = job_request(
            owner,
            server.url("/data.csv"),
            container={"image": name, "tag": tag, "entrypoint": "python3 $ALGO"},
            rawcode=code,
            service_id="s",
        )
        job = engine.submit(request)
        engine.run_until_idle(timeout=180)
    finally:
        server.close()
    return job.job_id
