"""Numbers parsed exactly and bounded, container sections typed, chain outages named (503).

Route tests on the real Engine (FakeBackend, SQLite) with a resolver that serves one dataset and
one algorithm from memory; the chain is a real web3 HTTP client whose endpoint stops answering.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from flask import Flask
from flask.testing import FlaskClient
from web3 import Web3

from contracts_abi import fees as fee_format
from operator_engine.api import Engine
from provider.app import create_app
from provider.asset import Asset
from provider.assets import IndexerResolver
from provider.chain import ChainUnavailable
from provider.compute_validation import ComputeValidator
from provider.crypto import encrypt_for_key, public_key_hex
from provider.errors import RequestValidationError
from provider.params import UINT256_MAX, parse_uint
from provider.request_auth import compute_start_text
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    CHAIN_ID,
    PROVIDER_KEY,
    app_fixture,
    client_fixture,
    consumer_fixture,
    engine_fixture,
    next_nonce,
    settings_fixture,
    sign,
)
from tidewater.settings import Settings

DATATOKEN = "0x" + "d7" * 20
NFT = "0x" + "cd" * 20
DATASET = "did:op:" + "0d" * 32
ALGORITHM = "did:op:" + "0a" * 32
TX = "0x" + "ab" * 32
CONTAINER = {"entrypoint": "python3 $ALGO", "image": "python", "tag": "3", "checksum": "sha256:0"}


def _asset(did: str, kind: str) -> Asset:
    files = {"datatokenAddress": DATATOKEN, "nftAddress": NFT, "files": [{"type": "url"}]}
    blob = encrypt_for_key(public_key_hex(PROVIDER_KEY), json.dumps(files).encode())
    service = {
        "id": "svc",
        "type": "compute",
        "datatokenAddress": DATATOKEN,
        "files": "0x" + blob.hex(),
        "timeout": 0,
        "compute": {"allowRawAlgorithm": True},
    }
    metadata: dict[str, Any] = {"type": kind}
    if kind == "algorithm":
        metadata["algorithm"] = {"container": CONTAINER}
    ddo = {"id": did, "metadata": metadata, "services": [service]}
    return Asset(did=did, ddo=ddo, state=0, nft_address=NFT, nft_owner=NFT, chain_id=CHAIN_ID)


class MemoryResolver:
    """The provider's resolver interface over two fixed assets."""

    assets = {DATASET: _asset(DATASET, "dataset"), ALGORITHM: _asset(ALGORITHM, "algorithm")}

    def resolve(self, did: str) -> Asset | None:
        return self.assets.get(did)


@pytest.fixture(name="resolving")
def resolving_fixture(app: Flask) -> Iterator[FlaskClient]:
    chain = app.extensions["tidewater"].default_chain
    chain.resolver = MemoryResolver()
    # a real client of a node that answers only its chain id (all the provider asks here: no
    # transferTxId, no fee token decimals)
    stub = ChainStub(CHAIN_ID)
    chain.web3 = Web3(Web3.HTTPProvider(stub.url))
    yield app.test_client()
    stub.stop()


def _initialize(client: FlaskClient, valid_until: Any, env: str = "free", raw: bool = False) -> Any:
    body = {
        "datasets": [{"documentId": DATASET, "serviceId": "svc"}],
        "algorithm": {"meta": {"rawcode": "print(1)"}},
        "compute": {"env": env, "validUntil": "VALID_UNTIL" if raw else valid_until},
        "consumerAddress": "0x" + "12" * 20,
    }
    text = json.dumps(body)
    if raw:  # a JSON number json.dumps cannot write (1e400)
        text = text.replace('"VALID_UNTIL"', str(valid_until))
    return client.post(
        "/api/services/initializeCompute", data=text, content_type="application/json"
    )


# -- item 10: validUntil exactly, within uint256 ------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "raw"),
    [
        ("inf", False),
        ("Infinity", False),
        ("NaN", False),
        ("1e400", False),
        ("1e400", True),  # a JSON number
        (str(2**256), False),
        (str(2**256), True),
        (str(10**80), True),
        ("-5", False),
        ("0x7fffffff", False),
        ("1.5", False),
        (f"{int(time.time()) + 3600}.5", True),  # not a whole second
        ("1e99999999999999999999", False),
    ],
)
def test_valid_until_out_of_range_or_not_an_integer_is_a_400(
    resolving: FlaskClient, sent: str, raw: bool
) -> None:
    reply = _initialize(resolving, sent, raw=raw)
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert reply.get_json()["errors"] == {
        "compute.validUntil": [
            "The compute.validUntil field must be an integer from 0 to 2**256 - 1."
        ]
    }


@pytest.mark.parametrize(
    ("sent", "raw", "expected"),
    [
        (
            10**70,
            True,
            10**70,
        ),  # through float: 10000000000000000725314363815292351261583744096465219555182101554790400
        (str(UINT256_MAX), False, UINT256_MAX),
        (str(UINT256_MAX), True, UINT256_MAX),
        ("4.1e9", False, 4_100_000_000),  # integral values in exponent form are exact
        ("4100000000.0", True, 4_100_000_000),
    ],
)
def test_valid_until_is_signed_exactly(
    resolving: FlaskClient, sent: Any, raw: bool, expected: int
) -> None:
    reply = _initialize(resolving, sent, raw=raw)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    fee = reply.get_json()["datasets"][0]["providerFee"]
    assert fee["validUntil"] == expected
    assert fee_format.recover_provider_fee_signer(fee) == Web3.to_checksum_address(
        fee["providerFeeAddress"]
    )


def test_a_fee_beyond_uint256_is_refused(
    resolving: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # env "paid": 1.5 tokens a minute; until 2**256 - 1 that is far more than a uint256 holds.
    # Its fee token is a real ERC-20 whose decimals() this dead chain cannot answer: 18.
    monkeypatch.setattr("provider.fees.token_decimals", lambda _w3, _token: 18)
    reply = _initialize(resolving, str(UINT256_MAX), env="paid")
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert "uint256" in reply.get_json()["error"]


def test_signing_refuses_values_outside_uint256() -> None:
    data = fee_format.provider_data("e", DATATOKEN, "svc", 1.0)
    for amount, valid_until in ((2**256, 1), (1, 2**256), (-1, 1)):
        with pytest.raises(fee_format.FeeOutOfRange):
            fee_format.sign_provider_fee(
                PROVIDER_KEY,
                provider_data_hex=data,
                fee_token=DATATOKEN,
                amount=amount,
                valid_until=valid_until,
            )


def test_parse_uint() -> None:
    assert parse_uint(str(10**70)) == 10**70
    assert parse_uint(str(UINT256_MAX)) == UINT256_MAX
    assert parse_uint("17e8") == 1_700_000_000
    assert parse_uint(" 42 ") == 42
    for bad in ("", "1.5", "1e-3", "1e400", str(2**256), "-1", "+1", "1_000", "0x10", "inf"):
        assert parse_uint(bad) is None, bad
    assert parse_uint("300", maximum=255) is None


# -- item 12: validateContainer types ----------------------------------------------------------


@pytest.mark.parametrize("image", [["python"], {"name": "python"}, 3, 3.5, True])
def test_validate_container_refuses_a_non_string_image(client: FlaskClient, image: Any) -> None:
    reply = client.post("/api/services/validateContainer", json={**CONTAINER, "image": image})
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert reply.get_json()["errors"] == {"image": ["The image field must be a string."]}


@pytest.mark.parametrize("field", ["entrypoint", "tag", "checksum"])
def test_validate_container_refuses_other_non_string_parts(client: FlaskClient, field: str) -> None:
    reply = client.post("/api/services/validateContainer", json={**CONTAINER, field: [1]})
    assert reply.status_code == 400
    assert list(reply.get_json()["errors"]) == [field]


@pytest.mark.parametrize(
    ("container", "field"),
    [
        ({**CONTAINER, "image": ["python"]}, "algorithm.container.image"),
        ({**CONTAINER, "entrypoint": {"a": 1}}, "algorithm.container.entrypoint"),
        ({**CONTAINER, "checksum": 12}, "algorithm.container.checksum"),
    ],
)
def test_compute_start_containers_follow_the_same_rule(container: Any, field: str) -> None:
    """Raw algorithms' and published algorithms' containers go through ``check_container``."""
    with pytest.raises(RequestValidationError) as refused:
        ComputeValidator.container(container)
    assert list(refused.value.errors) == [field]
    assert ComputeValidator.container(CONTAINER) == CONTAINER


# -- item 3: a chain outage is a 503 naming the chain ------------------------------------------


class ChainStub:
    """A JSON-RPC endpoint on 127.0.0.1 until ``stop``: every ``eth_call`` answers 18 (a fee
    token's ``decimals()``), anything else ``chain_id``."""

    def __init__(self, chain_id: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                result = hex(chain_id)
                if request["method"] == "eth_call":
                    result = "0x" + (18).to_bytes(32, "big").hex()
                body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(name="outage")
def outage_fixture(settings: Settings, engine: Engine) -> Iterator[FlaskClient]:
    """A provider whose chain answered at start-up, then went down."""
    stub = ChainStub(CHAIN_ID)
    try:
        w3 = Web3(Web3.HTTPProvider(stub.url, request_kwargs={"timeout": 5}))
        app = create_app(settings.with_(network_url=stub.url), engine=engine, web3=w3)
    finally:
        stub.stop()
    app.extensions["tidewater"].default_chain.resolver = MemoryResolver()
    yield app.test_client()


def _is_outage(reply: Any) -> None:
    assert reply.status_code == 503, reply.get_data(as_text=True)
    message = reply.get_json()["error"]
    assert isinstance(message, str) and f"chain {CHAIN_ID} is unavailable" in message
    assert "127.0.0.1" not in message  # the RPC URL may carry a key: never echoed


def test_initialize_with_an_order_during_an_outage(outage: FlaskClient) -> None:
    body = {
        "datasets": [{"documentId": DATASET, "serviceId": "svc", "transferTxId": TX}],
        "algorithm": {"meta": {"rawcode": "print(1)"}},
        "compute": {"env": "free", "validUntil": int(time.time()) + 600},
        "consumerAddress": "0x" + "12" * 20,
    }
    _is_outage(outage.post("/api/services/initializeCompute", json=body))


@pytest.mark.parametrize("algorithm", ["raw", "published"])
def test_compute_start_during_an_outage(
    outage: FlaskClient, consumer: LocalAccount, algorithm: str
) -> None:
    algo: dict[str, Any] = {"meta": {"rawcode": "print(1)", "container": CONTAINER}}
    if algorithm == "published":
        algo = {"documentId": ALGORITHM, "serviceId": "svc", "transferTxId": TX}
    nonce = next_nonce(outage, consumer.address)
    reply = outage.post(
        "/api/services/compute",
        json={
            "consumerAddress": consumer.address,
            "signature": sign(consumer, compute_start_text(consumer.address, DATASET, nonce)),
            "nonce": nonce,
            "environment": "free",
            "dataset": {"documentId": DATASET, "serviceId": "svc", "transferTxId": TX},
            "algorithm": algo,
        },
    )
    _is_outage(reply)


# -- digit-only numbers: beyond Python's int() limit is a 400, not a 500 -----------------------

LONG = "7" * 5000  # int() refuses more than 4,300 digits


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/api/services/computeEnvironments", {"query_string": {"chainId": LONG}}),
        ("post", f"/api/services/encrypt?chainId={LONG}", {"data": b"x"}),
        (
            "post",
            "/api/services/fileinfo",
            {"json": {"did": DATASET, "serviceId": "svc", "fileIndex": LONG}},
        ),
        (
            "get",
            "/api/services/computeResult",
            {
                "query_string": {
                    "consumerAddress": "0x" + "12" * 20,
                    "jobId": "j",
                    "index": LONG,
                    "nonce": "2",
                    "signature": "0x00",
                }
            },
        ),
        (
            "post",
            "/api/services/decrypt",
            {
                "json": {
                    "decrypterAddress": "0x" + "12" * 20,
                    "chainId": LONG,
                    "dataNftAddress": NFT,
                    "nonce": "2",
                    "signature": "0x00",
                }
            },
        ),
    ],
)
def test_overlong_digit_parameters_are_a_400(
    resolving: FlaskClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    reply = getattr(resolving, method)(path, **kwargs)
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert reply.get_json()["errors"]


class _DownIndexer:
    """An indexer whose catch-up meets a chain outage; ``known`` is what it indexed before."""

    def __init__(self, known: dict[str, Asset]) -> None:
        self.known = known

    def sync(self) -> None:
        raise ChainUnavailable(CHAIN_ID, ConnectionError("refused"))

    def get(self, did: str) -> Asset | None:
        return self.known.get(did)


def test_an_outage_serves_indexed_assets_and_names_the_chain_for_others() -> None:
    indexed = MemoryResolver.assets[DATASET]
    resolver = IndexerResolver(_DownIndexer({DATASET: indexed}))  # type: ignore[arg-type]
    assert resolver.resolve(DATASET) == indexed
    with pytest.raises(ChainUnavailable, match=f"chain {CHAIN_ID} is unavailable"):
        resolver.resolve(ALGORITHM)
