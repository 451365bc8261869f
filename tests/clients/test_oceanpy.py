"""ocean.py 3.1.2 (from PyPI, own venv) runs a whole free compute job against `tidewater serve`.

ocean.py pins web3 6.11.4 and ocean-contracts 2.0.3 (tidewater needs web3 7 and
ocean-contracts 3), so it lives in ``.venv-oceanpy`` (``make bootstrap``) and its script
(oceanpy/c2d_flow.py, Bob's half of ocean.py's C2D quickstart) runs as a subprocess. The
assets are published here, through the provider's encrypt endpoint, with a dataset that trusts
the algorithm by DID, files checksum and container checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from contracts_abi import publish
from contracts_abi.devchain import DEV_ACCOUNTS, dev_account
from tests.clients.conftest import ALGORITHM, EXPECTED_RESULT, HERE, Served
from tests.fixtures.requirements import unavailable
from tidewater.client import ProviderClient
from tidewater.demo_roles import Publisher

pytestmark = pytest.mark.integration
ROOT = HERE.parent.parent
OCEANPY_PYTHON = ROOT / ".venv-oceanpy" / "bin" / "python"


def _published(served: Served) -> tuple[str, str]:
    """(dataset DID, algorithm DID): an algorithm and a dataset that trusts it."""
    w3 = Web3(Web3.HTTPProvider(served.ganache.url, request_kwargs={"timeout": 30}))
    client = ProviderClient(served.url, timeout=30)
    try:
        provider_address = client.root()["providerAddresses"][str(w3.eth.chain_id)]
        owner = Publisher(w3, dev_account("publisher"), served.deployed, client, provider_address)
        algorithm = owner.publish(
            "algorithm", "row-count", served.algorithm_url, container=served.container
        )
        trusted = publish.trusted_algorithm(algorithm.ddo, [ALGORITHM])
        dataset = owner.publish("dataset", "squares", served.dataset_url, trusted=[trusted])
    finally:
        client.close()
    return dataset.did, algorithm.did


def test_oceanpy_runs_a_free_compute_job(served: Served, tmp_path: Path) -> None:
    if not OCEANPY_PYTHON.exists():
        unavailable(f"{OCEANPY_PYTHON} is missing: run `make bootstrap`")
    data_did, algo_did = _published(served)
    results = tmp_path / "results"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        "OCEAN_NETWORK_URL": served.ganache.url,
        "ADDRESS_FILE": str(served.address_file),
        "PROVIDER_URL": served.url,
        "TEST_PRIVATE_KEY1": DEV_ACCOUNTS["publisher"],
        "TEST_PRIVATE_KEY2": DEV_ACCOUNTS["other"],
        "DATA_DID": data_did,
        "ALGO_DID": algo_did,
        "RESULTS_DIR": str(results),
    }
    done = subprocess.run(
        [str(OCEANPY_PYTHON), str(HERE / "oceanpy" / "c2d_flow.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, (
        f"ocean.py flow failed:\n{done.stderr[-6000:]}\n--- provider log ---\n"
        + served.log_path.read_text()[-4000:]
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    assert summary["environment"]["feeToken"] == served.deployed["Ocean"]
    final = summary["final"]
    assert final["status"] == 70, final
    assert summary["statuses"][-1] == 70
    assert json.loads(summary["output"]) == EXPECTED_RESULT
    listed = {r["filename"]: r for r in final["results"]}
    downloads = {d["filename"]: d for d in summary["downloads"]}
    assert set(downloads) == set(listed) and "result.json" in downloads
    for name, got in downloads.items():
        data = (results / f"{got['index']}-{name}").read_bytes()
        assert got["size"] == len(data) == listed[name]["filesize"]
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
    stopped, deleted = summary["stopped"], summary["deleted"]
    stopped = stopped[0] if isinstance(stopped, list) else stopped
    deleted = deleted[0] if isinstance(deleted, list) else deleted
    assert stopped["status"] == 70 and deleted["status"] == 8, (stopped, deleted)
