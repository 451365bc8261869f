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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import publish
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
        yield {"url": url, "log": tmp / "serve.log"}


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
            "meta": algo_ddo["metadata"]["algorithm"],
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
    files = {"/data.csv": DATA, "/algo.py": ALGORITHM}
    with stack.file_server(files) as files_url:
        assets = _publish(
            w3,
            served["url"],
            publisher_account,
            consumer_account,
            deployed,
            files_url,
            python_image,
            docker_client,
        )
        out = run_client(
            {
                "nodeUri": served["url"] + "/node",
                "rpcUrl": str(w3.provider.endpoint_uri),  # type: ignore[attr-defined]
                "chainId": w3.eth.chain_id,
                "consumerKey": "0x" + bytes(consumer_account.key).hex(),
                "paymentToken": deployed["Ocean"],
                "flows": ["free"],
                **assets,
            },
            tmp_path,
        )
    (env,) = out["environments"]
    assert env["id"] == "c2d" and env["free"]["maxJobs"] == 1
    free = out["free"]
    assert free["statuses"][-1] == 70
    assert free["job"]["environment"] == "c2d" and free["job"]["isFree"] is True
    _check_downloads(free)
    assert free["streamedLog"] is not None and "done" in free["streamedLog"]
    expected_rows = len(DATA.splitlines())
    rows = hashlib.sha256(json.dumps({"rows": expected_rows}).encode()).hexdigest()
    (output,) = [r for r in free["results"] if r["filename"] == "rows.json"]
    assert output["sha256"] == rows
