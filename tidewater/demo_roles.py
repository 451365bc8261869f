"""The two roles ``tidewater demo`` plays, each through HTTP and a wallet as an Ocean client does.

The publisher encrypts file objects and the dataset DDO through the provider's encrypt endpoint,
publishes an algorithm and a dataset that trusts it, and mints datatokens to the consumer. The
consumer asks ``initializeCompute`` for provider fees, orders both assets with them, starts the
job, follows it and downloads and verifies every result.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import publish
from tidewater.client import ProviderClient

ONE = 10**18


@dataclass(frozen=True)
class Asset:
    """A published asset as a consumer refers to it."""

    did: str
    nft_address: str
    datatoken: str
    service_id: str
    ddo: dict[str, Any]

    @classmethod
    def published(cls, token: publish.PublishedToken, ddo: dict[str, Any]) -> Asset:
        """The asset ``token`` carries once ``ddo`` is set on it (its first service is used)."""
        return cls(
            did=token.did,
            nft_address=token.nft_address,
            datatoken=token.datatoken_address,
            service_id=ddo["services"][0]["id"],
            ddo=ddo,
        )

    def item(self, transfer_tx: str | None = None) -> dict[str, Any]:
        """The ``{documentId, serviceId[, transferTxId]}`` object compute calls take."""
        body: dict[str, Any] = {"documentId": self.did, "serviceId": self.service_id}
        if transfer_tx is not None:
            body["transferTxId"] = transfer_tx
        return body


@dataclass(frozen=True)
class Download:
    """One downloaded result file, checked against the job's result list."""

    path: Path
    size: int
    sha256: str
    kind: str


class VerificationError(RuntimeError):
    """A downloaded result does not match the size or sha256 the provider listed."""


class Publisher:
    """Publishes assets whose files the provider at ``client`` can decrypt."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        addresses: Mapping[str, Any],
        client: ProviderClient,
        provider_address: str,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.addresses = addresses
        self.client = client
        self.provider_address = provider_address
        self.chain_id = int(w3.eth.chain_id)

    def _encrypt(self, data: bytes) -> bytes:
        return bytes(HexBytes(self.client.encrypt(data, self.chain_id)))

    def publish(
        self,
        kind: str,
        name: str,
        url: str,
        *,
        container: Mapping[str, str] | None = None,
        trusted: Sequence[Mapping[str, str]] = (),
    ) -> Asset:
        """Create the data NFT + datatoken and store an encrypted, compressed DDO for it."""
        token = publish.create_data_nft_with_datatoken(
            self.w3, self.account, self.addresses, name=name, symbol="TWD"
        )
        files = [{"type": "url", "url": url, "method": "GET"}]
        payload = publish.files_payload(token.datatoken_address, token.nft_address, files)
        encrypted_files = "0x" + self._encrypt(publish.ddo_bytes(payload)).hex()
        common: dict[str, Any] = {
            "nft_address": token.nft_address,
            "chain_id": self.chain_id,
            "owner": self.account.address,
            "datatoken_address": token.datatoken_address,
            "files": encrypted_files,
            "service_endpoint": self.client.base_url,
            "name": name,
        }
        if kind == "algorithm":
            ddo = publish.algorithm_ddo(container=dict(container or {}), **common)
        else:
            ddo = publish.dataset_ddo(
                trusted_algorithms=trusted,
                trusted_algorithm_publishers=[self.account.address],
                **common,
            )
        publish.set_metadata(
            self.w3,
            self.account,
            token.nft_address,
            ddo,
            compress=True,
            encryptor=self._encrypt,
            decryptor_url=self.client.base_url,
            decryptor_address=self.provider_address,
        )
        return Asset.published(token, ddo)

    def mint_to(self, asset: Asset, holder: str, amount: int = 1) -> None:
        publish.mint(self.w3, self.account, asset.datatoken, holder, amount * ONE)


class Consumer:
    """Pays for and runs one compute job, then fetches its results."""

    def __init__(self, w3: Web3, account: LocalAccount, client: ProviderClient) -> None:
        self.w3 = w3
        self.account = account
        self.client = client

    def order(
        self, dataset: Asset, algorithm: Asset, env: Mapping[str, Any], valid_for: int
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """initializeCompute, then ``startOrder`` on both datatokens with the returned fees.

        Returns the dataset and algorithm items (with ``transferTxId``) and the fee quote."""
        quote = self.client.initialize_compute(
            [dataset.item()],
            algorithm.item(),
            env["id"],
            int(time.time()) + valid_for,
            self.account.address,
        )
        txs = []
        for asset, fee in (
            (dataset, quote["datasets"][0]["providerFee"]),
            (algorithm, quote["algorithm"]["providerFee"]),
        ):
            receipt = publish.start_order(
                self.w3,
                self.account,
                asset.datatoken,
                consumer_address=env["consumerAddress"],
                service_index=0,
                provider_fee=fee,
            )
            txs.append(HexBytes(receipt["transactionHash"]).to_0x_hex())
        return dataset.item(txs[0]), algorithm.item(txs[1]), quote

    def start(
        self, dataset: dict[str, Any], algorithm: dict[str, Any], env_id: str
    ) -> dict[str, Any]:
        return self.client.start_compute(self.account, dataset, algorithm, env_id)

    def follow(
        self, job_id: str, on_status: Callable[[dict[str, Any]], None], timeout: float
    ) -> dict[str, Any]:
        return self.client.wait_for_job(
            self.account.address, job_id, timeout=timeout, interval=0.25, on_status=on_status
        )

    def download_all(self, job: Mapping[str, Any], dest: Path) -> list[Download]:
        """Download every result of ``job`` into ``dest``; check each size and sha256."""
        downloads = []
        for result in job.get("results", []):
            path = self.client.download_result(self.account, job["jobId"], result["index"], dest)
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if len(data) != int(result["filesize"]) or digest != result.get("sha256"):
                raise VerificationError(
                    f"{path.name}: got {len(data)} bytes sha256 {digest}, the provider listed "
                    f"{result['filesize']} bytes sha256 {result.get('sha256')}"
                )
            downloads.append(Download(path, len(data), digest, str(result["type"])))
        return downloads
