"""The C2D v2 API under /node on the real engine (FakeBackend, temporary SQLite, fake chain id).

Signatures are made as ocean.js 8 makes them (``provider.signatures.sign_command``); the nonce
store is the one V4 uses. Chain-backed paths (orders, escrow) are in the integration test that
drives ocean.js 8.6.2 itself.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ecies
import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from flask import Flask
from flask.testing import FlaskClient
from web3 import Web3

from operator_engine.api import Engine
from operator_engine.backends.fake import FakeBackend
from operator_engine.environments import EnvironmentConfigError, parse_environment
from operator_engine.models import ComputeEnvironment
from provider.app import create_app
from provider.asset import Asset
from provider.crypto import public_key_hex
from provider.errors import ProviderError, RequestValidationError
from provider.logstream import CHUNK, follow_log
from provider.node.environments import job_duration, quote, requested_resources
from provider.request_auth import command_text, result_text
from provider.signatures import command_digest, recover_command_signer, sign_command
from tests.engine.conftest import FileServer
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    BIG,
    CHAIN_ID,
    DID,
    FAKE_CONTAINER,
    PROVIDER_KEY,
    _algorithm,
    consumer_fixture,
    fake_web3,
    files_fixture,
    job_request,
    make_settings,
    other_fixture,
    sign,
    stored_nonce,
    submit,
)
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

TOKEN = Web3.to_checksum_address("0x" + "cd" * 20)
ENVS = [
    {
        "id": "gpuless",
        "cpuNumber": 4,
        "ramGB": 8,
        "diskGB": 20,
        "maxJobs": 2,
        "maxJobDuration": 600,
        "minJobDuration": 60,
        "storageExpiry": 3600,
        "feeToken": TOKEN,
        "prices": {"cpu": 1, "ram": 0.25, "disk": 0.01},
        "free": {"maxJobDuration": 30, "maxJobs": 1, "cpuNumber": 1, "ramGB": 1, "diskGB": 1},
    },
    {
        "id": "free",
        "cpuNumber": 1,
        "ramGB": 1,
        "diskGB": 1,
        "maxJobs": 4,
        "maxJobDuration": 60,
        "feeToken": TOKEN,  # a real ERC-20 (the fake chain has no address file to default to)
    },
    {
        "id": "open",
        "cpuNumber": 1,
        "maxJobs": 1,
        "feeToken": TOKEN,
        "free": {"maxJobs": 1, "maxJobDuration": 20, "requireOrders": False},
    },
]


@pytest.fixture(name="settings")
def settings_fixture(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(name="engine")
def engine_fixture(settings: Settings) -> Iterator[Engine]:
    assert settings.environments_file is not None
    settings.environments_file.write_text(json.dumps(ENVS))
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


def v2(client: FlaskClient, account: LocalAccount, command: str) -> dict[str, str]:
    """consumerAddress, nonce, signature as ocean.js 8 sends them for ``command``."""
    nonce = str(int(stored_nonce(client, account.address)) + 1)
    text = command_text(account.address, nonce, command)
    return {
        "consumerAddress": account.address,
        "nonce": nonce,
        "signature": sign_command("0x" + bytes(account.key).hex(), text),
    }


def test_root_document_lists_relative_paths_the_client_looks_up(client: FlaskClient) -> None:
    reply = client.get("/node", headers={"Authorization": "undefined"})
    assert reply.status_code == 200
    body = reply.json
    assert body is not None
    assert body["chainIds"] == [CHAIN_ID]
    assert body["providerAddress"].startswith("0x")
    assert body["nodePublicKey"].startswith("0x0")
    assert {"software", "version", "nodeId"} <= set(body)
    endpoints = body["serviceEndpoints"]
    for name in ("computeStart", "freeCompute", "computeStatus", "computeStop", "computeResult"):
        method, path = endpoints[name]
        assert path.startswith("/api/services/")
        url = "/node" + path
        assert any(
            r.rule == url and method in (r.methods or ())
            for r in client.application.url_map.iter_rules()
        )


def test_preflight_allows_authorization_and_range(client: FlaskClient) -> None:
    reply = client.options(
        "/node/api/services/computeResult",
        headers={"Origin": "https://dapp.example", "Access-Control-Request-Method": "GET"},
    )
    allowed = reply.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "range" in allowed


def test_environments_are_a_bare_array_in_ocean_node_shape(client: FlaskClient) -> None:
    envs = client.get("/node/api/services/computeEnvironments").json
    assert isinstance(envs, list)
    # engine-side free tiers are hidden
    assert [e["id"] for e in envs] == ["gpuless", "free", "open"]
    paid = envs[0]
    assert [r["id"] for r in paid["resources"][:3]] == ["cpu", "ram", "disk"]
    cpu = paid["resources"][0]
    assert (cpu["total"], cpu["min"], cpu["max"], cpu["inUse"]) == (4, 2, 2, 0)
    fee = paid["fees"][str(CHAIN_ID)][0]
    assert fee["feeToken"].lower() == TOKEN.lower()  # checksummed by the fee-token rule
    assert fee["prices"] == [
        {"id": "cpu", "price": 1.0},
        {"id": "ram", "price": 0.25},
        {"id": "disk", "price": 0.01},
    ]
    assert paid["free"]["maxJobDuration"] == 30 and paid["free"]["maxJobs"] == 1
    assert paid["free"]["resources"][0] == {"id": "cpu", "max": 1, "inUse": 0}
    assert paid["minJobDuration"] == 60 and paid["runningJobs"] == 0
    assert "free" not in envs[1]
    # a free environment still names a real ERC-20 fee token (issue 9 item 1), at price 0
    [free_fee] = envs[1]["fees"][str(CHAIN_ID)]
    assert free_fee["feeToken"].lower() == TOKEN.lower() and {
        p["price"] for p in free_fee["prices"]
    } == {0.0}
    # the V4 view is derived from the same prices: 2 CPUs + 4 GB + 10 GB per job, per minute
    v4 = client.get("/api/services/computeEnvironments").json
    assert v4 is not None
    (gpuless,) = [e for e in v4[str(CHAIN_ID)] if e["id"] == "gpuless"]
    assert gpuless["priceMin"] == pytest.approx(2 * 1 + 4 * 0.25 + 10 * 0.01)


def test_cost_duration_and_resources() -> None:
    env = parse_environment(ENVS[0], "test")
    amounts = requested_resources(env, [{"id": "cpu", "amount": 1}], "resources")
    assert amounts == {"cpu": 2.0, "ram": 4.0, "disk": 10.0}  # one job's share: min = max
    # 3.1 token per minute; 61 s -> 2 minutes; 10 s -> minJobDuration 60 s -> 1 minute
    assert quote(env, amounts, 61, 18) == 2 * 31 * 10**17
    assert quote(env, amounts, 10, 6) == 3_100_000
    assert job_duration(None, env) == 600
    assert job_duration(120, env) == 120
    assert job_duration(int(time.time()) + 300, env) == 600  # a timestamp is capped
    with pytest.raises(RequestValidationError):
        job_duration(0, env)
    with pytest.raises(ProviderError, match="at most 2 per job"):
        requested_resources(env, [{"id": "cpu", "amount": 3}], "resources")
    with pytest.raises(ProviderError, match="Unknown resource"):
        requested_resources(env, [{"id": "gpu", "amount": 1}], "resources")
    with pytest.raises(EnvironmentConfigError, match="not both"):
        parse_environment({"id": "x", "priceMin": 1, "prices": {"cpu": 1}}, "test")
    assert ComputeEnvironment(id="e").free is None


#: Signed by ethers 6 (``wallet.signMessage(ethers.toBeArray(keccak256(text)))``, as ocean.js 8
#: signs) with the consumer key; keccak(text) starts with a zero byte, so 31 bytes were signed.
ETHERS_TEXT = "0x90F79bf6EB2c4f870365E785982E1f101E93b90683startCompute"
ETHERS_SIGNATURE = (
    "0xa6bb6a83d2e08d59b0175fc8d2704bb2951686490ee2500dff67cd4049b88bf6"
    "1b3a02abe21c9b4fabb6932a87fbba84f4a417565f05392d77b83e6f2f095ac11c"
)


def test_command_signatures_of_hashes_with_leading_zero_bytes(consumer: LocalAccount) -> None:
    assert keccak(ETHERS_TEXT.encode())[0] == 0
    assert recover_command_signer(ETHERS_TEXT, ETHERS_SIGNATURE) == consumer.address
    assert sign_command("0x" + bytes(consumer.key).hex(), ETHERS_TEXT) == ETHERS_SIGNATURE
    assert command_digest(ETHERS_TEXT) != command_digest(ETHERS_TEXT + "x")


def test_stop_status_result_and_logs_share_the_v4_nonce_store(
    client: FlaskClient,
    engine: Engine,
    consumer: LocalAccount,
    other: LocalAccount,
    files: FileServer,
) -> None:
    job = submit(engine, consumer.address, files)
    status = client.get(
        "/node/api/services/compute",
        query_string={"consumerAddress": consumer.address, "jobId": job.job_id},
    ).json
    assert status is not None and status[0]["status"] == 70
    assert (
        client.get(
            "/node/api/services/compute", query_string={"consumerAddress": other.address}
        ).json
        == []
    )

    # result with a v2 signature, resumed with Range
    (index,) = [r.index for r in job.results if r.filename == "summary.csv"]
    query = {**v2(client, consumer, "getComputeResult"), "jobId": job.job_id, "index": index}
    whole = client.get("/node/api/services/computeResult", query_string=query)
    assert whole.status_code == 200 and whole.data == BIG
    query = {**v2(client, consumer, "getComputeResult"), "jobId": job.job_id, "index": index}
    part = client.get(
        "/node/api/services/computeResult", query_string=query, headers={"Range": "bytes=100-"}
    )
    assert part.status_code == 206 and part.data == BIG[100:]
    # a replayed nonce is refused, and the V4 nonce endpoint shows the v2 nonce
    replay = client.get("/node/api/services/computeResult", query_string=query)
    assert replay.status_code == 400 and replay.json is not None
    assert stored_nonce(client, consumer.address) == query["nonce"]
    # the V4 signature works here too
    nonce = str(int(query["nonce"]) + 1)
    v4 = {
        "consumerAddress": consumer.address,
        "jobId": job.job_id,
        "index": str(index),
        "nonce": nonce,
        "signature": sign(consumer, result_text(consumer.address, job.job_id, index, nonce)),
    }
    assert client.get("/node/api/services/computeResult", query_string=v4).data == BIG
    # someone else's signature over the owner's address, and someone else's request: refused
    forged = {**v2(client, other, "getComputeResult"), "jobId": job.job_id, "index": index}
    forged["consumerAddress"] = consumer.address
    assert client.get("/node/api/services/computeResult", query_string=forged).status_code == 400
    theirs = {**v2(client, other, "getComputeResult"), "jobId": job.job_id, "index": index}
    assert client.get("/node/api/services/computeResult", query_string=theirs).status_code == 404

    # logs of a finished job: the whole log, then the end of the stream
    logs = client.get(
        "/node/api/services/computeStreamableLogs",
        query_string={**v2(client, consumer, "getComputeStreamableLogs"), "jobId": job.job_id},
    )
    assert logs.status_code == 200 and b"fake run" in logs.data

    stop = client.put(
        "/node/api/services/compute",
        query_string={**v2(client, consumer, "stopCompute"), "jobId": job.job_id},
    )
    assert stop.status_code == 200 and stop.json is not None
    assert stop.json[0]["status"] == 70  # stopping a finished job changes nothing
    wrong = client.put(
        "/node/api/services/compute",
        query_string={**v2(client, consumer, "startCompute"), "jobId": job.job_id},
    )
    assert wrong.status_code == 400  # signed for another command


@pytest.mark.parametrize(
    ("path", "command", "body", "status", "needle"),
    [
        ("freeCompute", "freeStartCompute", {"environment": "free"}, 400, "no free tier"),
        ("freeCompute", "freeStartCompute", {"environment": "nope"}, 400, "does not exist"),
        ("freeCompute", "startCompute", {"environment": "gpuless"}, 400, "signer"),
        ("compute", "startCompute", {"environment": "gpuless:free"}, 400, "does not exist"),
        (
            "compute",
            "startCompute",
            {"environment": "gpuless", "maxJobDuration": -1},
            400,
            "maxJobDuration",
        ),
        (
            "compute",
            "startCompute",
            {"environment": "gpuless", "resources": [{"id": "ram", "amount": 64}]},
            400,
            "Not enough ram",
        ),
        (
            "compute",
            "startCompute",
            {"environment": "gpuless", "payment": {"chainId": 1}},
            400,
            "Unsupported chain",
        ),
    ],
)
def test_start_refusals_are_json(
    client: FlaskClient,
    consumer: LocalAccount,
    path: str,
    command: str,
    body: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    payload = {**v2(client, consumer, command), **body, "datasets": [{"documentId": "did:op:x"}]}
    payload["algorithm"] = {"meta": {"rawcode": "print(1)"}}
    reply = client.post(f"/node/api/services/{path}", json=payload)
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert needle in reply.get_data(as_text=True)


def test_unknown_node_path_answers_json(client: FlaskClient) -> None:
    reply = client.get("/node/api/services/nothing")
    assert reply.status_code == 404 and reply.json is not None


class FakeResolver:
    """DDOs by DID, as the indexer would resolve them."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets

    def resolve(self, did: str) -> Asset | None:
        return self.assets.get(did)


def _dataset(data_url: str) -> Asset:
    nft, datatoken = "0x" + "11" * 20, "0x" + "22" * 20
    payload = {
        "datatokenAddress": datatoken,
        "nftAddress": nft,
        "files": [{"type": "url", "url": data_url, "method": "GET"}],
    }
    files = "0x" + ecies.encrypt(public_key_hex(PROVIDER_KEY), json.dumps(payload).encode()).hex()
    ddo = {
        "id": DID,
        "metadata": {"type": "dataset"},
        "services": [
            {
                "id": "svc",
                "type": "compute",
                "datatokenAddress": datatoken,
                "files": files,
                "timeout": 0,
                "compute": {"allowRawAlgorithm": True},
            }
        ],
    }
    return Asset(did=DID, ddo=ddo, state=0, nft_address=nft, nft_owner=nft, chain_id=CHAIN_ID)


def test_free_tier_limits_and_order_policy(
    app: Flask, client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    svc = app.extensions["tidewater"]
    svc.assets = FakeResolver({DID: _dataset(files.url("/data.csv"))})
    svc.web3 = Web3(Web3.HTTPProvider("http://127.0.0.1:9"))  # never called: no order to check
    container = {**FAKE_CONTAINER, "checksum": "sha256:" + "f" * 64}  # the FakeBackend image
    body = {
        "datasets": [{"documentId": DID, "serviceId": "svc"}],
        "algorithm": {"meta": {"rawcode": "print(1)", "container": container}},
    }
    # orders are required by default: a free job without them is refused
    refused = client.post(
        "/node/api/services/freeCompute",
        json={**body, **v2(client, consumer, "freeStartCompute"), "environment": "gpuless"},
    )
    assert refused.status_code == 400 and refused.json == {"error": {"datasets[0]": "missing"}}
    # "open" waives them; its free tier runs one job at a time (nothing runs here yet)
    started = client.post(
        "/node/api/services/freeCompute",
        json={**body, **v2(client, consumer, "freeStartCompute"), "environment": "open"},
    )
    assert started.status_code == 200, started.get_data(as_text=True)
    assert started.json is not None
    (job,) = started.json
    assert job["environment"] == "open" and job["isFree"] is True and job["status"] == 1
    assert engine.get(job["jobId"]).environment == "open:free"  # type: ignore[union-attr]
    busy = client.post(
        "/node/api/services/freeCompute",
        json={**body, **v2(client, consumer, "freeStartCompute"), "environment": "open"},
    )
    assert busy.status_code == 429 and "at most 1" in busy.get_data(as_text=True)
    engine.run_until_idle()
    (done,) = client.get(
        "/node/api/services/compute",
        query_string={"consumerAddress": consumer.address, "jobId": job["jobId"]},
    ).json or [None]
    assert done is not None and done["status"] == 70 and done["environment"] == "open"
    envs = client.get("/node/api/services/computeEnvironments").json
    assert envs is not None and envs[2]["free"]["maxJobDuration"] == 20


def test_streamed_log_follows_the_file_until_the_job_ends(tmp_path: Path) -> None:
    log = tmp_path / "algorithm.log"
    state = {"terminal": False}
    stream = follow_log(lambda: state["terminal"], lambda: log, time.monotonic() + 60)
    log.write_bytes(b"first\n")
    assert next(stream) == b"first\n"  # served while the job still runs
    with log.open("ab") as handle:
        handle.write(b"x" * (CHUNK + 10))
    assert next(stream) == b"x" * CHUNK  # fixed-size reads: memory stays bounded
    assert next(stream) == b"x" * 10
    state["terminal"] = True
    with log.open("ab") as handle:
        handle.write(b"last\n")
    assert b"".join(stream) == b"last\n"  # the rest, then the end of the stream


def test_ddos_resolve_through_the_node_base(app: Flask, client: FlaskClient) -> None:
    svc = app.extensions["tidewater"]
    svc.assets = FakeResolver({DID: _dataset("http://127.0.0.1:9/x")})
    svc.web3 = Web3(Web3.HTTPProvider("http://127.0.0.1:9"))  # on-chain extras are best effort
    found = client.get(f"/node/api/aquarius/assets/ddo/{DID}")
    assert found.status_code == 200 and found.json is not None
    assert found.json["id"] == DID and found.json["nft"]["state"] == 0
    missing = client.get("/node/api/aquarius/assets/ddo/did:op:" + "00" * 32)
    assert missing.status_code == 404 and missing.json is not None and "error" in missing.json


def test_a_job_stops_at_the_duration_it_paid_for(tmp_path: Path, files: FileServer) -> None:
    """A C2D v2 job's ``max_duration`` (shorter than the environment's) ends it at 7."""

    def sleeper(spec: Any, dirs: dict[str, Path], killed: threading.Event) -> Any:
        killed.wait(30)  # runs until the engine kills it
        return 137, False, b"slept\n"

    settings = make_settings(tmp_path)
    engine = build_engine(settings, backend=FakeBackend(sleeper))
    try:
        base = job_request("0x" + "ab" * 20, files.url("/data.csv"))
        job = engine.submit(dataclasses.replace(base, max_duration=1))
        engine.run_until_idle()
        done = engine.get(job.job_id)
        assert done is not None and done.status == 7 and done.stopreq == 2, done
        assert done.reason is not None and "time limit of 1s" in done.reason
    finally:
        engine.shutdown()
        engine.db.dispose()


def test_auth_tokens_replace_signatures_until_invalidated(
    client: FlaskClient,
    engine: Engine,
    consumer: LocalAccount,
    other: LocalAccount,
    files: FileServer,
) -> None:
    job = submit(engine, consumer.address, files)
    endpoints = client.get("/node").json["serviceEndpoints"]  # type: ignore[index]
    assert endpoints["generateAuthToken"] == ["POST", "/api/services/auth/token"]
    signed = v2(client, consumer, "createAuthToken")
    made = client.post(
        "/node/api/services/auth/token",
        json={
            "address": consumer.address,
            "signature": signed["signature"],
            "nonce": signed["nonce"],
        },
    )
    assert made.status_code == 200 and made.json is not None
    token = made.json["token"]
    nonce_before = stored_nonce(client, consumer.address)
    headers = {"Authorization": token}
    stop = client.put(
        "/node/api/services/compute", query_string={"jobId": job.job_id}, headers=headers
    )
    assert stop.status_code == 200, stop.get_data(as_text=True)
    logs = client.get(
        "/node/api/services/computeStreamableLogs",
        query_string={"jobId": job.job_id, "consumerAddress": consumer.address},
        headers={"Authorization": "Bearer " + token},
    )
    assert logs.status_code == 200 and b"fake run" in logs.data
    (index,) = [r.index for r in job.results if r.filename == "summary.csv"]
    result = client.get(
        "/node/api/services/computeResult",
        query_string={"consumerAddress": consumer.address, "jobId": job.job_id, "index": index},
        headers=headers,
    )
    assert result.status_code == 200 and result.data == BIG
    assert stored_nonce(client, consumer.address) == nonce_before  # tokens use no nonce
    # a token is its address's only
    theirs = client.get(
        "/node/api/services/computeResult",
        query_string={"consumerAddress": other.address, "jobId": job.job_id, "index": index},
        headers=headers,
    )
    assert theirs.status_code == 401 and theirs.json is not None
    forged = client.put(
        "/node/api/services/compute",
        query_string={"jobId": job.job_id},
        headers={"Authorization": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")},
    )
    assert forged.status_code == 401 and forged.json is not None
    # invalidated: refused from then on
    signed = v2(client, consumer, "")
    gone = client.post(
        "/node/api/services/auth/token/invalidate",
        json={
            "address": consumer.address,
            "token": token,
            **{k: signed[k] for k in ("signature", "nonce")},
        },
    )
    assert gone.status_code == 200, gone.get_data(as_text=True)
    again = client.put(
        "/node/api/services/compute", query_string={"jobId": job.job_id}, headers=headers
    )
    assert again.status_code == 401 and "invalidated" in again.get_data(as_text=True)
    # the root document's literal "undefined" header is no token
    assert client.get("/node", headers={"Authorization": "undefined"}).status_code == 200
    signed = v2(client, consumer, "createAuthToken")
    too_long = client.post(
        "/node/api/services/auth/token",
        json={
            "address": consumer.address,
            "signature": signed["signature"],
            "nonce": signed["nonce"],
            "expiryTimestamp": int(time.time()) + 400 * 86400,
        },
    )
    assert too_long.status_code == 400 and too_long.json is not None
