"""One row per compute-start error code (docs/protocol.md §6), each triggered for real on
ganache."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import publish
from provider.request_auth import compute_start_text
from tests.provider.chainflow import ALGORITHM, Flow, Published, container_for

pytestmark = pytest.mark.integration

UNKNOWN_TX = "0x" + "ab" * 32
UNKNOWN_DID = "did:op:" + "0" * 64


@pytest.fixture(scope="module")
def world(flow: Flow, docker_client: Any, python_image: str, other_account: LocalAccount) -> dict:
    data = [{"type": "url", "url": flow.files.add("/d.txt", b"data"), "method": "GET"}]
    algo_files = [{"type": "url", "url": flow.files.add("/a.py", ALGORITHM), "method": "GET"}]
    container = container_for(docker_client, python_image)
    algo = flow.publish("algorithm", algo_files, container=container)
    trusted = publish.trusted_algorithm(algo.ddo, [ALGORITHM])

    def svc_type(kind: str) -> Callable[[dict], None]:
        def mutate(ddo: dict) -> None:
            ddo["services"][0]["type"] = kind

        return mutate

    return {
        "container": container,
        "algo": algo,
        "open": flow.publish("dataset", data),
        "raw": flow.publish("dataset", data, allow_raw_algorithm=True),
        "access": flow.publish("dataset", data, service_type="access"),
        "weird": flow.publish("dataset", data, mutate=svc_type("wss")),
        "untrusted": flow.publish(
            "dataset", data, trusted_algorithms=[{**trusted, "did": UNKNOWN_DID}]
        ),
        "publishers": flow.publish(
            "dataset", data, trusted_algorithm_publishers=[other_account.address]
        ),
        "bad_files_sum": flow.publish(
            "dataset", data, trusted_algorithms=[{**trusted, "filesChecksum": "00" * 32}]
        ),
        "bad_container_sum": flow.publish(
            "dataset",
            data,
            trusted_algorithms=[{**trusted, "containerSectionChecksum": "00" * 32}],
        ),
        "no_files": flow.publish("dataset", data, files_override="0x00"),
        "revoked": flow.publish("dataset", data, state=3),
        "denied": flow.publish(
            "dataset",
            data,
            credentials={"deny": [{"type": "address", "values": [flow.consumer.address]}]},
        ),
    }


def _order(flow: Flow, asset: Published, env: str = "free") -> dict[str, Any]:
    init = flow.initialize([flow.item(asset)], {"meta": {}}, env, int(time.time()) + 900)
    assert init.status_code == 200, init.get_data(as_text=True)
    return flow.item(asset, flow.order(asset, init.get_json()["datasets"][0]["providerFee"]))


def _algo(flow: Flow, w: dict) -> dict[str, Any]:
    algo = w["algo"]
    init = flow.initialize([flow.item(w["open"])], flow.item(algo), "free", int(time.time()) + 900)
    return flow.item(algo, flow.order(algo, init.get_json()["algorithm"]["providerFee"]))


def _meta(w: dict, **meta: Any) -> dict[str, Any]:
    return {"meta": {"container": w["container"], **meta}}


# code -> builder(flow, world) -> (dataset, algorithm, env, extra) and the expected error body
CASES: dict[str, tuple[Callable[[Flow, dict], tuple], dict]] = {
    "missing": (
        lambda f, w: (f.item(w["open"]), _algo(f, w), "free", {}),
        {"dataset": "missing"},
    ),
    "did_not_found": (
        lambda f, w: (
            {"documentId": UNKNOWN_DID, "serviceId": "x", "transferTxId": UNKNOWN_TX},
            _algo(f, w),
            "free",
            {},
        ),
        {"dataset": "did_not_found"},
    ),
    "not_found": (
        lambda f, w: (f.item(w["open"], UNKNOWN_TX, serviceId="nope"), _algo(f, w), "free", {}),
        {"dataset.serviceId": "not_found"},
    ),
    "service_not_access_compute": (
        lambda f, w: (
            _order(f, w["open"]),
            _algo(f, w),
            "free",
            {"additionalDatasets": [f.item(w["weird"], UNKNOWN_TX)]},
        ),
        {"datasets[1]": "service_not_access_compute"},
    ),
    "main_service_compute": (
        lambda f, w: (f.item(w["access"], UNKNOWN_TX), _algo(f, w), "free", {}),
        {"dataset": "main_service_compute"},
    ),
    "not_algo": (
        lambda f, w: (
            _order(f, w["open"]),
            f.item(w["raw"], UNKNOWN_TX),
            "free",
            {},
        ),
        {"algorithm": "not_algo"},
    ),
    "missing_meta_documentId": (
        lambda f, w: (_order(f, w["open"]), {"userdata": {}}, "free", {}),
        {"algorithm": "missing_meta_documentId"},
    ),
    "meta_oneof_url_rawcode_remote": (
        lambda f, w: (
            _order(f, w["raw"]),
            _meta(w, rawcode="print(1)", url="http://127.0.0.1:9/a.py"),
            "free",
            {},
        ),
        {"algorithm": "meta_oneof_url_rawcode_remote"},
    ),
    "missing_entrypoint_image_checksum": (
        lambda f, w: (
            _order(f, w["raw"]),
            {"meta": {"rawcode": "print(1)", "container": {"entrypoint": "python3 $ALGO"}}},
            "free",
            {},
        ),
        {"algorithm.container": "missing_entrypoint_image_checksum"},
    ),
    "checksum_prefix": (
        lambda f, w: (
            _order(f, w["raw"]),
            {"meta": {"rawcode": "1", "container": {**w["container"], "checksum": "md5:00"}}},
            "free",
            {},
        ),
        {"algorithm.container": "checksum_prefix"},
    ),
    "no_raw_algo_allowed": (
        lambda f, w: (_order(f, w["open"]), _meta(w, rawcode="print(1)"), "free", {}),
        {"dataset": "no_raw_algo_allowed"},
    ),
    "not_trusted_algo": (
        lambda f, w: (_order(f, w["untrusted"]), _algo(f, w), "free", {}),
        {"dataset": "not_trusted_algo"},
    ),
    "not_trusted_algo_publisher": (
        lambda f, w: (_order(f, w["publishers"]), _algo(f, w), "free", {}),
        {"dataset": "not_trusted_algo_publisher"},
    ),
    "algorithm_file_checksum_mismatch": (
        lambda f, w: (_order(f, w["bad_files_sum"]), _algo(f, w), "free", {}),
        {"dataset": "algorithm_file_checksum_mismatch"},
    ),
    "algorithm_container_checksum_mismatch": (
        lambda f, w: (_order(f, w["bad_container_sum"]), _algo(f, w), "free", {}),
        {"dataset": "algorithm_container_checksum_mismatch"},
    ),
    "order_invalid": (
        lambda f, w: (f.item(w["open"], UNKNOWN_TX), _algo(f, w), "free", {}),
        {"dataset": "order_invalid"},
    ),
    "in_use_or_not_on_chain": (
        lambda f, w: (_order(f, w["open"]), f.item(w["algo"], UNKNOWN_TX), "free", {}),
        {"algorithm": "in_use_or_not_on_chain"},
    ),
    "fees_not_paid": (
        # ordered with a (free) fee for env "free", then started on the paid env
        lambda f, w: (_order(f, w["open"]), _algo(f, w), "paid", {}),
        {"order": "fees_not_paid"},
    ),
    "file_unavailable": (
        lambda f, w: (f.item(w["no_files"], UNKNOWN_TX), _algo(f, w), "free", {}),
        {"dataset": "file_unavailable"},
    ),
    "asset_not_consumable": (
        lambda f, w: (f.item(w["revoked"], UNKNOWN_TX), _algo(f, w), "free", {}),
        {"dataset": "asset_not_consumable"},
    ),
    "access_denied": (
        lambda f, w: (f.item(w["denied"], UNKNOWN_TX), _algo(f, w), "free", {}),
        {"dataset": "access_denied"},
    ),
}


@pytest.mark.parametrize("code", list(CASES))
def test_error_code(flow: Flow, world: dict, code: str) -> None:
    build, expected = CASES[code]
    dataset, algorithm, env, extra = build(flow, world)
    response = flow.start(dataset, algorithm, env, **extra)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json() == {"error": expected}


def test_unknown_environment(flow: Flow, world: dict) -> None:
    response = flow.start(flow.item(world["open"], UNKNOWN_TX), _algo(flow, world), "nowhere")
    assert response.status_code == 400
    assert response.get_json() == {"error": "Compute environment does not exist"}


def test_missing_fields_use_the_validation_shape(flow: Flow) -> None:
    response = flow.client.post("/api/services/compute", json={"dataset": {}})
    assert response.status_code == 400
    body = response.get_json()
    assert body["message"] == "Validation error" and body["success"] is False
    assert {"consumerAddress", "signature", "nonce", "dataset.documentId"} <= set(body["errors"])


def test_order_placed_by_someone_else(flow: Flow, world: dict, other_account: LocalAccount) -> None:
    dataset = _order(flow, world["open"])  # paid by the consumer
    response = flow.start(dataset, _algo(flow, world), "free", account=other_account)
    assert response.status_code == 400
    assert response.get_json() == {"error": {"dataset": "order_invalid"}}


def test_replayed_signature_is_refused(flow: Flow, world: dict) -> None:
    who = flow.consumer
    nonce, signature = flow.signed(who, partial(compute_start_text, who.address, world["open"].did))
    body = {
        "consumerAddress": who.address,
        "signature": signature,
        "nonce": nonce,
        "environment": "free",
        "dataset": flow.item(world["open"], UNKNOWN_TX),
        "algorithm": {"meta": {}},
    }
    first = flow.client.post("/api/services/compute", json=body)
    assert first.status_code == 400 and "signature" not in first.get_json().get("errors", {})
    replay = flow.client.post("/api/services/compute", json=body)
    assert replay.status_code == 400
    assert "signature" in replay.get_json()["errors"]


def test_expired_order_is_refused(flow: Flow, world: dict, w3: Web3) -> None:
    asset = world["open"]
    chain_time = int(w3.eth.get_block("latest")["timestamp"])
    valid_until = max(chain_time, int(time.time())) + 30
    init = flow.initialize([flow.item(asset)], {"meta": {}}, "free", valid_until)
    tx = flow.order(asset, init.get_json()["datasets"][0]["providerFee"])
    w3.provider.make_request("evm_increaseTime", [120])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    response = flow.start(flow.item(asset, tx), _algo(flow, world), "free")
    assert response.status_code == 400
    assert response.get_json() == {"error": {"dataset": "order_invalid"}}


def test_forged_order_from_another_datatoken(flow: Flow, world: dict) -> None:
    """Same-shaped ProviderFee/OrderStarted logs from a decoy datatoken name the real one."""
    real, decoy = world["open"], world["raw"]
    init = flow.initialize([flow.item(real)], {"meta": {}}, "free", int(time.time()) + 900)
    fee = init.get_json()["datasets"][0]["providerFee"]  # providerData names the real dt
    tx = flow.order(decoy, fee)  # but the decoy datatoken emits the events
    response = flow.start(flow.item(real, tx), _algo(flow, world), "free")
    assert response.status_code == 400
    assert response.get_json() == {"error": {"dataset": "order_invalid"}}
