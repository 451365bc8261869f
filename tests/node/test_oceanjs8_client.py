"""ocean.js 8.6.2 (npm, Node 20), driven as its own examples drive it, against ``tidewater
serve`` on ganache with the real Ocean contracts and real Docker: a free job and a paid job
through ``/node``, each to status 70 with every result downloaded (and one resumed with Range).

The client lives in ``tests/clients/oceanjs8`` (``make bootstrap`` runs ``npm ci`` there); the
flow script is ``tests/clients/oceanjs8/c2d_v2_flow.mjs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import escrow, publish
from contracts_abi.escrow import EscrowChain
from datastore.engine import make_engine
from datastore.escrow_ledger import EscrowLedger
from provider.request_auth import command_text
from provider.signatures import sign_command
from tests.fixtures.publishing import ddo_fields
from tests.fixtures.requirements import unavailable
from tidewater import stack

pytestmark = pytest.mark.integration

CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "oceanjs8"
ONE = 10**18
DATA = b"city,temp\noslo,3\nlima,19\n"
ALGORITHM = b"""import json, os, pathlib, sys, time
inputs = [p for p in pathlib.Path(os.environ["INPUTS"]).rglob("*") if p.is_file()]
for i, path in enumerate(inputs):
    print(f"reading {path.name}", flush=True)
    time.sleep(0.3)
rows = sum(len(p.read_bytes().splitlines()) for p in inputs)
pathlib.Path(os.environ["OUTPUTS"], "rows.json").write_text(json.dumps({"rows": rows}))
print("done", flush=True)
"""


def _node_client() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node (Node 20) is not on PATH")
    if not (CLIENT_DIR / "node_modules" / "@oceanprotocol" / "lib").is_dir():
        unavailable(f"{CLIENT_DIR}/node_modules is missing: run `make bootstrap`")
    return node


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    ganache: Any,
    w3: Web3,
    deployed: dict[str, Any],
    address_file: Path,
    provider_private_key: str,
    provider_account: LocalAccount,
    python_image: str,
) -> Iterator[dict[str, Any]]:
    """``tidewater serve`` with one environment: paid in Ocean per resource, with a free tier."""
    tmp = tmp_path_factory.mktemp("oceanjs8")
    envs = [
        {
            "id": "c2d",
            "description": "priced per resource, with a free tier",
            "cpuNumber": 2,
            "ramGB": 2,
            "diskGB": 2,
            "maxJobs": 2,
            "maxJobDuration": 300,
            "minJobDuration": 60,
            "feeToken": deployed["Ocean"],
            "consumerAddress": provider_account.address,
            "prices": {"cpu": 0.5, "ram": 0.25, "disk": 0.125},
            "free": {"maxJobDuration": 60, "maxJobs": 1, "ramGB": 1, "diskGB": 1},
        }
    ]
    (tmp / "envs.json").write_text(json.dumps(envs))
    env = {
        "NETWORK_URL": ganache.url,
        "PROVIDER_PRIVATE_KEY": provider_private_key,
        "ADDRESS_FILE": str(address_file),
        "TIDEWATER_DATA_DIR": str(tmp / "data"),
        "TIDEWATER_ENVIRONMENTS": str(tmp / "envs.json"),
        "ALLOW_NON_PUBLIC_IP": "true",
        "TIDEWATER_PULL_IMAGES": "false",
        "TIDEWATER_WORKERS": "1",
    }
    with stack.provider_server(env, log_path=tmp / "serve.log") as url:
        yield {
            "url": url,
            "log": tmp / "serve.log",
            "db_url": f"sqlite:///{tmp / 'data' / 'tidewater.db'}",
        }


def _publish(
    w3: Web3,
    url: str,
    publisher: LocalAccount,
    consumer: LocalAccount,
    deployed: dict[str, Any],
    files_url: str,
    python_image: str,
    docker_client: Any,
) -> dict[str, Any]:
    chain_id = w3.eth.chain_id

    def encrypted(token: publish.PublishedToken, file_url: str) -> str:
        payload = publish.files_payload(
            token.datatoken_address, token.nft_address, [{"type": "url", "url": file_url}]
        )
        reply = requests.post(
            f"{url}/api/services/encrypt?chainId={chain_id}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
        return reply.text

    name, tag = python_image.rsplit(":", 1)
    container = {
        "entrypoint": "python3 $ALGO",
        "image": name,
        "tag": tag,
        "checksum": docker_client.images.get(python_image).id,
    }
    algo_token = publish.create_data_nft_with_datatoken(
        w3, publisher, deployed, name="oceanjs8-algo", symbol="OJ8A"
    )
    algo_ddo = publish.algorithm_ddo(
        container=container,
        **ddo_fields(
            algo_token,
            chain_id=chain_id,
            owner=publisher.address,
            files=encrypted(algo_token, files_url + "/algo.py"),
        ),
    )
    data_token = publish.create_data_nft_with_datatoken(
        w3, publisher, deployed, name="oceanjs8-data", symbol="OJ8D"
    )
    data_ddo = publish.dataset_ddo(
        trusted_algorithm_publishers=[publisher.address],
        timeout=3600,
        **ddo_fields(
            data_token,
            chain_id=chain_id,
            owner=publisher.address,
            files=encrypted(data_token, files_url + "/data.csv"),
        ),
    )
    for token, ddo in ((algo_token, algo_ddo), (data_token, data_ddo)):
        publish.set_metadata(w3, publisher, token.nft_address, ddo)
        publish.mint(w3, publisher, token.datatoken_address, consumer.address, 10 * ONE)
    return {
        "dataset": {
            "did": data_ddo["id"],
            "serviceId": data_ddo["services"][0]["id"],
            "datatoken": data_token.datatoken_address,
        },
        "algorithm": {
            "did": algo_ddo["id"],
            "serviceId": algo_ddo["services"][0]["id"],
            "datatoken": algo_token.datatoken_address,
        },
    }


def run_client(flow_input: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    node = _node_client()
    env = {k: v for k, v in os.environ.items() if k != "INCENTIVE_BACKEND_URL"}
    env["FLOW_INPUT"] = json.dumps(flow_input)
    done = subprocess.run(
        [node, str(CLIENT_DIR / "c2d_v2_flow.mjs")],
        cwd=CLIENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (log_dir / "client.log").write_text(done.stderr)
    assert done.returncode == 0, f"ocean.js 8.6.2 flow failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _flow(
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    publisher: LocalAccount,
    consumer: LocalAccount,
    python_image: str,
    docker_client: Any,
    log_dir: Path,
    flows: list[str],
) -> dict[str, Any]:
    """Publish a dataset and an algorithm, then run the ocean.js 8.6.2 ``flows`` over them."""
    files = {"/data.csv": DATA, "/algo.py": ALGORITHM}
    with stack.file_server(files) as files_url:
        assets = _publish(
            w3, served["url"], publisher, consumer, deployed, files_url, python_image, docker_client
        )
        return run_client(
            {
                "nodeUri": served["url"] + "/node",
                "rpcUrl": str(w3.provider.endpoint_uri),  # type: ignore[attr-defined]
                "chainId": w3.eth.chain_id,
                "consumerKey": "0x" + bytes(consumer.key).hex(),
                "paymentToken": deployed["Ocean"],
                "flows": flows,
                "datasetDid": assets["dataset"]["did"],
                "algorithmDid": assets["algorithm"]["did"],
            },
            log_dir,
        )


def _finished(url: str, owner: str, job: dict[str, Any]) -> dict[str, Any]:
    """``job`` polled through ``GET compute`` until it has ended (bounded)."""
    deadline = time.monotonic() + 120
    while job["dateFinished"] is None:
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
        (job,) = requests.get(
            f"{url}/compute", params={"consumerAddress": owner, "jobId": job["jobId"]}, timeout=10
        ).json()
    return job


def _check_downloads(flow: dict[str, Any]) -> None:
    job = flow["job"]
    assert job["status"] == 70, json.dumps(job)
    listed = {r["index"]: r for r in job["results"]}
    assert {r["index"] for r in flow["results"]} == set(listed)
    for got in flow["results"]:
        assert got["sha256"] == listed[got["index"]]["sha256"]
        assert got["size"] == listed[got["index"]]["filesize"]
    names = {r["filename"] for r in job["results"]}
    assert "rows.json" in names and "algorithm.log" in names
    resumed = flow["resumedFrom1"]
    assert resumed["size"] == listed[resumed["index"]]["filesize"] - 1


def test_free_job_through_oceanjs8(
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    python_image: str,
    docker_client: Any,
    tmp_path: Path,
) -> None:
    out = _flow(
        served,
        w3,
        deployed,
        publisher_account,
        consumer_account,
        python_image,
        docker_client,
        tmp_path,
        ["free"],
    )
    (env,) = out["environments"]
    assert env["id"] == "c2d" and env["free"]["maxJobs"] == 1
    free = out["free"]
    assert free["statuses"][-1] == 70
    assert free["job"]["environment"] == "c2d" and free["job"]["isFree"] is True
    _check_downloads(free)
    assert free["streamedLog"] is not None and "done" in free["streamedLog"]
    # generateAuthToken / invalidateAuthToken of the client: the token stops (a finished job:
    # no change), then is refused once invalidated
    assert free["tokens"]["stoppedWithToken"] == 70
    assert "invalidated" in free["tokens"]["refusedAfter"]
    expected_rows = len(DATA.splitlines())
    rows = hashlib.sha256(json.dumps({"rows": expected_rows}).encode()).hexdigest()
    (output,) = [r for r in free["results"] if r["filename"] == "rows.json"]
    assert output["sha256"] == rows


@pytest.fixture(scope="module")
def paid_run(
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    deployer_account: LocalAccount,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    python_image: str,
    docker_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """ocean.js 8.6.2's paid flow, run once: escrow deposit and authorization, orders naming
    the environment's consumerAddress, computeStart, status until 70, downloads."""
    publish.transfer(w3, deployer_account, deployed["Ocean"], consumer_account.address, 100 * ONE)
    out = _flow(
        served,
        w3,
        deployed,
        publisher_account,
        consumer_account,
        python_image,
        docker_client,
        tmp_path_factory.mktemp("paid"),
        ["paid"],
    )
    return out["paid"]  # type: ignore[no-any-return]


def test_paid_job_through_oceanjs8_is_locked_before_it_runs(
    paid_run: dict[str, Any],
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    provider_account: LocalAccount,
) -> None:
    payment = paid_run["payment"]
    # 2 jobs share 2 CPUs, 2 GB, 2 GB: 1 CPU * 0.5 + 1 GB * 0.25 + 1 GB * 0.125 per minute, for
    # the 300 s maxJobDuration the client's timestamp is capped to
    assert payment == {
        "escrowAddress": deployed["Escrow"],
        "chainId": w3.eth.chain_id,
        "payee": provider_account.address,
        "token": deployed["Ocean"],
        "amount": str(5 * 875 * 10**15),
        "minLockSeconds": 300 + 3600,
    }
    assert paid_run["statuses"][-1] == 70 and paid_run["job"]["isFree"] is False
    _check_downloads(paid_run)
    record = EscrowLedger(make_engine(served["db_url"])).get(paid_run["jobId"])
    assert record is not None and record.amount == int(payment["amount"])
    assert record.lock_id == escrow.lock_id_for(paid_run["jobId"])
    lock_receipt = w3.eth.get_transaction_receipt(record.lock_tx)
    assert lock_receipt["status"] == 1
    # the lock was mined before the job was queued (status 1 at submission)
    block_time = w3.eth.get_block(lock_receipt["blockNumber"])["timestamp"]
    assert block_time <= int(paid_run["job"]["dateCreated"])


def test_paid_job_through_oceanjs8_is_claimed_at_its_cost(
    paid_run: dict[str, Any],
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    consumer_account: LocalAccount,
    provider_account: LocalAccount,
) -> None:
    record = EscrowLedger(make_engine(served["db_url"])).get(paid_run["jobId"])
    assert record is not None and record.state == "claimed", record
    assert record.claim_tx is not None
    chain = EscrowChain.from_addresses(w3, deployed, provider_account)
    receipt = w3.eth.get_transaction_receipt(record.claim_tx)
    claim = escrow.outcome_of(chain, receipt, paid_run["jobId"])
    assert claim.outcome == "claimed" and claim.amount == record.claimed_amount
    # at least minJobDuration (1 minute) was billed, and never more than the lock
    assert 875 * 10**15 <= claim.amount <= record.amount
    payer = consumer_account.address
    assert escrow.find_lock(chain, paid_run["jobId"], deployed["Ocean"], payer) is None
    # the job object the client read shows the same settlement
    shown = paid_run["job"]["payment"]
    assert shown["lockTx"] == record.lock_tx and shown["claimTx"] == record.claim_tx
    assert shown["cost"] == str(claim.amount) and shown["token"] == deployed["Ocean"]
    # the consumer's escrow funds moved by exactly the claimed cost
    funds = paid_run["escrowFunds"]
    assert int(funds["deposited"]) - int(funds["after"]) == claim.amount


def test_free_jobs_need_orders_and_paid_jobs_need_escrow(
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    other_account: LocalAccount,
    python_image: str,
    docker_client: Any,
) -> None:
    """Without orders a free job is refused (free compute is not free data); with orders but
    no escrow authorization a paid job is refused before anything is locked or queued."""
    with stack.file_server({"/data.csv": DATA, "/algo.py": ALGORITHM}) as files_url:
        _orders_and_escrow(
            served,
            w3,
            deployed,
            publisher_account,
            other_account,
            files_url,
            python_image,
            docker_client,
        )


def _orders_and_escrow(
    served: dict[str, Any],
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    other_account: LocalAccount,
    files_url: str,
    python_image: str,
    docker_client: Any,
) -> None:
    url = served["url"] + "/node/api/services"
    assets = _publish(
        w3,
        served["url"],
        publisher_account,
        other_account,
        deployed,
        files_url,
        python_image,
        docker_client,
    )
    key = "0x" + bytes(other_account.key).hex()

    def signed(command: str) -> dict[str, str]:
        stored = requests.get(
            f"{url}/nonce", params={"userAddress": other_account.address}, timeout=10
        ).json()["nonce"]
        nonce = str(int(stored) + 1)
        text = command_text(other_account.address, nonce, command)
        return {
            "consumerAddress": other_account.address,
            "nonce": nonce,
            "signature": sign_command(key, text),
        }

    dataset = {"documentId": assets["dataset"]["did"], "serviceId": assets["dataset"]["serviceId"]}
    algorithm = {
        "documentId": assets["algorithm"]["did"],
        "serviceId": assets["algorithm"]["serviceId"],
    }
    body = {"environment": "c2d", "datasets": [dataset], "algorithm": algorithm}
    free = requests.post(
        f"{url}/freeCompute", json={**body, **signed("freeStartCompute")}, timeout=30
    )
    assert free.status_code == 400 and free.json() == {"error": {"datasets[0]": "missing"}}

    init = requests.post(
        f"{url}/initializeCompute",
        json={**body, "consumerAddress": other_account.address, "maxJobDuration": 60},
        timeout=30,
    ).json()
    env_consumer = init["payment"]["payee"]
    for item, asset, fee in (
        (dataset, assets["dataset"], init["datasets"][0]["providerFee"]),
        (algorithm, assets["algorithm"], init["algorithm"]["providerFee"]),
    ):
        receipt = publish.start_order(
            w3,
            other_account,
            asset["datatoken"],
            consumer_address=env_consumer,
            service_index=0,
            provider_fee=fee,
        )
        item["transferTxId"] = receipt["transactionHash"].to_0x_hex()
    paid = requests.post(
        f"{url}/compute",
        json={**body, **signed("startCompute"), "maxJobDuration": 60},
        timeout=60,
    )
    assert paid.status_code == 400, paid.text
    assert "no_authorization" in paid.json()["error"]
    jobs = requests.get(
        f"{url}/compute", params={"consumerAddress": other_account.address}, timeout=10
    ).json()
    assert jobs == []
    # the same orders admit a free job (no escrow), on the free tier
    started = requests.post(
        f"{url}/freeCompute", json={**body, **signed("freeStartCompute")}, timeout=30
    )
    assert started.status_code == 200, started.text
    (job,) = started.json()
    assert job["environment"] == "c2d" and job["isFree"] is True
    # the free tier runs one job at a time: wait for it to end
    assert _finished(url, other_account.address, job)["status"] == 70
    # on the v2 path an order is an access right within its service timeout, not one job:
    # the same orders admit the next job too
    again = requests.post(
        f"{url}/freeCompute", json={**body, **signed("freeStartCompute")}, timeout=30
    )
    assert again.status_code == 200, again.text
    (second,) = again.json()
    assert second["jobId"] != job["jobId"]
    assert _finished(url, other_account.address, second)["status"] == 70
