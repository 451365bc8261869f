"""POST /api/services/decrypt against real Ocean V4 contracts on ganache (integration)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from flask import Flask
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import publish
from operator_engine.api import Engine
from operator_engine.runner import FakeRunner
from provider.app import create_app
from provider.crypto import public_key_hex
from provider.signatures import sign_text
from tests.provider.core_support import make_settings

pytestmark = pytest.mark.integration
DDO = {
    "@context": ["https://w3id.org/did/v1"],
    "version": "4.1.0",
    "metadata": {"type": "dataset", "name": "secret dataset"},
    "services": [],
}


@pytest.fixture
def chain_app(tmp_path: Path, w3: Web3, address_file: Path, provider_private_key: str) -> Flask:
    settings = make_settings(
        tmp_path,
        provider_private_key=provider_private_key,
        address_file=address_file,
        network_url=w3.provider.endpoint_uri,  # type: ignore[attr-defined]
    )
    engine = Engine.from_settings(settings, runner=FakeRunner())
    return create_app(settings, engine=engine, web3=w3)


def _publish(
    w3: Web3, publisher: LocalAccount, deployed: dict[str, Any], key: str, *, state: int = 0
) -> tuple[str, str]:
    token = publish.create_data_nft_with_datatoken(
        w3, publisher, deployed, name="Secret", symbol="SEC"
    )
    receipt = publish.set_metadata(
        w3,
        publisher,
        token.nft_address,
        {**DDO, "nftAddress": token.nft_address},
        encrypt_for_public_key=public_key_hex(key),
        compress=True,
        state=state,
    )
    return token.nft_address, HexBytes(receipt["transactionHash"]).to_0x_hex()


def _body(key: str, address: str, nft: str, tx: str, chain_id: int, nonce: str) -> dict:
    return {
        "decrypterAddress": address,
        "chainId": chain_id,
        "transactionId": tx,
        "dataNftAddress": nft,
        "nonce": nonce,
        "signature": sign_text(key, tx + address + str(chain_id) + nonce),
    }


def test_provider_decrypts_an_encrypted_compressed_ddo(
    chain_app: Flask,
    w3: Web3,
    publisher_account: LocalAccount,
    deployed: dict[str, Any],
    provider_account: LocalAccount,
    provider_private_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    nft, tx = _publish(w3, publisher_account, deployed, provider_private_key)
    client = chain_app.test_client()
    body = _body(
        provider_private_key, provider_account.address, nft, tx, w3.eth.chain_id, "1700000000001"
    )
    reply = client.post("/api/services/decrypt", json=body)
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.mimetype == "text/plain"
    assert json.loads(reply.data)["metadata"]["name"] == "secret dataset"
    assert client.post("/api/services/decrypt", json=body).status_code == 400  # replay
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret dataset" not in logged and body["signature"][2:40] not in logged


def test_other_decrypters_are_403(
    chain_app: Flask,
    w3: Web3,
    publisher_account: LocalAccount,
    deployed: dict[str, Any],
    consumer_account: LocalAccount,
    provider_private_key: str,
) -> None:
    nft, tx = _publish(w3, publisher_account, deployed, provider_private_key)
    key = "0x" + bytes(consumer_account.key).hex()
    body = _body(key, consumer_account.address, nft, tx, w3.eth.chain_id, "5")
    reply = chain_app.test_client().post("/api/services/decrypt", json=body)
    assert reply.status_code == 403 and reply.json == {"error": "Decrypter not authorized"}


def test_revoked_asset_is_403(
    chain_app: Flask,
    w3: Web3,
    publisher_account: LocalAccount,
    deployed: dict[str, Any],
    provider_account: LocalAccount,
    provider_private_key: str,
) -> None:
    nft, tx = _publish(w3, publisher_account, deployed, provider_private_key, state=3)
    body = _body(
        provider_private_key, provider_account.address, nft, tx, w3.eth.chain_id, "1700000000002"
    )
    reply = chain_app.test_client().post("/api/services/decrypt", json=body)
    assert reply.status_code == 403 and reply.json == {"error": "Asset revoked"}


def test_nft_not_from_the_factory_and_unknown_tx_are_400(
    chain_app: Flask,
    w3: Web3,
    publisher_account: LocalAccount,
    deployed: dict[str, Any],
    provider_account: LocalAccount,
    provider_private_key: str,
) -> None:
    nft, _tx = _publish(w3, publisher_account, deployed, provider_private_key)
    client = chain_app.test_client()
    chain_id = w3.eth.chain_id
    stranger = _body(
        provider_private_key,
        provider_account.address,
        publisher_account.address,
        "0x" + "11" * 32,
        chain_id,
        "1700000000003",
    )
    reply = client.post("/api/services/decrypt", json=stranger)
    assert reply.status_code == 400, reply.json
    unknown = _body(
        provider_private_key,
        provider_account.address,
        nft,
        "0x" + "22" * 32,
        chain_id,
        "1700000000004",
    )
    reply = client.post("/api/services/decrypt", json=unknown)
    assert reply.status_code == 400 and reply.json == {"error": "Failed to process transaction id."}
