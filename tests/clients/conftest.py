"""One `tidewater serve` for the real-client tests: real ganache with the Ocean contracts, real
Docker, a free and a paid environment that name no fee token (so both must announce the chain's
Ocean token), and a loopback file server holding the dataset and the algorithm the clients
publish.

Session-scoped: every client test in tests/clients shares it (each publishes its own assets).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import publish
from contracts_abi.devchain import DEV_ACCOUNTS, Ganache
from tests.fixtures.requirements import unavailable
from tidewater.stack import ServerFailed, file_server, provider_server

HERE = Path(__file__).parent
#: Runs under .venv-oceanpy (ocean.py, web3 6), never imported by this interpreter.
collect_ignore = ["oceanpy/c2d_flow.py"]
DATASET = b"".join(b"%d,%d\n" % (i, i * i) for i in range(1000))
#: The algorithm both clients publish: counts the dataset's rows into result.json.
ALGORITHM = b"""import json, os, time
time.sleep(4)  # long enough for a client polling every 2 s to reuse its connection
dids = json.loads(os.environ["DIDS"])
rows = open("/data/inputs/%s/0" % dids[0]).read().splitlines()
with open("/data/outputs/result.json", "w") as out:
    json.dump({"rows": len(rows), "last": rows[-1]}, out)
print("rows", len(rows))
"""
EXPECTED_RESULT = {"rows": 1000, "last": "999,998001"}
_ENV = {"cpuNumber": 1, "ramGB": 1, "diskGB": 1, "maxJobs": 2, "maxJobDuration": 120}
ENVIRONMENTS = [
    {"id": "free", **_ENV, "priceMin": 0},
    {"id": "paid", **_ENV, "priceMin": 1},  # 1 Ocean a minute of validUntil
]
DEV_ADDRESSES = {name: Account.from_key(key).address for name, key in DEV_ACCOUNTS.items()}


@dataclass(frozen=True)
class Served:
    """The running stack as a client sees it."""

    url: str
    ganache: Ganache
    address_file: Path
    deployed: dict[str, Any]
    files: str
    container: dict[str, str]
    log_path: Path

    @property
    def dataset_url(self) -> str:
        return self.files + "/data.csv"

    @property
    def algorithm_url(self) -> str:
        return self.files + "/algorithm.py"


@pytest.fixture(scope="session")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    ganache: Ganache,
    w3: Web3,
    deployer_account: LocalAccount,
    address_file: Path,
    deployed: dict[str, Any],
    docker_client: docker.DockerClient,
    python_image: str,
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served")
    name, tag = python_image.rsplit(":", 1)
    container = {
        "image": name,
        "tag": tag,
        "checksum": docker_client.images.get(python_image).id,
        "entrypoint": "python3 $ALGO",
    }
    # a free and a paid environment; neither names a fee token, so both use the chain's Ocean
    envs = folder / "envs.json"
    envs.write_text(json.dumps(ENVIRONMENTS))
    # the publisher's Ocean, which the ocean.js flow sends on to its consumer (ComputeExamples 5.2)
    publish.transfer(w3, deployer_account, deployed["Ocean"], DEV_ADDRESSES["publisher"], 10**21)
    env = {
        "NETWORK_URL": ganache.url,
        "PROVIDER_PRIVATE_KEY": DEV_ACCOUNTS["provider"],
        "TIDEWATER_DATA_DIR": str(folder / "data"),
        "TIDEWATER_DB": f"sqlite:///{folder / 'tidewater.db'}",
        "ADDRESS_FILE": str(address_file),
        "ALLOW_NON_PUBLIC_IP": "true",  # the clients' files are served on loopback
        "TIDEWATER_PULL_IMAGES": "false",
        "TIDEWATER_ENVIRONMENTS": str(envs),
        "TIDEWATER_WORKERS": "1",
    }
    log_path = folder / "provider.log"
    files = {"/data.csv": DATASET, "/algorithm.py": ALGORITHM}
    with file_server(files) as files_url:
        try:
            with provider_server(env, log_path=log_path, ready_timeout=120) as url:
                yield Served(url, ganache, address_file, deployed, files_url, container, log_path)
        except ServerFailed as exc:
            pytest.fail(f"tidewater serve did not start: {exc}")


def node_project(name: str) -> Path:
    """The installed client folder tests/clients/<name> (``make bootstrap`` runs npm ci there)."""
    folder = HERE / name
    if shutil.which("node") is None:
        unavailable("node is not installed (Node 20 runs the ocean.js client tests)")
    if not (folder / "node_modules").is_dir():
        unavailable(f"{folder}/node_modules is missing: run `make bootstrap`")
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 20:
        unavailable(f"Node {version.strip()} is too old for these tests (need 20+)")
    return folder
