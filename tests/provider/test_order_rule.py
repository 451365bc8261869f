"""Every payment tx starts at most one job (docs/protocol.md §5), over HTTP on ganache + Docker.

Replays are refused (after a signed DELETE, the algorithm's order, an additional dataset's
order), the identical request answers the same job, and the path clients take for a second job
on the same order (initializeCompute → reuseOrder → compute start) works.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pytest
from hexbytes import HexBytes

from contracts_abi import publish
from provider.request_auth import job_text
from tests.provider.chainflow import ALGORITHM, Flow, Published, container_for

pytestmark = pytest.mark.integration

DATA = b"order rule\n"


@pytest.fixture(scope="module")
def assets(flow: Flow, docker_client: Any, python_image: str) -> dict[str, Published]:
    data = [{"type": "url", "url": flow.files.add("/rule.txt", DATA), "method": "GET"}]
    algo_files = [{"type": "url", "url": flow.files.add("/rule.py", ALGORITHM), "method": "GET"}]
    algorithm = flow.publish(
        "algorithm", algo_files, container=container_for(docker_client, python_image)
    )
    trusted = publish.trusted_algorithm(algorithm.ddo, [ALGORITHM])
    return {
        "algorithm": algorithm,
        "dataset": flow.publish("dataset", data, trusted_algorithms=[trusted]),
        "extra": flow.publish("dataset", data, trusted_algorithms=[trusted]),
    }


def _refused(reply: Any, field: str, tx: str) -> None:
    assert reply.status_code == 400, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["error"] == {field: "order_already_used"}
    assert tx.lower() in body["message"].lower()


def _started(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 200, reply.get_data(as_text=True)
    [job] = reply.get_json()
    return job  # type: ignore[no-any-return]


def _fresh(flow: Flow, asset: Published, env: str = "free") -> dict[str, Any]:
    """``asset`` ordered anew (initializeCompute, then startOrder): its item for compute start."""
    init = flow.initialize([flow.item(asset)], {"meta": {}}, env, int(time.time()) + 900)
    assert init.status_code == 200, init.get_data(as_text=True)
    return flow.item(asset, flow.order(asset, init.get_json()["datasets"][0]["providerFee"]))


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


def test_a_deleted_job_does_not_free_its_orders(flow: Flow, assets: dict[str, Any]) -> None:
    dataset, algorithm = assets["dataset"], assets["algorithm"]
    ds_item, algo_item = flow.ordered(dataset, algorithm, "paid")
    job = _started(flow.start(ds_item, algo_item, "paid"))
    assert flow.wait_finished(job["jobId"])["status"] == 70
    deleted = flow.client.delete(
        "/api/services/compute", query_string=_signed_query(flow, job["jobId"], dataset.did)
    )
    assert deleted.status_code == 200, deleted.get_data(as_text=True)
    _refused(
        flow.start(ds_item, algo_item, "paid"), "dataset.transferTxId", ds_item["transferTxId"]
    )


def test_an_algorithm_order_starts_one_job(flow: Flow, assets: dict[str, Any]) -> None:
    dataset, algorithm = assets["dataset"], assets["algorithm"]
    ds_item, algo_item = flow.ordered(dataset, algorithm, "free")
    job = _started(flow.start(ds_item, algo_item, "free"))
    # the identical request again (a new nonce) answers the same job
    assert _started(flow.start(ds_item, algo_item, "free"))["jobId"] == job["jobId"]
    second_ds = _fresh(flow, dataset)
    _refused(
        flow.start(second_ds, algo_item, "free"),
        "algorithm.transferTxId",
        algo_item["transferTxId"],
    )
    # the refused request spent nothing: its fresh dataset order starts a job with a fresh
    # algorithm order
    _, fresh_algo = flow.ordered(dataset, algorithm, "free")
    other = _started(flow.start(second_ds, fresh_algo, "free"))
    assert other["jobId"] != job["jobId"]
    flow.engine.run_until_idle()


def test_an_additional_dataset_order_starts_one_job(flow: Flow, assets: dict[str, Any]) -> None:
    dataset, extra, algorithm = assets["dataset"], assets["extra"], assets["algorithm"]
    ds_item, algo_item = flow.ordered(dataset, algorithm, "free")
    extra_item = _fresh(flow, extra)
    job = _started(flow.start(ds_item, algo_item, "free", additionalDatasets=[extra_item]))
    assert job["inputDID"] == [dataset.did, extra.did]
    ds2, algo2 = flow.ordered(dataset, algorithm, "free")
    _refused(
        flow.start(ds2, algo2, "free", additionalDatasets=[extra_item]),
        "datasets[1].transferTxId",
        extra_item["transferTxId"],
    )
    flow.engine.run_until_idle()


def _reuse(flow: Flow, asset: Published, item: dict[str, Any]) -> str:
    """What ocean.py/ocean.js do with ``{"validOrder", "providerFee"}``: reuseOrder."""
    receipt = publish.reuse_order(
        flow.w3,
        flow.consumer,
        asset.datatoken,
        order_tx_id=item["validOrder"],
        provider_fee=item["providerFee"],
    )
    return HexBytes(receipt["transactionHash"]).to_0x_hex()


def test_a_second_job_on_the_same_orders_goes_through_reuse_order(
    flow: Flow, assets: dict[str, Any]
) -> None:
    dataset, algorithm = assets["dataset"], assets["algorithm"]
    ds_item, algo_item = flow.ordered(dataset, algorithm, "free", valid_for=3600)
    first = _started(flow.start(ds_item, algo_item, "free"))
    # both orders are spent although their fees still cover the requested time: never a bare
    # validOrder, always a fresh fee to reuse the order with
    until = int(time.time()) + 600
    init = flow.initialize([ds_item], algo_item, "free", until)
    assert init.status_code == 200, init.get_data(as_text=True)
    body = init.get_json()
    [ds_answer], algo_answer = body["datasets"], body["algorithm"]
    for answer, item in ((ds_answer, ds_item), (algo_answer, algo_item)):
        assert answer["validOrder"] == item["transferTxId"]
        assert answer["providerFee"]["validUntil"] == until
    ds_reuse = flow.item(dataset, _reuse(flow, dataset, ds_answer))
    algo_reuse = flow.item(algorithm, _reuse(flow, algorithm, algo_answer))
    second = _started(flow.start(ds_reuse, algo_reuse, "free"))
    assert second["jobId"] != first["jobId"]
    # a spent reuseOrder tx points clients back at the original order, so a third job can
    # reuse it again (reuseOrder of a reuseOrder tx would name no OrderStarted)
    third_init = flow.initialize([ds_reuse], algo_reuse, "free", until).get_json()
    assert third_init["datasets"][0]["validOrder"] == ds_item["transferTxId"]
    assert third_init["algorithm"]["validOrder"] == algo_item["transferTxId"]
    ds_third = flow.item(dataset, _reuse(flow, dataset, third_init["datasets"][0]))
    algo_third = flow.item(algorithm, _reuse(flow, algorithm, third_init["algorithm"]))
    third = _started(flow.start(ds_third, algo_third, "free"))
    assert third["jobId"] not in (first["jobId"], second["jobId"])
    for job in (first, second, third):
        assert flow.wait_finished(job["jobId"])["status"] == 70


def test_an_unspent_order_whose_fee_covers_is_answered_alone(
    flow: Flow, assets: dict[str, Any]
) -> None:
    dataset = assets["dataset"]
    item = _fresh(flow, dataset)
    init = flow.initialize([item], {"meta": {}}, "free", int(time.time()) + 60)
    assert init.get_json()["datasets"] == [{"validOrder": item["transferTxId"]}]
