"""Bob's half of ocean.py 3.1.2's C2D quickstart (READMEs/c2d-flow.md), against tidewater.

Run with the interpreter of ``.venv-oceanpy`` (ocean.py pins web3 6; tidewater uses web3 7).
The dataset and algorithm are published by the Python side of the test (ocean.py's own
``ocean.assets.create*`` needs an Aquarius ``/ddo/validate`` signature that tidewater does not
offer); from there on this is the quickstart as written: resolve both DDOs through the
metadata cache (tidewater's embedded Aquarius read API), Alice mints datatokens to Bob, Bob
picks the free C2D environment, ``pay_for_compute_service`` (initializeCompute, then
startOrder/reuseOrder with the provider fees), ``ocean.compute.start``, ``ocean.compute.status``
until ``dateFinished``, then ``compute_job_result_logs`` and ``ocean.compute.result`` for every
result; then ``ocean.compute.stop`` and the provider's ``delete_compute_job``.

Input: environment variables (see ``need``). Output: progress on stderr, one JSON line on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from eth_account import Account
from ocean_lib.data_provider.data_service_provider import DataServiceProvider
from ocean_lib.example_config import get_config_dict
from ocean_lib.models.compute_input import ComputeInput
from ocean_lib.ocean.ocean import Ocean
from ocean_lib.ocean.util import to_wei

POLL_SECONDS = 2.0
JOB_TIMEOUT_SECONDS = float(os.environ.get("JOB_TIMEOUT_SECONDS", "240"))


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"environment variable {name} is required")
    return value


def log(message: str) -> None:
    print(f"[oceanpy] {message}", file=sys.stderr, flush=True)


def main() -> None:
    provider_url = need("PROVIDER_URL")
    config = get_config_dict(need("OCEAN_NETWORK_URL"))  # reads ADDRESS_FILE from the env
    config["METADATA_CACHE_URI"] = provider_url  # tidewater's embedded Aquarius read API
    config["PROVIDER_URL"] = provider_url
    ocean = Ocean(config)
    alice = Account.from_key(need("TEST_PRIVATE_KEY1"))
    bob = Account.from_key(need("TEST_PRIVATE_KEY2"))

    # 5. Bob acquires datatokens for data and algorithm (Alice mints them to him)
    DATA_ddo = ocean.assets.resolve(need("DATA_DID"))
    ALGO_ddo = ocean.assets.resolve(need("ALGO_DID"))
    assert DATA_ddo is not None and ALGO_ddo is not None, "the metadata cache has no DDO"
    compute_service = DATA_ddo.services[0]
    algo_service = ALGO_ddo.services[0]
    DATA_datatoken = ocean.get_datatoken(compute_service.datatoken)
    ALGO_datatoken = ocean.get_datatoken(algo_service.datatoken)
    DATA_datatoken.mint(bob, to_wei(5), {"from": alice})
    ALGO_datatoken.mint(bob, to_wei(5), {"from": alice})
    log("Bob holds datatokens of both assets")

    # 6. Bob starts a compute job using a free C2D environment
    free_c2d_env = ocean.compute.get_free_c2d_environment(
        compute_service.service_endpoint, DATA_ddo.chain_id
    )
    log(f"free environment {free_c2d_env['id']}, fee token {free_c2d_env['feeToken']}")
    DATA_compute_input = ComputeInput(DATA_ddo, compute_service)
    ALGO_compute_input = ComputeInput(ALGO_ddo, algo_service)
    datasets, algorithm = ocean.assets.pay_for_compute_service(
        datasets=[DATA_compute_input],
        algorithm_data=ALGO_compute_input,
        consume_market_order_fee_address=bob.address,
        tx_dict={"from": bob},
        compute_environment=free_c2d_env["id"],
        valid_until=int((datetime.now(timezone.utc) + timedelta(days=1)).timestamp()),  # noqa: UP017 (runs on 3.10)
        consumer_address=free_c2d_env["consumerAddress"],
    )
    assert datasets, "pay for dataset unsuccessful"
    assert algorithm, "pay for algorithm unsuccessful"
    job_id = ocean.compute.start(
        consumer_wallet=bob,
        dataset=datasets[0],
        compute_environment=free_c2d_env["id"],
        algorithm=algorithm,
    )
    log(f"job {job_id} started")

    # 7. Bob monitors logs / algorithm output
    statuses: list[int] = []
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while True:
        status = ocean.compute.status(DATA_ddo, compute_service, job_id, bob)
        if not statuses or statuses[-1] != status["status"]:
            statuses.append(status["status"])
            log(f"status {status['status']} {status['statusText']}")
        if status.get("dateFinished") and Decimal(status["dateFinished"]) > 0:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)

    output = ocean.compute.compute_job_result_logs(DATA_ddo, compute_service, job_id, bob)[0]
    results = Path(need("RESULTS_DIR"))
    results.mkdir(parents=True, exist_ok=True)
    downloads = []
    for index, entry in enumerate(status.get("results") or []):
        data = ocean.compute.result(DATA_ddo, compute_service, job_id, index, bob)
        (results / f"{index}-{Path(entry['filename']).name}").write_bytes(data)
        downloads.append(
            {
                "index": index,
                "filename": entry["filename"],
                "type": entry["type"],
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    # Stop (a finished job stays finished) and delete, as ocean.py signs them (query strings)
    stopped = ocean.compute.stop(DATA_ddo, compute_service, job_id, bob)
    deleted = DataServiceProvider.delete_compute_job(DATA_ddo.did, job_id, compute_service, bob)
    summary = {
        "environment": free_c2d_env,
        "jobId": job_id,
        "statuses": statuses,
        "final": status,
        "output": output.decode("utf-8", "replace"),
        "downloads": downloads,
        "datasetOrder": datasets[0].transfer_tx_id,
        "algorithmOrder": algorithm.transfer_tx_id,
        "stopped": stopped,
        "deleted": deleted,
    }
    print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
    main()
