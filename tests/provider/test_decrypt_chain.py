"""POST /api/services/decrypt against real Ocean V4 contracts on ganache (integration)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from flask import Flask
from flask.testing import FlaskClient
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import publish
from operator_engine.backends.fake import FakeBackend
from provider.app import create_app
from provider.crypto import public_key_hex
from provider.request_auth import decrypt_text
from provider.signatures import sign_text
from tests.provider.core_support import make_settings
from tidewater.engine_config import build_engine

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
        environments_file=None,  # the built-in env: its fee token is the chain's Ocean
    )
    engine = build_engine(settings, backend=FakeBackend())
    return create_app(settings, engine=engine, web3=w3)


@dataclass
class Decrypt:
    """Publishes encrypted DDOs and asks the provider app to decrypt them."""

    client: FlaskClient
    w3: Web3
    publisher: LocalAccount
    deployed: dict[str, Any]
    provider_address: str
    provider_key: str

    def publish(self, *, state: int = 0) -> tuple[str, str]:
        """A DDO encrypted for the provider and compressed, set on a new NFT: (NFT, tx)."""
        token = publish.create_data_nft_with_datatoken(
            self.w3, self.publisher, self.deployed, name="Secret", symbol="SEC"
        )
        receipt = publish.set_metadata(
            self.w3,
            self.publisher,
            token.nft_address,
            {**DDO, "nftAddress": token.nft_address},
            encrypt_for_public_key=public_key_hex(self.provider_key),
            compress=True,
            state=state,
        )
        return token.nft_address, HexBytes(receipt["transactionHash"]).to_0x_hex()

    def body(
        self, nft: str, tx: str, nonce: str, *, signer: LocalAccount | None = None
    ) -> dict[str, Any]:
        """A decrypt request signed by ``signer`` (default: the provider itself)."""
        key = "0x" + bytes(signer.key).hex() if signer else self.provider_key
        address = signer.address if signer else self.provider_address
        chain_id = self.w3.eth.chain_id
        return {
            "decrypterAddress": address,
            "chainId": chain_id,
            "transactionId": tx,
            "dataNftAddress": nft,
            "nonce": nonce,
            "signature": sign_text(key, decrypt_text(tx, address, chain_id, nonce)),
        }

    def post(self, body: dict[str, Any]) -> Any:
        return self.client.post("/api/services/decrypt", json=body)


@pytest.fixture
def decrypt(
    chain_app: Flask,
    w3: Web3,
    publisher_account: LocalAccount,
    deployed: dict[str, Any],
    provider_account: LocalAccount,
    provider_private_key: str,
) -> Decrypt:
    return Decrypt(
        client=chain_app.test_client(),
        w3=w3,
        publisher=publisher_account,
        deployed=deployed,
        provider_address=provider_account.address,
        provider_key=provider_private_key,
    )


def test_provider_decrypts_an_encrypted_compressed_ddo(
    decrypt: Decrypt, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    nft, tx = decrypt.publish()
    body = decrypt.body(nft, tx, "1700000000001")
    reply = decrypt.post(body)
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.mimetype == "text/plain"
    assert json.loads(reply.data)["metadata"]["name"] == "secret dataset"
    assert decrypt.post(body).status_code == 400  # replay
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret dataset" not in logged and body["signature"][2:40] not in logged


def test_other_decrypters_are_403(decrypt: Decrypt, consumer_account: LocalAccount) -> None:
    nft, tx = decrypt.publish()
    reply = decrypt.post(decrypt.body(nft, tx, "5", signer=consumer_account))
    assert reply.status_code == 403 and reply.json == {"error": "Decrypter not authorized"}


def test_revoked_asset_is_403(decrypt: Decrypt) -> None:
    nft, tx = decrypt.publish(state=3)
    reply = decrypt.post(decrypt.body(nft, tx, "1700000000002"))
    assert reply.status_code == 403 and reply.json == {"error": "Asset revoked"}


def test_nft_not_from_the_factory_and_unknown_tx_are_400(
    decrypt: Decrypt, publisher_account: LocalAccount
) -> None:
    nft, _tx = decrypt.publish()
    stranger = decrypt.body(publisher_account.address, "0x" + "11" * 32, "1700000000003")
    reply = decrypt.post(stranger)
    assert reply.status_code == 400, reply.json
    unknown = decrypt.body(nft, "0x" + "22" * 32, "1700000000004")
    reply = decrypt.post(unknown)
    assert reply.status_code == 400 and reply.json == {"error": "Failed to process transaction id."}


def test_addresses_in_authorized_decrypters_may_decrypt(
    tmp_path: Path,
    w3: Web3,
    address_file: Path,
    provider_private_key: str,
    decrypt: Decrypt,
    consumer_account: LocalAccount,
    other_account: LocalAccount,
) -> None:
    (tmp_path / "listed").mkdir()
    settings = make_settings(
        tmp_path / "listed",
        provider_private_key=provider_private_key,
        address_file=address_file,
        network_url=w3.provider.endpoint_uri,  # type: ignore[attr-defined]
        environments_file=None,  # the built-in env: its fee token is the chain's Ocean
        authorized_decrypters=(consumer_account.address.lower(),),
    )
    app = create_app(settings, engine=build_engine(settings, backend=FakeBackend()), web3=w3)
    listed = Decrypt(**{**decrypt.__dict__, "client": app.test_client()})
    nft, tx = listed.publish()
    reply = listed.post(listed.body(nft, tx, "7", signer=consumer_account))
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert json.loads(reply.data)["metadata"]["name"] == "secret dataset"
    refused = listed.post(listed.body(nft, tx, "8", signer=other_account))
    assert refused.status_code == 403 and refused.json == {"error": "Decrypter not authorized"}


@pytest.mark.parametrize(
    ("case", "answer"),
    [
        ("encrypted for another key", "Failed to decrypt."),
        ("flagged compressed, not lzma", "Failed to decompress"),
        ("hash of another document", "Checksum doesn't match."),
    ],
)
def test_documents_sent_in_the_body_that_cannot_be_trusted_are_400(
    decrypt: Decrypt, other_account: LocalAccount, case: str, answer: str
) -> None:
    nft, _tx = decrypt.publish()
    plain = json.dumps(DDO).encode()
    data, flags, digest = plain, 0, hashlib.sha256(plain).digest()
    if case == "encrypted for another key":
        data, flags = publish.encrypt_for(other_account._key_obj.public_key.to_hex(), plain), 2
    elif case == "flagged compressed, not lzma":
        flags = 1
    else:
        digest = hashlib.sha256(b"another document").digest()
    chain_id, nonce = decrypt.w3.eth.chain_id, "2"
    body = {
        "decrypterAddress": decrypt.provider_address,
        "chainId": chain_id,
        "dataNftAddress": nft,
        "encryptedDocument": "0x" + data.hex(),
        "flags": flags,
        "documentHash": "0x" + digest.hex(),
        "nonce": nonce,
        "signature": sign_text(
            decrypt.provider_key, decrypt_text(nft, decrypt.provider_address, chain_id, nonce)
        ),
    }
    reply = decrypt.post(body)
    assert reply.status_code == 400 and reply.json == {"error": answer}, reply.json
