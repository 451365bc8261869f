"""``POST /api/services/initializeCompute`` (docs/protocol.md §4) on the real chain."""

from __future__ import annotations

import time

import pytest

from contracts_abi import fees as fee_format
from tests.provider.chainflow import ONE, Flow, Published

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def assets(flow: Flow) -> dict[str, Published]:
    files = [{"type": "url", "url": "http://127.0.0.1:9/x", "method": "GET"}]
    container = {"entrypoint": "python3 $ALGO", "image": "x", "tag": "1", "checksum": "sha256:0"}
    return {
        "dataset": flow.publish("dataset", files),
        "second": flow.publish("dataset", files),
        "algorithm": flow.publish("algorithm", files, container=container),
    }


def test_fees_for_datasets_and_algorithm(flow: Flow, assets: dict[str, Published]) -> None:
    ds, second, algo = assets["dataset"], assets["second"], assets["algorithm"]
    valid_until = int(time.time()) + 2 * 86400  # beyond one day: no wrap-around
    response = flow.initialize(
        [flow.item(ds), flow.item(second)], flow.item(algo), "paid", valid_until
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    first, other = body["datasets"]
    assert first["datatoken"] == ds.datatoken and other["datatoken"] == second.datatoken
    fee = first["providerFee"]
    assert set(fee) == set(fee_format.FEE_FIELDS)
    assert fee["validUntil"] == valid_until
    assert fee["v"] in (27, 28)
    minutes = (valid_until - time.time()) / 60
    assert int(minutes - 1) * ONE <= int(fee["providerFeeAmount"]) <= int(minutes + 1) * ONE
    assert other["providerFee"]["providerFeeAmount"] == "0"
    assert body["algorithm"]["providerFee"]["providerFeeAmount"] == "0"
    data = fee_format.decode_provider_data(fee["providerData"])
    assert (
        data["environment"] == "paid" and data["dt"] == ds.datatoken and data["id"] == ds.service_id
    )
    assert fee_format.recover_provider_fee_signer(fee) == flow.provider_address


def test_free_env_and_raw_algorithm(flow: Flow, assets: dict[str, Published]) -> None:
    ds = assets["dataset"]
    response = flow.initialize(
        [flow.item(ds)], {"meta": {"rawcode": "print(1)"}}, "free", int(time.time()) + 60
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "algorithm" not in body
    assert body["datasets"][0]["providerFee"]["providerFeeAmount"] == "0"


def test_valid_order_alone_or_with_a_fresh_fee(flow: Flow, assets: dict[str, Published]) -> None:
    ds = assets["dataset"]
    short = int(time.time()) + 600
    first = flow.initialize([flow.item(ds)], {"meta": {}}, "free", short).get_json()
    tx = flow.order(ds, first["datasets"][0]["providerFee"])
    covered = flow.initialize([flow.item(ds, tx)], {"meta": {}}, "free", short - 60)
    assert covered.get_json()["datasets"] == [{"validOrder": tx}]
    longer = flow.initialize([flow.item(ds, tx)], {"meta": {}}, "free", short + 3600)
    [item] = longer.get_json()["datasets"]
    assert item["validOrder"] == tx
    assert item["datatoken"] == ds.datatoken
    assert item["providerFee"]["validUntil"] == short + 3600
    # an order for another environment is not reusable here: a fresh fee, no validOrder
    other_env = flow.initialize([flow.item(ds, tx)], {"meta": {}}, "paid", short)
    [fresh] = other_env.get_json()["datasets"]
    assert "validOrder" not in fresh and "providerFee" in fresh


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        ({"valid_until": 1}, 400, {"error": "The validUntil value is not correct."}),
        ({"env": "no-such-env"}, 400, {"error": "Compute environment does not exist"}),
    ],
)
def test_refusals(
    flow: Flow, assets: dict[str, Published], change: dict, status: int, expected: dict
) -> None:
    args = {"env": "free", "valid_until": int(time.time()) + 60, **change}
    response = flow.initialize([flow.item(assets["dataset"])], {"meta": {}}, **args)
    assert response.status_code == status
    assert response.get_json() == expected


def test_missing_fields(flow: Flow) -> None:
    response = flow.client.post("/api/services/initializeCompute", json={"datasets": []})
    assert response.status_code == 400
    body = response.get_json()
    assert body["message"] == "Validation error"
    assert "algorithm" in body["errors"] and "compute.validUntil" in body["errors"]
