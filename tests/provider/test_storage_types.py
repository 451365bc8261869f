"""Every storage type on the real chain and Docker: ipfs and arweave from loopback gateways,
graphql from a loopback endpoint, smartcontract as an eth_call of the deployed Ocean token on
ganache. fileinfo answers each (with checksums) and a compute job reads each as an input."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from web3 import Web3

from contracts_abi import load
from tests.fixtures.gateways import Gateways
from tests.provider.chainflow import Flow, Published, container_for

pytestmark = pytest.mark.integration

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
TX = "bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U"
QUERY = "query Assets($account: String) { assets(owner: $account) { id } }"
ACCOUNT = "0x0000000000000000000000000000000000000001"
USERDATA = {"account": ACCOUNT}
#: The algorithm lists the sha256 and the text of every input file it was given.
ALGORITHM = """import hashlib, json, os, pathlib
did = json.loads(os.environ["DIDS"])[0]
found = {}
for path in sorted(pathlib.Path(os.environ["INPUTS"], did).iterdir(), key=lambda p: int(p.name)):
    data = path.read_bytes()
    found[path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "text": data.decode()}
pathlib.Path(os.environ["OUTPUTS"], "inputs.json").write_text(json.dumps(found, sort_keys=True))
"""


def view_abi(name: str) -> dict[str, Any]:
    """The ABI entry of the ERC-20 view function ``name`` (as Ocean's docs publish it)."""
    return next(e for e in load("ERC20Template").abi if e.get("name") == name)


@pytest.fixture(scope="module")
def flow(gateway_flow: Flow, gw: Gateways) -> Flow:
    gw.ipfs[CID] = b"day,rain\n1,0.5\n2,0.0\n"
    gw.arweave[TX] = b"arweave says hello\n"
    return gateway_flow


@pytest.fixture(scope="module")
def cases(flow: Flow, gw: Gateways) -> list[tuple[dict[str, Any], bytes]]:
    """(file object, the bytes it must yield) for every storage type."""
    ocean = Web3.to_checksum_address(flow.addresses["Ocean"])
    token = flow.w3.eth.contract(address=ocean, abi=load("ERC20Template").abi)
    symbol = token.functions.symbol().call()
    balance = token.functions.balanceOf(ACCOUNT).call()
    chain = flow.chain_id
    return [
        ({"type": "ipfs", "hash": CID}, gw.ipfs[CID]),
        ({"type": "arweave", "transactionId": TX}, gw.arweave[TX]),
        (
            {"type": "graphql", "url": gw.base_url + "/graphql", "query": QUERY},
            Gateways.graphql_answer(QUERY, USERDATA),
        ),
        (
            {
                "type": "smartcontract",
                "address": ocean,
                "abi": view_abi("symbol"),
                "chainId": chain,
            },
            json.dumps(symbol).encode(),
        ),
        (
            {
                "type": "smartcontract",
                "address": ocean,
                "abi": view_abi("balanceOf"),
                "chainId": chain,
            },
            json.dumps(balance).encode(),
        ),
    ]


@pytest.fixture(scope="module")
def dataset(flow: Flow, cases: list[tuple[dict[str, Any], bytes]]) -> Published:
    return flow.publish("dataset", [c[0] for c in cases], allow_raw_algorithm=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fileinfo_of_each_bare_file_object(
    flow: Flow, cases: list[tuple[dict[str, Any], bytes]]
) -> None:
    for file_obj, body in cases:
        body_json = {**file_obj, "checksum": True, "userdata": USERDATA}
        reply = flow.client.post("/api/services/fileinfo", json=body_json)
        assert reply.status_code == 200, reply.get_data(as_text=True)
        [info] = reply.get_json()
        assert info["valid"] is True, (file_obj, info)
        assert info["type"] == file_obj["type"]
        assert info["contentLength"] == str(len(body))
        assert (info["checksum"], info["checksumType"]) == (sha(body), "sha256")
    contract_info = flow.client.post("/api/services/fileinfo", json=cases[3][0]).get_json()[0]
    assert contract_info["contentType"] == "application/json" and "checksum" not in contract_info


def test_fileinfo_of_a_published_service_with_checksums(
    flow: Flow, dataset: Published, cases: list[tuple[dict[str, Any], bytes]]
) -> None:
    asked = {"did": dataset.did, "serviceId": dataset.service_id, "checksum": True}
    reply = flow.client.post("/api/services/fileinfo", json={**asked, "userdata": USERDATA})
    assert reply.status_code == 200, reply.get_data(as_text=True)
    infos = reply.get_json()
    assert [i["index"] for i in infos] == [0, 1, 2, 3, 4]
    assert [i["type"] for i in infos] == [c[0]["type"] for c in cases]
    for info, (_obj, body) in zip(infos, cases, strict=True):
        assert info["valid"] is True and info["checksum"] == sha(body)
    without = flow.client.post("/api/services/fileinfo", json={**asked, "fileIndex": 4})
    assert without.get_json()[0]["valid"] is False  # balanceOf lacks its `account` userdata
    assert "127.0.0.1" not in json.dumps(infos)  # file locations stay the publisher's secret


def test_compute_job_reads_every_storage_type(
    flow: Flow,
    dataset: Published,
    cases: list[tuple[dict[str, Any], bytes]],
    docker_client: Any,
    python_image: str,
) -> None:
    ds_item, _ = flow.ordered(dataset, None, "free")
    ds_item["userdata"] = USERDATA
    meta = {"rawcode": ALGORITHM, "container": container_for(docker_client, python_image)}
    started = flow.start(ds_item, {"meta": meta}, "free")
    assert started.status_code == 200, started.get_data(as_text=True)
    [job] = started.get_json()
    done = flow.wait_finished(job["jobId"])
    assert done["status"] == 70, flow.explain(done)
    [result] = [r for r in done["results"] if r["filename"] == "inputs.json"]
    whole = flow.result(job["jobId"], result["index"])
    assert whole.status_code == 200
    found = json.loads(whole.data)
    expected = {
        str(n): {"sha256": sha(body), "text": body.decode()} for n, (_o, body) in enumerate(cases)
    }
    assert found == expected

    # computeResult honours Range: a slice, a suffix, and an unsatisfiable range
    size = len(whole.data)
    part = flow.result(job["jobId"], result["index"], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 0-9/{size}"
    assert part.data == whole.data[:10]
    assert part.headers["Content-Disposition"] == "attachment;filename=inputs.json"
    tail = flow.result(job["jobId"], result["index"], headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == whole.data[-5:]
    beyond = flow.result(job["jobId"], result["index"], headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"
    assert "error" in beyond.get_json()
