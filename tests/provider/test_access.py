"""Access services on the real chain: initialize → startOrder → signed download (whole file,
Range cut by the provider or forwarded to the file server, repeated downloads on one order,
refusals), and the embedded Aquarius read API."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from contracts_abi import fees as fee_format
from contracts_abi import publish
from provider.request_auth import download_text
from tests.fixtures.gateways import Gateways
from tests.provider.chainflow import Flow, Published

pytestmark = pytest.mark.integration

BODY = bytes(range(256)) * 40  # 10,240 bytes, every byte value
SECOND = b"second file\n"
CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
ON_IPFS = b"0123456789" * 300


@pytest.fixture(scope="module")
def flow(gateway_flow: Flow, gw: Gateways) -> Flow:
    gw.ipfs[CID] = ON_IPFS
    return gateway_flow


@pytest.fixture(scope="module")
def access(flow: Flow) -> Published:
    first = flow.files.add("/access/weather.bin", BODY)  # this server ignores Range
    second = flow.files.add("/access/second.txt", SECOND)
    return flow.publish(
        "dataset",
        [
            {"type": "url", "url": first, "method": "GET"},
            {"type": "url", "url": second, "method": "GET"},
            {"type": "ipfs", "hash": CID},  # the gateway honours Range
        ],
        service_type="access",
        timeout=3600,
    )


def initialize(flow: Flow, asset: Published, **extra: Any) -> Any:
    query = {
        "documentId": asset.did,
        "serviceId": asset.service_id,
        "consumerAddress": flow.consumer.address,
        **extra,
    }
    return flow.client.get("/api/services/initialize", query_string=query)


def order(flow: Flow, asset: Published, account: LocalAccount | None = None) -> str:
    """initialize + startOrder naming ``account`` (default: the consumer) as consumer."""
    who = account or flow.consumer
    reply = initialize(flow, asset)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    receipt = publish.start_order(
        flow.w3,
        who,
        asset.datatoken,
        consumer_address=who.address,
        service_index=0,
        provider_fee=reply.get_json()["providerFee"],
    )
    return HexBytes(receipt["transactionHash"]).to_0x_hex()


def download(
    flow: Flow,
    asset: Published,
    tx: str,
    index: int = 0,
    *,
    account: LocalAccount | None = None,
    headers: dict[str, str] | None = None,
    sign_as: LocalAccount | None = None,
) -> Any:
    who = account or flow.consumer
    nonce, signature = flow.signed(sign_as or who, partial(download_text, asset.did))
    return flow.client.get(
        "/api/services/download",
        query_string={
            "documentId": asset.did,
            "serviceId": asset.service_id,
            "consumerAddress": who.address,
            "transferTxId": tx,
            "fileIndex": index,
            "nonce": nonce,
            "signature": signature,
        },
        headers=headers or {},
    )


def test_initialize_answers_as_the_reference(flow: Flow, access: Published) -> None:
    reply = initialize(flow, access, fileIndex=0)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["datatoken"] == access.datatoken
    assert (
        body["nonce"]
        == flow.client.get(f"/api/services/nonce?userAddress={flow.consumer.address}").get_json()[
            "nonce"
        ]
    )
    assert body["computeAddress"] == flow.env_consumer
    fee = body["providerFee"]
    assert fee["providerFeeAddress"] == flow.provider_address
    assert fee["providerFeeAmount"] == "0"
    assert fee_format.is_signed_by(fee, flow.provider_address)
    data = fee_format.decode_provider_data(fee["providerData"])
    assert data["environment"] is None
    assert (data["dt"], data["id"]) == (access.datatoken, access.service_id)
    assert time.time() + 3500 < fee["validUntil"] <= time.time() + 3600


def test_download_whole_file_ranges_and_repeats(flow: Flow, access: Published) -> None:
    tx = order(flow, access)
    whole = download(flow, access, tx)
    assert whole.status_code == 200, whole.get_data(as_text=True)
    assert whole.data == BODY
    assert whole.headers["Content-Disposition"] == "attachment;filename=weather.bin"
    assert whole.headers["Accept-Ranges"] == "bytes"

    part = download(flow, access, tx, headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-299/{len(BODY)}"
    assert part.data == BODY[100:300]
    suffix = download(flow, access, tx, headers={"Range": "bytes=-16"})
    assert suffix.status_code == 206 and suffix.data == BODY[-16:]
    beyond = download(flow, access, tx, headers={"Range": f"bytes={len(BODY)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(BODY)}"

    second = download(flow, access, tx, 1)  # the same order serves every file, again and again
    assert second.status_code == 200 and second.data == SECOND
    assert second.headers["Content-Disposition"] == "attachment;filename=second.txt"
    assert download(flow, access, tx).data == BODY

    ipfs = download(flow, access, tx, 2)
    assert ipfs.status_code == 200 and ipfs.data == ON_IPFS

    again = initialize(flow, access, transferTxId=tx)
    assert again.status_code == 200
    assert again.get_json()["validOrder"] == tx and "providerFee" not in again.get_json()


def test_range_forwarded_to_a_gateway_that_honours_it(
    flow: Flow, access: Published, gw: Gateways
) -> None:
    tx = order(flow, access)
    part = download(flow, access, tx, 2, headers={"Range": "bytes=2990-"})
    assert part.status_code == 206, part.get_data(as_text=True)
    assert gw.ranges[-1] == "bytes=2990-"  # the gateway sent only the part
    assert part.headers["Content-Range"] == f"bytes 2990-2999/{len(ON_IPFS)}"
    assert part.data == ON_IPFS[2990:]
    assert part.headers["Content-Disposition"] == "attachment;filename=file2"
    beyond = download(flow, access, tx, 2, headers={"Range": "bytes=5000-6000"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(ON_IPFS)}"
    several = download(flow, access, tx, 2, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 416 and gw.ranges[-1] is None  # not forwarded


def test_download_refusals(
    flow: Flow, access: Published, other_account: LocalAccount, w3: Any
) -> None:
    tx = order(flow, access)
    bad_index = download(flow, access, tx, 3)
    assert bad_index.status_code == 400 and "fileIndex" in bad_index.get_json()["error"]
    forged = download(flow, access, tx, sign_as=other_account)
    assert forged.status_code == 400 and "signature" in forged.get_json()["errors"]
    stranger = download(flow, access, tx, account=other_account)
    assert stranger.status_code == 400
    assert stranger.get_json() == {"error": {"order": "order_invalid"}}
    unknown = download(flow, access, "0x" + "ab" * 32)
    assert unknown.get_json() == {"error": {"order": "order_invalid"}}

    # an order of another asset does not open this one
    other = flow.publish(
        "dataset",
        [{"type": "url", "url": flow.files.add("/access/o.txt", b"o"), "method": "GET"}],
        service_type="access",
    )
    assert download(flow, access, order(flow, other)).status_code == 400

    # a compute service is not downloadable, and initialize sends clients to initializeCompute
    compute = flow.publish(
        "dataset", [{"type": "url", "url": flow.files.add("/access/c.txt", b"c")}]
    )
    refused = initialize(flow, compute)
    assert refused.status_code == 400
    assert refused.get_json()["error"] == (
        "Use the initializeCompute endpoint to initialize compute jobs."
    )
    unknown_did = initialize(flow, access, documentId="did:op:" + "0" * 64)
    assert unknown_did.status_code == 404


def test_access_order_expires_with_the_service_timeout(flow: Flow) -> None:
    short = flow.publish(
        "dataset",
        [{"type": "url", "url": flow.files.add("/access/short.txt", b"short"), "method": "GET"}],
        service_type="access",
        timeout=2,
    )
    tx = order(flow, short)
    deadline = time.monotonic() + 30
    while (reply := download(flow, short, tx)).status_code == 200:
        assert reply.data == b"short"
        assert time.monotonic() < deadline, "the order never expired"
        time.sleep(0.5)
    assert reply.get_json() == {"error": {"order": "order_invalid"}}


def test_aquarius_ddo_and_metadata(flow: Flow, access: Published) -> None:
    order(flow, access)
    reply = flow.client.get(f"/api/aquarius/assets/ddo/{access.did}")
    assert reply.status_code == 200, reply.get_data(as_text=True)
    ddo = reply.get_json()
    assert ddo["id"] == access.did and ddo["services"][0]["id"] == access.service_id
    nft = ddo["nft"]
    assert nft["address"] == access.nft_address and nft["state"] == 0
    assert (nft["name"], nft["symbol"]) == ("tw-dataset", "TW")
    assert nft["owner"] == flow.publisher.address and nft["created"]
    assert ddo["datatokens"] == [
        {
            "address": access.datatoken,
            "name": "tw-dataset Datatoken",
            "symbol": "TW-DT",
            "serviceId": access.service_id,
        }
    ]
    event = ddo["event"]
    assert event["contract"] == access.nft_address and event["from"] == flow.publisher.address
    assert event["tx"].startswith("0x") and event["block"] > 0 and event["datetime"]
    assert ddo["stats"]["orders"] >= 1
    metadata = flow.client.get(f"/api/aquarius/assets/metadata/{access.did}")
    assert metadata.status_code == 200 and metadata.get_json() == ddo["metadata"]

    missing = flow.client.get("/api/aquarius/assets/ddo/did:op:" + "0" * 64)
    assert missing.status_code == 404 and "not found" in missing.get_json()["error"]
    revoked = flow.publish(
        "dataset",
        [{"type": "url", "url": flow.files.add("/access/r.txt", b"r"), "method": "GET"}],
        state=3,
    )
    for kind in ("ddo", "metadata"):
        assert flow.client.get(f"/api/aquarius/assets/{kind}/{revoked.did}").status_code == 404
