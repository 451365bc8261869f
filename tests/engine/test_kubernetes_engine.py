"""Whole jobs through the real engine and pipeline on the Kubernetes backend, with the pod's
life played on a fake API (tests/engine/test_kubernetes_backend.FakeKube): the statuses a pod's
failures end at, and a success whose finisher upload becomes the job's results."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from operator_engine import transfer_tokens
from operator_engine.backends.kubernetes import KubernetesBackend
from operator_engine.statuses import JobStatus
from tests.engine.conftest import FileServer
from tests.engine.test_kubernetes_backend import IMAGE, FakeKube, env_of
from tests.provider.core_support import job_request
from tidewater.engine_config import build_engine
from tidewater.settings import Settings

S = JobStatus
CONTAINER = {
    "image": "docker.io/library/python",
    "tag": "3.12",
    "checksum": "sha256:" + "5" * 64,
    "entrypoint": "python3 $ALGO",
}
ENV = {
    "id": "k8s",
    "platform": "kubernetes",
    "cpuNumber": 1,
    "ramGB": 1,
    "diskGB": 1,
    "maxJobs": 1,
    "maxJobDuration": 60,
    "feeToken": "0x" + "0c" * 20,
}


class UploadingKube(FakeKube):
    """A fake API whose pod really spends its inputs token, and whose finisher "uploads" a
    result into the job's folder once the engine armed the outputs token and reopened."""

    def pod_of(self, job_name: str) -> dict[str, Any] | None:
        pod = super().pod_of(job_name)
        job = self.created[-1] if self.created else None
        if pod is not None and job is not None and not getattr(self, "pulled", False):
            assert self.data_dir is not None
            job_id = job["metadata"]["labels"]["tidewater.job_id"]
            transfer_tokens.redeem(self.data_dir, job_id, "inputs", env_of(job, "fetch-inputs"))
            self.pulled = True
        return pod

    def label_pod(self, pod_name: str, labels: dict[str, str]) -> None:
        super().label_pod(pod_name, labels)
        if labels["tidewater.io/network"] == "transfer":
            job = self.created[-1]
            job_id = job["metadata"]["labels"]["tidewater.job_id"]
            assert self.data_dir is not None
            token = env_of(job, "publish-outputs")
            transfer_tokens.redeem(self.data_dir, job_id, "outputs", token)
            outputs = self.data_dir / "jobs" / job_id / "outputs"
            (outputs / "result.txt").write_text("uploaded by the finisher\n")


def run_job(
    tmp_path: Path,
    script: list[str],
    job: str | None = None,
    container: dict[str, str] = CONTAINER,
) -> Any:
    envs = tmp_path / "envs.json"
    envs.write_text(json.dumps([ENV]))
    settings = Settings.from_env(
        {
            "TIDEWATER_DATA_DIR": str(tmp_path / "data"),
            "TIDEWATER_ENVIRONMENTS": str(envs),
            "ALLOW_NON_PUBLIC_IP": "true",
            "NETWORK_URL": "http://127.0.0.1:9",
        }
    )
    fake = UploadingKube(script, job)
    fake.data_dir = Path(settings.data_dir).resolve()
    backend = KubernetesBackend(
        fake, image=IMAGE, internal_url="http://10.0.0.5:8030", poll_seconds=0
    )
    engine = build_engine(settings, backend=backend)
    files = FileServer()
    files.files["/data.csv"] = b"a,b\n1,2\n"
    try:
        request = job_request("0x" + "12" * 20, files.url("/data.csv"), container=container)
        submitted = engine.submit(replace(request, environment="k8s"))
        engine.run_until_idle(timeout=60)
        return engine.get(submitted.job_id)
    finally:
        files.close()
        engine.shutdown()
        engine.db.dispose()


def test_a_job_succeeds_with_what_the_finisher_uploaded(tmp_path: Path) -> None:
    job = run_job(tmp_path, ["fetching", "gating", "running", "publishing", "succeeded"])
    assert job.status is S.FINISHED, job.reason
    results = {r.filename: r for r in job.results}
    assert results["result.txt"].type == "output"
    assert results["result.txt"].filesize == len("uploaded by the finisher\n")
    assert results["algorithm.log"].filesize == len("algorithm says hi\n")


@pytest.mark.parametrize(
    ("script", "job_object", "status"),
    [
        (["fetching", "fetch-failed"], None, S.DATA_PROVISIONING_FAILED),
        (["gating", "image-pull-backoff"], None, S.ALGO_PROVISIONING_FAILED),
        (["running", "oom-killed"], None, S.RUN_FAILED),
        (["running", "publish-too-large"], None, S.EGRESS_EXCEEDED),
        (["running", "publish-failed"], None, S.UPLOAD_FAILED),
        (["running", "deadline-running"], "job-deadline-exceeded", S.STOPPED),
    ],
)
def test_pod_failures_end_the_job_at_their_status(
    tmp_path: Path, script: list[str], job_object: str | None, status: JobStatus
) -> None:
    job = run_job(tmp_path, script, job_object)
    assert job.status is status, job.reason
    assert any(r.type == "publishLog" for r in job.results)
    if status is S.RUN_FAILED:
        assert job.oom_killed and job.exit_code == 137


def test_an_image_without_a_digest_is_refused_at_provisioning(tmp_path: Path) -> None:
    no_digest = {k: v for k, v in CONTAINER.items() if k != "checksum"}
    job = run_job(tmp_path, ["running"], container=no_digest)
    assert job.status is S.ALGO_PROVISIONING_FAILED
    assert "by digest only" in (job.reason or "")
