"""ocean.js 3.4.6 (from npm, on Node 20) runs a whole free compute job against `tidewater serve`.

The script (oceanjs3/compute_flow.js) follows ocean.js's own ComputeExamples: it publishes with
ocean.js, orders through `handleOrder` (approve of the announced fee token, then startOrder),
starts the job, polls status every 2 s over Node's keep-alive agent and downloads every result
through `getComputeResultUrl`. Before issue 9 it failed twice: `approve` on a zero-address fee
token (CALL_EXCEPTION) and ECONNRESET when a poll raced gunicorn's 2 s keep-alive close.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from contracts_abi.devchain import DEV_ACCOUNTS
from tests.clients.conftest import EXPECTED_RESULT, Served, node_project

pytestmark = pytest.mark.integration


def test_oceanjs3_runs_a_free_compute_job(served: Served, tmp_path: Path) -> None:
    folder = node_project("oceanjs3")
    results = tmp_path / "results"
    env = {
        **os.environ,
        "NODE_URI": served.ganache.url,
        "PROVIDER_URL": served.url,
        "ADDRESS_FILE": str(served.address_file),
        "PUBLISHER_KEY": DEV_ACCOUNTS["publisher"],
        "CONSUMER_KEY": DEV_ACCOUNTS["consumer"],
        "DATASET_URL": served.dataset_url,
        "ALGORITHM_URL": served.algorithm_url,
        "ALGO_IMAGE": served.container["image"],
        "ALGO_TAG": served.container["tag"],
        "ALGO_CHECKSUM": served.container["checksum"],
        "ALGO_ENTRYPOINT": served.container["entrypoint"],
        "RESULTS_DIR": str(results),
    }
    done = subprocess.run(
        ["node", "compute_flow.js"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, (
        f"ocean.js flow failed:\n{done.stderr[-6000:]}\n--- provider log ---\n"
        + served.log_path.read_text()[-4000:]
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    # Aquarius.waitForIndexer resolved both from tidewater's embedded Aquarius read API
    resolved = summary["resolved"]
    assert resolved["dataset"]["id"] == summary["datasetId"]
    assert resolved["algorithm"]["id"] == summary["algorithmId"]
    assert resolved["dataset"]["metadata"]["type"] == "dataset"
    assert resolved["algorithm"]["metadata"]["algorithm"]["container"] == served.container
    assert resolved["dataset"]["nft"]["state"] == 0

    # the free environment names a real ERC-20: the chain's Ocean token
    assert summary["environment"]["feeToken"] == served.deployed["Ocean"]
    fees = [summary["initialize"]["algorithm"]["providerFee"]]
    fees += [d["providerFee"] for d in summary["initialize"]["datasets"]]
    assert all(f["providerFeeToken"] == served.deployed["Ocean"] for f in fees)

    final = summary["final"]
    assert final["status"] == 70, final
    assert summary["statuses"][-1] == 70 and summary["statuses"] == sorted(summary["statuses"])
    listed = {r["filename"]: r for r in final["results"]}
    downloads = {d["filename"]: d for d in summary["downloads"]}
    assert set(downloads) == set(listed) and "result.json" in downloads
    for name, got in downloads.items():
        data = (results / f"{got['index']}-{name}").read_bytes()
        assert got["size"] == len(data) == listed[name]["filesize"]
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
    output = results / f"{downloads['result.json']['index']}-result.json"
    assert json.loads(output.read_text()) == EXPECTED_RESULT

    # what a dApp offers next: stop leaves a finished job finished, delete removes it
    assert [j["status"] for j in summary["stopped"]] == [70]
    assert [j["status"] for j in summary["deleted"]] == [8]
    assert summary["afterDelete"] == []

    # "compute again" with the same asset objects (they carry the first orders' transferTxId)
    again = summary["again"]
    assert again["final"]["status"] == 70 and again["jobId"] != summary["jobId"], again["final"]
    # the first orders started a job already: initializeCompute names them (validOrder) with a
    # fresh providerFee, so handleOrder pays through reuseOrder and the new job has new orders
    for item in [again["initialize"]["algorithm"], *again["initialize"]["datasets"]]:
        assert item["validOrder"] in summary["orders"].values() and item["providerFee"], item
    assert set(again["orders"].values()).isdisjoint(summary["orders"].values())

    # a paid environment: approve + startOrder moved exactly the signed fee out of the wallet
    paid = summary["paid"]
    assert paid["final"]["status"] == 70, paid["final"]
    fee = paid["initialize"]["datasets"][0]["providerFee"]
    assert fee["providerFeeToken"] == served.deployed["Ocean"]
    assert int(fee["providerFeeAmount"]) > 0
    assert int(paid["consumerPaid"]) == int(fee["providerFeeAmount"])

    # keep-alive at work: the status polls (2 s apart) reused connections
    traffic = summary["traffic"]
    assert 0 < traffic["connections"] < traffic["requests"], traffic
