"""Root, nonce, encrypt, decrypt (validation layer), environments, files; CORS and errors."""

from __future__ import annotations

import json

import pytest
from eth_account.signers.local import LocalAccount
from flask import Flask
from flask.testing import FlaskClient

from operator_engine.api import Engine
from provider.app import create_app
from provider.crypto import decrypt_hex
from provider.request_auth import decrypt_text
from provider.routes.root import SERVICE_ENDPOINTS
from tests.engine.conftest import FileServer
from tests.provider.core_support import (  # noqa: F401 (fixtures)
    CHAIN_ID,
    PROVIDER_KEY,
    app_fixture,
    client_fixture,
    consumer_fixture,
    engine_fixture,
    fake_web3,
    files_fixture,
    next_nonce,
    other_fixture,
    settings_fixture,
    sign,
    stored_nonce,
    submit,
)
from tidewater.settings import Settings

PROVIDER_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
NFT = "0x" + "cd" * 20


def test_root_discovery(client: FlaskClient) -> None:
    reply = client.get("/")
    assert reply.status_code == 200
    body = reply.json
    assert body["chainIds"] == [CHAIN_ID]
    assert body["providerAddresses"] == {str(CHAIN_ID): PROVIDER_ADDRESS}
    assert body["software"] == "tidewater" and body["version"]
    assert body["serviceEndpoints"] == SERVICE_ENDPOINTS
    expected = {
        "computeStart": ["POST", "/api/services/compute"],
        "computeStatus": ["GET", "/api/services/compute"],
        "computeStop": ["PUT", "/api/services/compute"],
        "computeDelete": ["DELETE", "/api/services/compute"],
        "computeResult": ["GET", "/api/services/computeResult"],
        "computeEnvironments": ["GET", "/api/services/computeEnvironments"],
        "initializeCompute": ["POST", "/api/services/initializeCompute"],
        "nonce": ["GET", "/api/services/nonce"],
        "encrypt": ["POST", "/api/services/encrypt"],
        "decrypt": ["POST", "/api/services/decrypt"],
        "fileinfo": ["POST", "/api/services/fileinfo"],
        "initialize": ["GET", "/api/services/initialize"],
        "download": ["GET", "/api/services/download"],
        "validateContainer": ["POST", "/api/services/validateContainer"],
    }
    assert body["serviceEndpoints"] == expected


def test_every_advertised_endpoint_is_routed(app: Flask) -> None:
    adapter = app.url_map.bind("localhost")
    for method, path in SERVICE_ENDPOINTS.values():
        adapter.match(path, method=method)  # raises when not routed


def test_nonce_is_a_json_string_and_moves(client: FlaskClient, consumer: LocalAccount) -> None:
    assert stored_nonce(client, consumer.address) == "1"
    reply = client.get("/api/services/nonce", query_string={"userAddress": consumer.address})
    assert reply.json == {"nonce": "1"} and reply.status_code == 200


def test_cors_on_answers_errors_and_preflight(client: FlaskClient) -> None:
    assert client.get("/").headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/api/services/nonce").headers["Access-Control-Allow-Origin"] == "*"
    pre = client.options(
        "/api/services/compute",
        headers={
            "Origin": "https://market.example",
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "DELETE" in pre.headers["Access-Control-Allow-Methods"]
    assert pre.headers["Access-Control-Allow-Headers"] == "content-type"
    assert "Content-Disposition" in pre.headers["Access-Control-Expose-Headers"]


def test_unknown_route_and_method_are_json_4xx(client: FlaskClient) -> None:
    missing = client.get("/api/services/nothing")
    assert missing.status_code == 404 and "error" in missing.json
    wrong = client.patch("/api/services/compute")
    assert wrong.status_code == 405 and "error" in wrong.json


def test_encrypt_round_trip(client: FlaskClient) -> None:
    plain = json.dumps({"files": [{"type": "url", "url": "https://secret.example/x"}]}).encode()
    reply = client.post(
        f"/api/services/encrypt?chainId={CHAIN_ID}",
        data=plain,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 201
    assert reply.mimetype == "text/plain"
    text = reply.get_data(as_text=True)
    assert text.startswith("0x")
    assert len(bytes.fromhex(text[2:])) == 65 + 16 + 16 + len(plain)
    assert decrypt_hex(PROVIDER_KEY, text) == plain


def test_encrypt_twice_differs(client: FlaskClient) -> None:
    url = f"/api/services/encrypt?chainId={CHAIN_ID}"
    assert client.post(url, data=b"x").data != client.post(url, data=b"x").data


def test_environments_keyed_by_chain_with_numbers(
    client: FlaskClient, engine: Engine, consumer: LocalAccount, files: FileServer
) -> None:
    submit(engine, consumer.address, files, run=False)  # queued: counts as current
    reply = client.get("/api/services/computeEnvironments", query_string={"chainId": CHAIN_ID})
    assert reply.status_code == 200
    envs = {e["id"]: e for e in reply.json[str(CHAIN_ID)]}
    assert set(envs) == {"free", "paid"}
    free, paid = envs["free"], envs["paid"]
    assert free["priceMin"] == 0 and isinstance(free["priceMin"], int | float)
    assert paid["priceMin"] == 1.5
    assert free["currentJobs"] == 1 and paid["currentJobs"] == 0
    assert free["consumerAddress"] == PROVIDER_ADDRESS  # default: the provider
    assert paid["consumerAddress"] == "0x1212121212121212121212121212121212121212"
    for key in ("cpuNumber", "ramGB", "diskGB", "maxJobs", "maxJobDuration", "storageExpiry"):
        assert isinstance(free[key], int | float), key
    assert client.get("/api/services/computeEnvironments").json.keys() == {str(CHAIN_ID)}


def test_validate_container(client: FlaskClient) -> None:
    good = {"entrypoint": "python $ALGO", "image": "python", "tag": "3", "checksum": "sha256:ab"}
    reply = client.post("/api/services/validateContainer", json=good)
    assert reply.status_code == 200 and reply.json == good


def test_access_services_name_missing_fields(client: FlaskClient) -> None:
    reply = client.get("/api/services/initialize", query_string={"documentId": "did:op:x"})
    assert reply.status_code == 400
    assert reply.json["errors"] == {"serviceId": ["The serviceId field is required."]}
    reply = client.get("/api/services/download", query_string={"documentId": "did:op:x"})
    assert reply.status_code == 400
    assert set(reply.json["errors"]) == {"serviceId", "transferTxId", "fileIndex"}


def test_fileinfo_url(client: FlaskClient, files: FileServer) -> None:
    reply = client.post(
        "/api/services/fileinfo",
        json={"type": "url", "url": files.url("/data.csv"), "method": "GET"},
    )
    assert reply.status_code == 200
    assert reply.json == [
        {
            "index": 0,
            "valid": True,
            "contentLength": "8",
            "contentType": "",
            "type": "url",
            "filename": "data.csv",
        }
    ]
    gone = client.post("/api/services/fileinfo", json={"type": "url", "url": files.url("/none")})
    assert gone.json[0]["valid"] is False


def test_fileinfo_refuses_private_addresses_by_default(
    tmp_path, engine: Engine, files: FileServer
) -> None:
    from tests.provider.core_support import make_settings

    guarded = create_app(
        make_settings(tmp_path, allow_non_public_ip=False), engine=engine, web3=fake_web3()
    )
    reply = guarded.test_client().post(
        "/api/services/fileinfo", json={"type": "url", "url": files.url("/data.csv")}
    )
    assert reply.status_code == 200 and reply.json[0]["valid"] is False
    assert files.requests == []  # the guard refused before connecting


def test_fileinfo_by_did_without_resolver_is_503(client: FlaskClient) -> None:
    reply = client.post("/api/services/fileinfo", json={"did": "did:op:1", "serviceId": "s"})
    assert reply.status_code in (404, 503)


def test_create_app_without_key_names_the_variable(tmp_path, engine: Engine) -> None:
    from tidewater.settings import SettingsError

    with pytest.raises(SettingsError, match="PROVIDER_PRIVATE_KEY"):
        create_app(Settings(data_dir=tmp_path), engine=engine, web3=fake_web3())


def test_create_app_unreachable_chain_is_one_line(settings: Settings, engine: Engine) -> None:
    from provider.app import ChainUnavailableError

    with pytest.raises(ChainUnavailableError, match=r"NETWORK_URL=http://127\.0\.0\.1:9"):
        create_app(settings, engine=engine)


def test_start_workers_starts_the_engine(settings: Settings, engine: Engine) -> None:
    create_app(settings.with_(workers=1), engine=engine, web3=fake_web3(), start_workers=True)
    assert engine._threads  # the worker thread runs; the engine fixture shuts it down


# -- decrypt: everything before the chain is touched -------------------------------------------


def _decrypt_body(account: LocalAccount, nonce: str, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "decrypterAddress": account.address,
        "chainId": CHAIN_ID,
        "dataNftAddress": NFT,
        "encryptedDocument": "0x00",
        "flags": 2,
        "documentHash": "0x" + "00" * 32,
        "nonce": nonce,
    }
    body.update(over)
    body["signature"] = sign(account, decrypt_text(NFT, account.address, CHAIN_ID, nonce))
    return body


def test_decrypt_by_unauthorised_address_is_403_and_signed(
    client: FlaskClient, consumer: LocalAccount
) -> None:
    nonce = next_nonce(client, consumer.address)
    reply = client.post("/api/services/decrypt", json=_decrypt_body(consumer, nonce))
    assert reply.status_code == 403
    assert reply.json == {"error": "Decrypter not authorized"}


def test_decrypt_with_a_forged_signature_is_400(
    client: FlaskClient, consumer: LocalAccount, other: LocalAccount
) -> None:
    body = _decrypt_body(other, "2")
    body["decrypterAddress"] = consumer.address
    reply = client.post("/api/services/decrypt", json=body)
    assert reply.status_code == 400
    assert "signature" in reply.json["errors"]
    assert stored_nonce(client, consumer.address) == "1"


def test_decrypt_other_chain_is_400(client: FlaskClient, consumer: LocalAccount) -> None:
    body = _decrypt_body(consumer, "2", chainId=1)
    reply = client.post("/api/services/decrypt", json=body)
    assert reply.status_code == 400 and reply.json == {
        "error": "Unsupported chain ID 1: this provider serves 8996"
    }


@pytest.mark.parametrize(
    "module", ["provider.params", "provider.logs", "provider.crypto", "provider.routes.results"]
)
def test_module_doctests(module: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0
