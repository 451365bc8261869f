"""The full paid compute flow, driven over HTTP with a wallet, on ganache + Docker."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pytest
from web3 import Web3

from contracts_abi import publish
from contracts_abi.did import did_suffix
from provider.request_auth import job_text
from tests.provider.chainflow import ALGORITHM, ONE, Flow, Published, container_for

pytestmark = pytest.mark.integration

DATA = b"hello tidewater\nsecond line\n"


@pytest.fixture(scope="module")
def assets(flow: Flow, docker_client: Any, python_image: str) -> dict[str, Published]:
    data_url = flow.files.add("/data.txt", DATA)
    algo_url = flow.files.add("/algo.py", ALGORITHM)
    container = container_for(docker_client, python_image)
    algorithm = flow.publish(
        "algorithm", [{"type": "url", "url": algo_url, "method": "GET"}], container=container
    )
    trusted = publish.trusted_algorithm(algorithm.ddo, [ALGORITHM])
    dataset = flow.publish(
        "dataset",
        [{"type": "url", "url": data_url, "method": "GET"}],
        trusted_algorithms=[trusted],
        trusted_algorithm_publishers=[flow.publisher.address],
        compress=True,
        encrypt_ddo=True,
    )
    raw_ok = flow.publish(
        "dataset", [{"type": "url", "url": data_url, "method": "GET"}], allow_raw_algorithm=True
    )
    second_algo = flow.publish(
        "algorithm", [{"type": "url", "url": algo_url, "method": "GET"}], container=container
    )
    return {
        "dataset": dataset,
        "algorithm": algorithm,
        "raw_ok": raw_ok,
        "second_algo": second_algo,
        "container": container,  # type: ignore[dict-item]
    }


def _signed_query(flow: Flow, job_id: str, did: str) -> dict[str, Any]:
    who = flow.consumer
    nonce, signature = flow.signed(who, partial(job_text, who.address, job_id, did))
    return {
        "consumerAddress": who.address,
        "jobId": job_id,
        "documentId": did,
        "nonce": nonce,
        "signature": signature,
    }


def test_paid_flow_end_to_end(flow: Flow, assets: dict[str, Any], w3: Web3) -> None:
    dataset, algorithm = assets["dataset"], assets["algorithm"]
    valid_until = int(time.time()) + 3600
    init = flow.initialize([flow.item(dataset)], flow.item(algorithm), "paid", valid_until)
    assert init.status_code == 200, init.get_data(as_text=True)
    body = init.get_json()
    ds_fee = body["datasets"][0]["providerFee"]
    assert body["datasets"][0]["datatoken"] == dataset.datatoken
    assert body["algorithm"]["datatoken"] == algorithm.datatoken
    assert ds_fee["providerFeeAddress"] == flow.provider_address
    assert ds_fee["providerFeeToken"] == Web3.to_checksum_address(flow.addresses["Ocean"])
    # ~3600 s at 1 Ocean/min ≈ 60 Ocean; the algorithm item carries no fee
    assert 59 * ONE <= int(ds_fee["providerFeeAmount"]) <= 60 * ONE
    assert body["algorithm"]["providerFee"]["providerFeeAmount"] == "0"

    ocean = w3.eth.contract(
        address=Web3.to_checksum_address(flow.addresses["Ocean"]),
        abi=__import__("contracts_abi").load("ERC20Template").abi,
    )
    before = ocean.functions.balanceOf(flow.provider_address).call()
    ds_tx = flow.order(dataset, ds_fee)
    algo_tx = flow.order(algorithm, body["algorithm"]["providerFee"])
    assert ocean.functions.balanceOf(flow.provider_address).call() - before == int(
        ds_fee["providerFeeAmount"]
    )

    started = flow.start(flow.item(dataset, ds_tx), flow.item(algorithm, algo_tx), "paid")
    assert started.status_code == 200, started.get_data(as_text=True)
    [job] = started.get_json()
    assert job["owner"].lower() == flow.consumer.address.lower()
    assert job["inputDID"] == [dataset.did]
    assert job["algoDID"] == algorithm.did
    assert job["status"] == 1

    done = flow.wait_finished(job["jobId"])
    assert done["status"] == 70, flow.explain(done)
    by_name = {r["filename"]: r for r in done["results"]}
    expected = f"{did_suffix(dataset.did)[:8]}-0.txt"
    assert expected in by_name, done["results"]
    for result in done["results"]:
        downloaded = flow.result(job["jobId"], result["index"])
        assert downloaded.status_code == 200, downloaded.get_data(as_text=True)
        assert len(downloaded.data) == result["filesize"]
    output = flow.result(job["jobId"], by_name[expected]["index"])
    assert output.data == DATA.upper()
    logs = [r for r in done["results"] if r["type"] == "algorithmLog"]
    assert logs and b"done" in flow.result(job["jobId"], logs[0]["index"]).data

    # the same request again (new nonce) is the same job; the order cannot start another
    again = flow.start(flow.item(dataset, ds_tx), flow.item(algorithm, algo_tx), "paid")
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.get_json()[0]["jobId"] == job["jobId"]

    stopped = flow.client.put(
        "/api/services/compute", query_string=_signed_query(flow, job["jobId"], dataset.did)
    )
    assert stopped.status_code == 200, stopped.get_data(as_text=True)
    assert stopped.get_json()[0]["jobId"] == job["jobId"]
    deleted = flow.client.delete(
        "/api/services/compute", query_string=_signed_query(flow, job["jobId"], dataset.did)
    )
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    assert flow.result(job["jobId"], 0).status_code in (400, 404)


def test_order_reused_for_another_request_is_refused(flow: Flow, assets: dict[str, Any]) -> None:
    dataset, algorithm, second = assets["dataset"], assets["algorithm"], assets["second_algo"]
    ds_item, algo_item = flow.ordered(dataset, algorithm, "free")
    first = flow.start(ds_item, algo_item, "free")
    assert first.status_code == 200, first.get_data(as_text=True)
    # a different algorithm (trusted by nobody here, so use the raw-allowing dataset's rules
    # aside): the dataset order is already spent on the first job
    init = flow.initialize([flow.item(dataset)], flow.item(second), "free", int(time.time()) + 600)
    second_tx = flow.order(second, init.get_json()["algorithm"]["providerFee"])
    other = flow.start(ds_item, flow.item(second, second_tx), "free")
    assert other.status_code == 400
    assert other.get_json()["error"] in (
        {"dataset.transferTxId": "order_already_used"},
        {"dataset": "not_trusted_algo"},
    )
    flow.engine.run_until_idle()


def test_raw_algorithm_runs_when_allowed(flow: Flow, assets: dict[str, Any]) -> None:
    raw_ok = assets["raw_ok"]
    ds_item, _ = flow.ordered(raw_ok, None, "free")
    meta = {
        "rawcode": "import os; open(os.environ['OUTPUTS'] + '/raw.txt', 'w').write('raw ok')",
        "container": assets["container"],
    }
    started = flow.start(ds_item, {"meta": meta}, "free")
    assert started.status_code == 200, started.get_data(as_text=True)
    [job] = started.get_json()
    assert job["algoDID"] == "raw"
    done = flow.wait_finished(job["jobId"])
    assert done["status"] == 70, flow.explain(done)
    [raw] = [r for r in done["results"] if r["filename"] == "raw.txt"]
    assert flow.result(job["jobId"], raw["index"]).data == b"raw ok"


def test_raw_algorithm_refused_when_not_allowed(flow: Flow, assets: dict[str, Any]) -> None:
    dataset = assets["dataset"]
    ds_item, _ = flow.ordered(dataset, None, "free")
    meta = {"rawcode": "print(1)", "container": assets["container"]}
    refused = flow.start(ds_item, {"meta": meta}, "free")
    assert refused.status_code == 400
    assert refused.get_json() == {"error": {"dataset": "no_raw_algo_allowed"}}
