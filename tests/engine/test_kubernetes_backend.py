"""The Kubernetes backend's steering on a fake API (the unit layer: the pod's life is played from
the API-shaped fixtures of tests/fixtures/kubernetes; no cluster runs here)."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from operator_engine import transfer_tokens
from operator_engine.backends.base import BackendError, ContainerSpec, ImageError, Limits, RunFailed
from operator_engine.backends.kubernetes import KubernetesBackend, digest_reference
from operator_engine.statuses import JobStatus
from operator_engine.workspace import JobFolder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes"
JOB = "0123456789abcdef0123456789abcdef"
IMAGE = "registry.example/tidewater@sha256:" + "0" * 64
ALGO = "docker.io/library/python@sha256:" + "5" * 64


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


class FakeKube:
    """The backend's KubeClient, answering each pod read with the next pod of ``script``."""

    namespace = "tidewater-jobs"

    def __init__(self, script: list[str], job: str | None = None) -> None:
        self.script = list(script)
        self.job_object = fixture(job) if job else None
        self.created: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str]] = []
        self.labels: list[str] = []
        self.armed_at_reopen: list[bool] = []
        self.lock = threading.Lock()
        self.data_dir: Path | None = None
        self.log = b""  # what follow_logs wrote
        self.log_calls = 0

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def create(self, body: dict[str, Any]) -> None:
        self.created.append(body)

    def delete(self, kind: str, name: str) -> None:
        self.deleted.append((kind, name))

    def job(self, name: str) -> dict[str, Any] | None:
        return self.job_object

    def jobs(self, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=") for part in selector.split(",") if "=" in part)
        return [
            body
            for body in self.created
            if body["kind"] == "Job"
            and all(body["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]

    def pod_of(self, job_name: str) -> dict[str, Any] | None:
        with self.lock:
            if ("Job", job_name) in self.deleted:
                return None
            name = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return fixture(f"pod-{name}")

    def label_pod(self, pod_name: str, labels: dict[str, str]) -> None:
        value = labels["tidewater.io/network"]
        self.labels.append(value)
        if value == "transfer":  # was the outputs token armed before the network reopened?
            token = env_of(self.created[-1], "publish-outputs")
            assert self.data_dir is not None
            grant = json.loads(
                (self.data_dir / "transfer-tokens" / transfer_tokens.token_hash(token)).read_text()
            )
            self.armed_at_reopen.append(grant["armed"])

    def log_stream(self, pod_name: str, container: str) -> Any:
        assert container == "algorithm"
        self.log_calls += 1
        if self.log_calls == 1:  # the API refuses the log of a container still being created
            raise BackendError("Kubernetes refused to follow a pod's log: 400 Bad Request")
        yield b"algorithm says hi\n"


def env_of(job: dict[str, Any], container: str) -> str:
    pod = job["spec"]["template"]["spec"]
    found = next(c for c in [*pod["initContainers"], *pod["containers"]] if c["name"] == container)
    return str(found["env"][0]["value"])


def run(tmp_path: Path, script: list[str], job: str | None = None) -> tuple[FakeKube, Any]:
    """Start a job on the backend with the fake API; (fake, what wait gave or raised)."""
    folder = JobFolder.of(tmp_path, JOB)
    folder.create()
    (folder.inputs / "did").mkdir()
    (folder.inputs / "did" / "0").write_bytes(b"x" * 100)
    fake = FakeKube(script, job)
    fake.data_dir = tmp_path
    backend = KubernetesBackend(
        fake, image=IMAGE, internal_url="http://10.0.0.5:8030", poll_seconds=0
    )
    backend.bind(scope="scope1", data_dir=tmp_path)
    spec = ContainerSpec(
        JOB, ALGO, "python3 $ALGO", {}, Limits(cpu=1, memory=2**30, disk=10**6, duration=60)
    )
    area = SimpleNamespace(budget=10**6, max_entries=100, ready=lambda: None)
    cid = backend.start(spec, area)  # type: ignore[arg-type]
    sink = io.BytesIO()
    backend.follow_logs(cid, sink, 1000)
    try:
        outcome: Any = backend.wait(cid)
    except Exception as exc:
        outcome = exc
    assert backend.containers(JOB) == [(cid, JOB)]
    backend.remove(cid)
    fake.log = sink.getvalue()
    return fake, outcome


def test_a_successful_pod(tmp_path: Path) -> None:
    fake, outcome = run(
        tmp_path,
        ["pending-unscheduled", "fetching", "gating", "running", "publishing", "succeeded"],
    )
    assert (outcome.exit_code, outcome.oom_killed) == (0, False)
    assert [b["kind"] for b in fake.created] == ["NetworkPolicy", "NetworkPolicy", "Job"]
    assert fake.labels == ["closed", "transfer"] and fake.armed_at_reopen == [True]
    assert fake.log == b"algorithm says hi\n"
    name = "tw-" + JOB
    assert fake.deleted == [
        ("Job", name),
        ("NetworkPolicy", name + "-deny"),
        ("NetworkPolicy", name + "-transfer"),
    ]
    job = fake.created[2]
    assert env_of(job, "fetch-inputs") != env_of(job, "publish-outputs")
    data = job["spec"]["template"]["spec"]["volumes"][0]
    assert data["emptyDir"]["sizeLimit"] == str(100 + 10**6)  # the staged inputs + the share
    # the tokens are revoked with the job
    with pytest.raises(transfer_tokens.TransferDenied):
        transfer_tokens.redeem(tmp_path, JOB, "inputs", env_of(job, "fetch-inputs"))


@pytest.mark.parametrize(
    ("script", "job", "status"),
    [
        (["fetching", "fetch-failed"], None, JobStatus.DATA_PROVISIONING_FAILED),
        (["gating", "gate-failed"], None, JobStatus.RUN_FAILED),
        (["running", "publish-too-large"], None, JobStatus.EGRESS_EXCEEDED),
        (["running", "publish-failed"], None, JobStatus.UPLOAD_FAILED),
        (["running", "evicted-ephemeral"], None, JobStatus.EGRESS_EXCEEDED),
        (["running", "deadline-running"], "job-deadline-exceeded", JobStatus.STOPPED),
    ],
)
def test_pod_failures_carry_the_job_status(
    tmp_path: Path, script: list[str], job: str | None, status: JobStatus
) -> None:
    _fake, outcome = run(tmp_path, script, job)
    assert isinstance(outcome, RunFailed) and outcome.status == status, outcome


def test_algorithm_failures_are_exits(tmp_path: Path) -> None:
    _fake, oom = run(tmp_path, ["running", "oom-killed"])
    assert (oom.exit_code, oom.oom_killed) == (137, True)
    _fake, image = run(tmp_path / "b", ["gating", "image-pull-backoff"])
    assert isinstance(image, ImageError) and "ImagePullBackOff" in str(image)


def test_images_run_by_digest_only() -> None:
    digest = "sha256:" + "b" * 64
    assert digest_reference("python:3.12", digest) == f"python@{digest}"
    assert digest_reference("reg:5000/team/algo:1", digest) == f"reg:5000/team/algo@{digest}"
    assert digest_reference(f"algo@{digest}", None) == f"algo@{digest}"
    for checksum in (None, "sha256:abc", "md5:" + "b" * 64):
        with pytest.raises(ImageError, match="by digest"):
            digest_reference("python:3.12", checksum)


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: engine, user: {token: not-a-real-token}}]
contexts: [{name: local, context: {cluster: local, user: engine, namespace: tidewater-jobs}}]
current-context: local
"""


def test_the_real_client_reports_an_unreachable_api_server(tmp_path: Path) -> None:
    """The official client, configured from a kubeconfig, against a port nothing listens on."""
    from operator_engine.backends.base import BackendError, BackendNotConfigured
    from operator_engine.backends.kube_client import KubeClient, load_api_client

    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIG)
    client = KubeClient(load_api_client(str(config)), "tidewater-jobs")
    client.api_client.configuration.retries = 0
    try:
        with pytest.raises(BackendError, match="did not answer"):
            client.ping()
    finally:
        client.close()
    with pytest.raises(BackendNotConfigured, match="no usable Kubernetes configuration"):
        load_api_client(str(tmp_path / "missing"))


def test_the_backend_needs_its_settings() -> None:
    from operator_engine.backends.base import BackendNotConfigured
    from operator_engine.backends.kubernetes import from_config
    from tidewater.engine_config import engine_config
    from tidewater.settings import Settings

    with pytest.raises(BackendNotConfigured, match="TIDEWATER_KUBERNETES_IMAGE"):
        from_config(engine_config(Settings.from_env({})))
