"""One ``tidewater serve`` on two ganache chains (8996 and 58008), each with the Ocean V4
contracts and its own assets: the paid compute flow runs on each chain over HTTP, and
stopping one chain makes only that chain's requests answer 503."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import publish
from contracts_abi.deploy import deploy_stack, read_address_file, write_address_file
from contracts_abi.devchain import DEV_ACCOUNTS, Ganache, free_port
from contracts_abi.did import did_suffix
from operator_engine.receipts import RESULT_TYPE, recover
from tests.provider.chainflow import (
    ALGORITHM,
    ONE,
    FileServer,
    Flow,
    HttpClient,
    Published,
    container_for,
    file_server,
)
from tidewater import stack

pytestmark = pytest.mark.integration

SECOND_CHAIN_ID = 58008
DATA = b"two chains, one provider\n"


@pytest.fixture(scope="module")
def second_chain() -> Iterator[Ganache]:
    """A second ganache, chain id 58008 (stopped by the test, and at the end in any case)."""
    chain = Ganache(chain_id=SECOND_CHAIN_ID).start()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    with file_server() as served:
        yield served


@pytest.fixture(scope="module")
def flows(
    tmp_path_factory: pytest.TempPathFactory,
    ganache: Ganache,
    w3: Web3,
    deployed: dict[str, Any],
    second_chain: Ganache,
    files: FileServer,
    provider_private_key: str,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployer_account: LocalAccount,
) -> Iterator[dict[int, Flow]]:
    """``tidewater serve`` over both chains; a Flow per chain id talking to it over HTTP."""
    tmp = tmp_path_factory.mktemp("multichain")
    w3_b = Web3(Web3.HTTPProvider(second_chain.url, request_kwargs={"timeout": 30}))
    deployed_b = deploy_stack(w3_b, deployer_account)
    address_file = tmp / "address.json"
    write_address_file(address_file, deployed, w3.eth.chain_id)
    write_address_file(address_file, deployed_b, SECOND_CHAIN_ID)  # added, the first kept
    assert read_address_file(address_file, w3.eth.chain_id)["Ocean"] == deployed["Ocean"]
    assert read_address_file(address_file, SECOND_CHAIN_ID)["Ocean"] == deployed_b["Ocean"]
    provider_address = Account.from_key(provider_private_key).address
    paid = {
        "id": "paid",
        "consumerAddress": provider_address,
        "maxJobDuration": 60,
        "maxJobs": 2,
        "ramGB": 2,
        "priceMin": 1,
        "feeToken": {str(w3.eth.chain_id): deployed["Ocean"], "58008": deployed_b["Ocean"]},
    }
    free = {"id": "free", "maxJobDuration": 60, "maxJobs": 1}  # fee token: each chain's Ocean
    (tmp / "envs.json").write_text(json.dumps([paid, free]))
    urls = {str(w3.eth.chain_id): ganache.url, str(SECOND_CHAIN_ID): second_chain.url}
    # one provider key per chain: 58008's fees and receipts are signed by another account
    keys = {w3.eth.chain_id: provider_private_key, SECOND_CHAIN_ID: DEV_ACCOUNTS["other"]}
    env = {
        "NETWORK_URL": json.dumps(urls),
        "PROVIDER_PRIVATE_KEY": json.dumps({str(c): k for c, k in keys.items()}),
        "ADDRESS_FILE": str(address_file),
        "TIDEWATER_DATA_DIR": str(tmp / "data"),
        "TIDEWATER_ENVIRONMENTS": str(tmp / "envs.json"),
        "ALLOW_NON_PUBLIC_IP": "true",
        "TIDEWATER_PULL_IMAGES": "false",
        "TIDEWATER_WORKERS": "1",
    }
    for chain_w3, addresses in ((w3, deployed), (w3_b, deployed_b)):
        publish.transfer(
            chain_w3, deployer_account, addresses["Ocean"], consumer_account.address, 1000 * ONE
        )
    with stack.provider_server(env, log_path=tmp / "serve.log") as url:
        yield {
            int(chain_w3.eth.chain_id): Flow(
                client=HttpClient(url),
                w3=chain_w3,
                addresses=dict(addresses),
                publisher=publisher_account,
                consumer=consumer_account,
                provider_address=Account.from_key(keys[chain_w3.eth.chain_id]).address,
                engine=None,
                files=files,
                env_consumer=provider_address,
                chain_id=int(chain_w3.eth.chain_id),
                provider_key=keys[chain_w3.eth.chain_id],
            )
            for chain_w3, addresses in ((w3, deployed), (w3_b, deployed_b))
        }


def _publish_pair(flow: Flow, container: dict[str, str]) -> tuple[Published, Published]:
    """An algorithm and a dataset (on the flow's chain) that trusts it."""
    data_url = flow.files.add(f"/data-{flow.chain_id}.txt", DATA)
    algo_url = flow.files.add(f"/algo-{flow.chain_id}.py", ALGORITHM)
    algorithm = flow.publish(
        "algorithm", [{"type": "url", "url": algo_url, "method": "GET"}], container=container
    )
    dataset = flow.publish(
        "dataset",
        [{"type": "url", "url": data_url, "method": "GET"}],
        trusted_algorithms=[publish.trusted_algorithm(algorithm.ddo, [ALGORITHM])],
    )
    return dataset, algorithm


def _run_paid_job(flow: Flow, dataset: Published, algorithm: Published) -> dict[str, Any]:
    """initializeCompute, startOrder with the provider fees, signed start, status until 70,
    result download: the steps ocean.py performs."""
    init = flow.initialize(
        [flow.item(dataset)], flow.item(algorithm), "paid", int(time.time()) + 600
    )
    assert init.status_code == 200, init.get_data(as_text=True)
    body = init.get_json()
    fee = body["datasets"][0]["providerFee"]
    assert fee["providerFeeToken"] == Web3.to_checksum_address(flow.addresses["Ocean"])
    assert fee["providerFeeAddress"] == flow.provider_address
    assert int(fee["providerFeeAmount"]) > 0
    ds_tx = flow.order(dataset, fee)
    algo_tx = flow.order(algorithm, body["algorithm"]["providerFee"])
    started = flow.start(flow.item(dataset, ds_tx), flow.item(algorithm, algo_tx), "paid")
    assert started.status_code == 200, started.get_data(as_text=True)
    [job] = started.get_json()
    done = flow.wait_finished(job["jobId"])
    assert done["status"] == 70, flow.explain(done)
    by_name = {r["filename"]: r for r in done["results"]}
    output = by_name[f"{did_suffix(dataset.did)[:8]}-0.txt"]
    downloaded = flow.result(job["jobId"], output["index"])
    assert downloaded.status_code == 200 and downloaded.data == DATA.upper()
    # the job's receipt is signed for its chain, with that chain's provider key
    [signed] = [r for r in done["results"] if r["type"] == RESULT_TYPE]
    receipt = json.loads(flow.result(job["jobId"], signed["index"]).data)
    assert receipt["domain"]["chainId"] == flow.chain_id
    assert recover(receipt) == receipt["signer"] == flow.provider_address
    return done


def test_compute_flow_on_each_chain_and_one_chain_down(
    flows: dict[int, Flow],
    second_chain: Ganache,
    docker_client: Any,
    python_image: str,
) -> None:
    first_id = next(c for c in flows if c != SECOND_CHAIN_ID)
    first, second = flows[first_id], flows[SECOND_CHAIN_ID]
    root = first.client.get("/").get_json()
    assert root["chainIds"] == [first_id, SECOND_CHAIN_ID]
    assert root["providerAddresses"] == {str(c): flow.provider_address for c, flow in flows.items()}
    assert first.provider_address != second.provider_address  # one key per chain
    envs = first.client.get("/api/services/computeEnvironments").get_json()
    assert set(envs) == {str(first_id), str(SECOND_CHAIN_ID)}
    for chain_id, flow in flows.items():
        tokens = {e["id"]: e["feeToken"] for e in envs[str(chain_id)]}
        assert tokens == {"paid": flow.addresses["Ocean"], "free": flow.addresses["Ocean"]}

    container = container_for(docker_client, python_image)
    published = {chain_id: _publish_pair(flow, container) for chain_id, flow in flows.items()}
    jobs = {chain_id: _run_paid_job(flows[chain_id], *published[chain_id]) for chain_id in flows}
    assert jobs[first_id]["jobId"] != jobs[SECOND_CHAIN_ID]["jobId"]

    # An order on one chain is no order on the other: the DID names its chain.
    dataset_b, algorithm_b = published[SECOND_CHAIN_ID]
    # the embedded Aquarius reads each asset on its own chain (names come from its NFT there)
    ddo_b = first.client.get(f"/api/aquarius/assets/ddo/{dataset_b.did}").get_json()
    assert ddo_b["chainId"] == SECOND_CHAIN_ID and ddo_b["nft"]["name"] == "tw-dataset"
    crossed = second.initialize(
        [second.item(dataset_b)], second.item(algorithm_b), "paid", int(time.time()) + 600
    )
    assert crossed.status_code == 200
    wrong_chain = first.client.post(
        "/api/services/initializeCompute",
        json={
            "datasets": [first.item(dataset_b)],
            "algorithm": first.item(algorithm_b),
            "compute": {"env": "paid", "validUntil": int(time.time()) + 600},
            "consumerAddress": first.consumer.address,
            "chainId": first_id,
        },
    )
    assert wrong_chain.status_code == 400
    assert wrong_chain.get_json() == {"error": {"datasets[0]": "did_not_found"}}

    # Chain 58008 goes down: its requests answer 503 naming it, the other chain still serves.
    dataset_b_item, algorithm_b_item = second.ordered(dataset_b, algorithm_b, "paid")
    second_chain.stop()
    # a node that answered is trusted for a second (Chain.ensure_live): wait for the probe
    deadline = time.monotonic() + 30
    while True:
        down = second.initialize(
            [second.item(dataset_b)], second.item(algorithm_b), "paid", int(time.time()) + 600
        )
        if down.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert down.status_code == 503, down.get_data(as_text=True)
    assert "chain 58008 is unavailable" in down.get_json()["error"]
    started = second.start(dataset_b_item, algorithm_b_item, "paid")
    assert started.status_code == 503, started.get_data(as_text=True)
    assert "chain 58008" in started.get_json()["error"]
    assert second.status(jobs[SECOND_CHAIN_ID]["jobId"])["status"] == 70  # jobs need no chain
    assert first.client.get("/").status_code == 200
    _run_paid_job(first, *_publish_pair(first, container))


def test_serve_starts_with_a_chain_down_and_serves_the_other(
    tmp_path_factory: pytest.TempPathFactory,
    ganache: Ganache,
    w3: Web3,
    deployed: dict[str, Any],
    provider_private_key: str,
) -> None:
    tmp = tmp_path_factory.mktemp("one-chain-down")
    first_id = int(w3.eth.chain_id)
    down_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    address_file = tmp / "address.json"
    write_address_file(address_file, deployed, first_id)
    write_address_file(address_file, deployed, SECOND_CHAIN_ID)  # a served chain has an entry
    env = {
        "NETWORK_URL": json.dumps({str(first_id): ganache.url, "58008": down_url}),
        "PROVIDER_PRIVATE_KEY": provider_private_key,
        "ADDRESS_FILE": str(address_file),
        "TIDEWATER_DATA_DIR": str(tmp / "data"),
    }
    log = tmp / "serve.log"
    with stack.provider_server(env, log_path=log, extra_args=("--no-engine",)) as url:
        assert requests.get(url + "/", timeout=10).json()["chainIds"] == [first_id, 58008]
        envs = requests.get(url + "/api/services/computeEnvironments", timeout=10).json()
        assert envs["58008"] == []  # its fee token cannot be checked yet
        [free] = envs[str(first_id)]
        assert free["feeToken"] == deployed["Ocean"]
        down = requests.get(url + "/api/services/computeEnvironments?chainId=58008", timeout=10)
        assert down.status_code == 503 and "chain 58008" in down.json()["error"]
    assert "chain 58008" in log.read_text() and "unreachable" in log.read_text()
