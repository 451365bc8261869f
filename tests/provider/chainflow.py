"""Helpers driving the paid compute flow as a client would: HTTP to the provider, a wallet,
and the real Ocean contracts on ganache (publishing goes through contracts_abi.publish)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from flask.testing import FlaskClient
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import publish
from provider.request_auth import Layout, compute_start_text, result_text
from provider.signatures import sign_text
from tests.fixtures.publishing import ddo_fields
from tidewater import stack
from tidewater.demo_roles import Asset as Published

ONE = 10**18


class FileServer:
    """Files served by ``tidewater.stack.file_server`` on 127.0.0.1; ``add`` works while it runs."""

    def __init__(self, base_url: str, files: dict[str, bytes]) -> None:
        self.base_url = base_url
        self.files = files

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.base_url + path


@contextmanager
def file_server() -> Iterator[FileServer]:
    files: dict[str, bytes] = {}  # stack's server looks each request up in this very dict
    with stack.file_server(files) as base_url:
        yield FileServer(base_url, files)


class HttpResponse:
    """A ``requests`` response read through the FlaskClient response calls Flow uses."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.data = response.content

    def get_json(self) -> Any:
        return self.response.json()

    def get_data(self, as_text: bool = False) -> Any:
        return self.response.text if as_text else self.response.content


class HttpClient:
    """The FlaskClient calls Flow makes, sent over HTTP to a running ``tidewater serve``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def open(self, method: str, path: str, **kwargs: Any) -> HttpResponse:
        params = kwargs.pop("query_string", None)
        response = self.session.request(
            method, self.base_url + path, params=params, timeout=60, **kwargs
        )
        return HttpResponse(response)

    def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.open("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.open("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> HttpResponse:
        return self.open("DELETE", path, **kwargs)


@dataclass
class Flow:
    """A provider (an app's test client, or HTTP to ``tidewater serve``) on one chain, plus
    the wallets that use it. ``engine`` is None when the server runs its own."""

    client: FlaskClient | HttpClient
    w3: Web3
    addresses: dict[str, Any]
    publisher: LocalAccount
    consumer: LocalAccount
    provider_address: str
    engine: Any
    files: FileServer
    env_consumer: str
    chain_id: int = 8996
    provider_key: str = ""
    published: dict[str, Published] = field(default_factory=dict)

    # -- provider HTTP ---------------------------------------------------------------------------
    def encrypt(self, payload: Mapping[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":")).encode()
        response = self.client.post(
            f"/api/services/encrypt?chainId={self.chain_id}",
            data=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_data(as_text=True)

    def next_nonce(self, address: str) -> int:
        response = self.client.get(f"/api/services/nonce?userAddress={address}")
        assert response.status_code == 200, response.get_json()
        return int(float(response.get_json()["nonce"])) + 1

    def signed(self, account: LocalAccount, layout: Layout) -> tuple[int, str]:
        """The next nonce and ``account``'s signature over ``layout(nonce)``."""
        nonce = self.next_nonce(account.address)
        return nonce, sign_text(account.key.hex(), layout(str(nonce)))

    def initialize(
        self,
        datasets: Sequence[Mapping[str, Any]],
        algorithm: Mapping[str, Any],
        env: str,
        valid_until: int,
        consumer: str | None = None,
    ) -> Any:
        return self.client.post(
            "/api/services/initializeCompute",
            json={
                "datasets": list(datasets),
                "algorithm": dict(algorithm),
                "compute": {"env": env, "validUntil": valid_until},
                "consumerAddress": consumer or self.consumer.address,
            },
        )

    def start(
        self,
        dataset: Mapping[str, Any],
        algorithm: Mapping[str, Any],
        env: str,
        *,
        account: LocalAccount | None = None,
        **extra: Any,
    ) -> Any:
        who = account or self.consumer
        did = str(dataset.get("documentId", ""))
        nonce, signature = self.signed(who, partial(compute_start_text, who.address, did))
        body = {
            "consumerAddress": who.address,
            "signature": signature,
            "nonce": nonce,
            "environment": env,
            "dataset": dict(dataset),
            "algorithm": dict(algorithm),
            **extra,
        }
        return self.client.post("/api/services/compute", json=body)

    def status(self, job_id: str, account: LocalAccount | None = None) -> dict[str, Any]:
        who = account or self.consumer
        response = self.client.get(
            f"/api/services/compute?consumerAddress={who.address}&jobId={job_id}"
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        jobs = response.get_json()
        assert len(jobs) == 1
        return jobs[0]

    def wait_finished(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.engine is not None:
                self.engine.run_until_idle()
            job = self.status(job_id)
            if job["dateFinished"] is not None:
                return job
            assert time.monotonic() < deadline, f"job {job_id} did not finish: {job}"
            time.sleep(0.2)

    def explain(self, job: Mapping[str, Any]) -> str:
        """The job and its log results, for assertion messages."""
        logs = [
            self.result(job["jobId"], r["index"]).get_data(as_text=True)
            for r in job.get("results", [])
            if r["type"] != "output"
        ]
        return json.dumps(job) + "\n" + "\n".join(logs)

    def result(self, job_id: str, index: int, headers: Mapping[str, str] | None = None) -> Any:
        who = self.consumer
        nonce, signature = self.signed(who, partial(result_text, who.address, job_id, index))
        return self.client.get(
            "/api/services/computeResult",
            query_string={
                "consumerAddress": who.address,
                "jobId": job_id,
                "index": index,
                "nonce": nonce,
                "signature": signature,
            },
            headers=dict(headers or {}),
        )

    # -- chain ---------------------------------------------------------------------------------
    def publish(
        self,
        kind: str,
        files: Sequence[Mapping[str, Any]],
        *,
        container: Mapping[str, str] | None = None,
        state: int = 0,
        compress: bool = False,
        encrypt_ddo: bool = False,
        files_override: str | None = None,
        mutate: Any = None,
        **ddo_kwargs: Any,
    ) -> Published:
        """Publish a dataset or algorithm (files encrypted via /api/services/encrypt)."""
        token = publish.create_data_nft_with_datatoken(
            self.w3, self.publisher, self.addresses, name=f"tw-{kind}", symbol="TW"
        )
        payload = publish.files_payload(token.datatoken_address, token.nft_address, files)
        encrypted = files_override or self.encrypt(payload)
        common = ddo_fields(
            token, chain_id=self.chain_id, owner=self.publisher.address, files=encrypted
        )
        if kind == "algorithm":
            ddo = publish.algorithm_ddo(container=dict(container or {}), **common, **ddo_kwargs)
        else:
            ddo = publish.dataset_ddo(**common, **ddo_kwargs)
        if mutate is not None:
            mutate(ddo)
        public_key = None
        if encrypt_ddo:
            from provider.crypto import public_key_hex

            public_key = public_key_hex(self.provider_key)
        publish.set_metadata(
            self.w3,
            self.publisher,
            token.nft_address,
            ddo,
            encrypt_for_public_key=public_key,
            compress=compress,
            state=state,
        )
        publish.mint(
            self.w3, self.publisher, token.datatoken_address, self.consumer.address, 1000 * ONE
        )
        return Published.published(token, ddo)

    def order(
        self,
        asset: Published,
        provider_fee: Mapping[str, Any],
        *,
        payer: LocalAccount | None = None,
        service_index: int = 0,
    ) -> str:
        receipt = publish.start_order(
            self.w3,
            payer or self.consumer,
            asset.datatoken,
            consumer_address=self.env_consumer,
            service_index=service_index,
            provider_fee=provider_fee,
        )
        return HexBytes(receipt["transactionHash"]).to_0x_hex()

    def item(self, asset: Published, tx: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"documentId": asset.did, "serviceId": asset.service_id, **extra}
        if tx is not None:
            body["transferTxId"] = tx
        return body

    def ordered(
        self, dataset: Published, algorithm: Published | None, env: str, valid_for: int = 3600
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """initializeCompute + startOrder for both; the items to send to compute start."""
        valid_until = int(time.time()) + valid_for
        algo_item = self.item(algorithm) if algorithm else {"meta": {}}
        response = self.initialize([self.item(dataset)], algo_item, env, valid_until)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        ds_tx = self.order(dataset, body["datasets"][0]["providerFee"])
        algo: dict[str, Any] = {}
        if algorithm is not None:
            algo_tx = self.order(algorithm, body["algorithm"]["providerFee"])
            algo = self.item(algorithm, algo_tx)
        return self.item(dataset, ds_tx), algo


ALGORITHM = b"""import json, os, pathlib
dids = json.loads(os.environ["DIDS"])
out = pathlib.Path(os.environ["OUTPUTS"])
for did in dids:
    for path in sorted(pathlib.Path(os.environ["INPUTS"], did).iterdir()):
        data = path.read_bytes()
        (out / f"{did[:8]}-{path.name}.txt").write_bytes(data.upper())
(out / "summary.json").write_text(json.dumps({"inputs": len(dids)}))
print("done")
"""


def container_for(docker_client: Any, image: str) -> dict[str, str]:
    """The DDO container section running ``image`` (a local ``name:tag``) with python3."""
    name, tag = image.rsplit(":", 1)
    return {
        "entrypoint": "python3 $ALGO",
        "image": name,
        "tag": tag,
        "checksum": docker_client.images.get(image).id,
    }


@contextmanager
def open_flow(
    tmp: Path,
    *,
    ganache_url: str,
    w3: Web3,
    deployed: Mapping[str, Any],
    address_file: Path,
    provider_key: str,
    publisher: LocalAccount,
    consumer: LocalAccount,
    deployer: LocalAccount,
    **settings_changes: Any,
) -> Iterator[Flow]:
    """A provider app (free env ``free``, paid env ``paid`` in Ocean) on the session chain;
    ``settings_changes`` override its Settings fields."""
    from eth_account import Account

    from provider.app import create_app
    from tidewater.settings import Settings

    provider_address = Account.from_key(provider_key).address
    envs = [
        {
            "id": "free",
            "consumerAddress": provider_address,
            "maxJobDuration": 60,
            "maxJobs": 2,
            "ramGB": 2,
        },
        {
            "id": "paid",
            "consumerAddress": provider_address,
            "maxJobDuration": 60,
            "maxJobs": 2,
            "ramGB": 2,
            "priceMin": 1,
            "feeToken": deployed["Ocean"],
        },
    ]
    (tmp / "envs.json").write_text(json.dumps(envs))
    settings = Settings(
        network_url=ganache_url,
        provider_private_key=provider_key,
        data_dir=tmp,
        address_file=address_file,
        db_url=f"sqlite:///{tmp / 'tidewater.db'}",
        allow_non_public_ip=True,
        environments_file=tmp / "envs.json",
        workers=1,
        pull_images=False,
    ).with_(**settings_changes)
    publish.transfer(w3, deployer, deployed["Ocean"], consumer.address, 1000 * ONE)
    app = create_app(settings, web3=w3)
    svc = app.extensions["tidewater"]
    with file_server() as files:
        try:
            yield Flow(
                client=app.test_client(),
                w3=w3,
                addresses=dict(deployed),
                publisher=publisher,
                consumer=consumer,
                provider_address=provider_address,
                engine=svc.engine,
                files=files,
                env_consumer=provider_address,
                chain_id=w3.eth.chain_id,
                provider_key=provider_key,
            )
        finally:
            svc.engine.shutdown()
