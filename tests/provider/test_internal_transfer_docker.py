"""The Kubernetes data path against a real job run by the Docker backend (integration).

While a real job runs on Docker, the in-pod mover (``python -m operator_engine.transfer``, a
real subprocess) pulls the job's staged inputs from the provider over real HTTP on loopback
with a one-time token, and, once the algorithm container has ended, pushes outputs that the
engine then publishes as that job's results. Replays are refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from eth_account import Account
from werkzeug.serving import make_server

from operator_engine import transfer_tokens
from operator_engine.backends.docker import DockerBackend
from operator_engine.statuses import JobStatus
from operator_engine.transfer import TOKEN_ENV
from tests.provider.core_support import CONSUMER_KEY, docker_provider, run_raw_python_job

pytestmark = pytest.mark.integration
ALGORITHM = "print('algorithm ran')\n"
DATA = b"x,y\n1,2\n3,4\n"
PUSHED = b"pushed,through,the,finisher\n"


class HookedRunner:
    """The real Docker runner, calling ``on_start(job_id)`` before the container starts and
    ``on_wait(job_id)`` once it has ended (where a pod's init container and finisher act)."""

    def __init__(self, inner: Any, on_start: Any, on_wait: Any) -> None:
        self.__dict__.update(inner=inner, on_start=on_start, on_wait=on_wait, job={})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)  # the engine sets the runner's scope

    def start(self, spec: Any, *args: Any) -> str:
        self.on_start(spec.job_id)
        cid: str = self.inner.start(spec, *args)
        self.job[cid] = spec.job_id
        return cid

    def wait(self, cid: str) -> Any:
        info = self.inner.wait(cid)
        self.on_wait(self.job[cid])
        return info


def mover(
    command: str, url: str, job_id: str, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the in-pod mover as a pod would (the token in its environment)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "operator_engine.transfer",
            command,
            "--url",
            url,
            "--job",
            job_id,
            "--wait",
            "20",
            *args,
        ],
        env={**os.environ, TOKEN_ENV: token},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {}
    runner = HookedRunner(
        DockerBackend(docker_client, pull=False),
        lambda job_id: seen["on_start"](job_id),
        lambda job_id: seen["on_wait"](job_id),
    )
    with docker_provider(tmp_path, runner) as (app, engine):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {
                "engine": engine,
                "url": f"http://127.0.0.1:{server.port}",
                "seen": seen,
                "data_dir": tmp_path / "data",  # core_support.make_settings' data dir
                "tmp": tmp_path,
            }
        finally:
            server.shutdown()
            thread.join(timeout=10)


def test_a_docker_job_moves_its_data_through_the_internal_endpoints(
    served: dict[str, Any], python_image: str
) -> None:
    url, data_dir, tmp, seen = served["url"], served["data_dir"], served["tmp"], served["seen"]
    outcome: dict[str, Any] = {}

    def on_start(job_id: str) -> None:  # the init container's moment: inputs are staged
        token = transfer_tokens.mint(data_dir, job_id, "inputs", 60)
        dest = tmp / "pod-data"
        outcome["pull"] = mover(
            "pull", url, job_id, token, "--dest", str(dest), "--max-bytes", "1000000"
        )
        outcome["replay"] = mover(
            "pull", url, job_id, token, "--dest", str(tmp / "again"), "--max-bytes", "1000000"
        )
        outcome["dest"] = dest

    def on_wait(job_id: str) -> None:  # the finisher's moment: the algorithm has ended
        token = transfer_tokens.mint(
            data_dir, job_id, "outputs", 60, armed=False, max_bytes=10_000, max_entries=100
        )
        auth = {"Authorization": f"Bearer {token}"}
        outcome["early"] = requests.put(
            f"{url}/internal/jobs/{job_id}/outputs", headers=auth, data=b"", timeout=10
        )
        source = tmp / "pod-out"
        (source / "outputs").mkdir(parents=True)
        (source / "outputs" / "pushed.csv").write_bytes(PUSHED)
        transfer_tokens.arm(data_dir, token)
        outcome["push"] = mover("push", url, job_id, token, "--source", str(source))
        outcome["push_replay"] = requests.put(
            f"{url}/internal/jobs/{job_id}/outputs", headers=auth, data=b"", timeout=10
        )

    seen["on_start"], seen["on_wait"] = on_start, on_wait
    owner = Account.from_key(CONSUMER_KEY).address
    job_id = run_raw_python_job(served["engine"], owner, python_image, ALGORITHM, DATA)

    pull = outcome["pull"]
    assert pull.returncode == 0, pull.stderr
    assert "inputs received" in pull.stdout
    dest: Path = outcome["dest"]
    staged = [p for p in (dest / "inputs").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in staged] == [DATA]
    assert (dest / "transformations" / "algorithm").read_text() == ALGORITHM
    assert len(list((dest / "ddos").iterdir())) == 1
    replay = outcome["replay"]
    assert replay.returncode == 1 and "409 token_used" in replay.stderr
    assert outcome["early"].status_code == 409 and outcome["early"].json()["code"] == "not_armed"
    assert outcome["push"].returncode == 0, outcome["push"].stderr
    assert outcome["push_replay"].status_code == 409
    assert outcome["push_replay"].json()["code"] == "token_used"

    job = served["engine"].get(job_id)
    assert job is not None and job.status is JobStatus.FINISHED, job
    pushed = next(r for r in job.results if r.filename == "pushed.csv")
    assert pushed.type == "output" and pushed.filesize == len(PUSHED)
    assert pushed.sha256 == hashlib.sha256(PUSHED).hexdigest()
    log = next(r for r in job.results if r.type == "algorithmLog")
    assert log.filesize > 0
