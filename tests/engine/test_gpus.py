"""GPU environments: the device request each job's container gets, and the refusal at load
when the Docker engine has no GPU runtime (this machine has none)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import docker
import pytest

from operator_engine.api import EngineError
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.docker import DockerBackend, device_requests
from operator_engine.backends.fake import FakeBackend
from operator_engine.statuses import JobStatus
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine


def _run_one(tmp_path: Path, file_server: FileServer, **env_over: Any) -> ContainerSpec:
    file_server.files["/d"] = b"x"
    seen: list[ContainerSpec] = []

    def algo(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event):
        seen.append(spec)
        return 0, False, b""

    settings = settings_for(tmp_path, [env(**env_over)], allow_non_public_ip=True)
    engine = build_engine(settings, backend=FakeBackend(algo, gpus=True))
    job = engine.submit(request(files=[{"type": "url", "url": file_server.url("/d")}]))
    engine.run_until_idle()
    assert engine.get(job.job_id).status is JobStatus.FINISHED  # type: ignore[union-attr]
    return seen[0]


@pytest.mark.parametrize(
    ("env_over", "gpus", "devices", "request_shape"),
    [
        ({"gpuNumber": 4, "maxJobs": 2}, 2, (), {"Count": 2, "DeviceIDs": []}),
        ({"gpuNumber": 1, "maxJobs": 3}, 1, (), {"Count": 1, "DeviceIDs": []}),
        ({"gpuNumber": 2, "gpuDevices": ["1", "3"]}, 2, ("1", "3"), {"DeviceIDs": ["1", "3"]}),
    ],
)
def test_each_job_requests_its_gpu_share(
    tmp_path: Path,
    file_server: FileServer,
    env_over: dict[str, Any],
    gpus: int,
    devices: tuple[str, ...],
    request_shape: dict[str, Any],
) -> None:
    spec = _run_one(tmp_path, file_server, **env_over)
    assert (spec.limits.gpus, spec.limits.gpu_devices) == (gpus, devices)
    (req,) = device_requests(spec)
    assert req["Capabilities"] == [["gpu"]] and req["Driver"] == ""
    for key, value in request_shape.items():
        assert req[key] == value


def test_no_gpu_no_device_request(tmp_path: Path, file_server: FileServer) -> None:
    spec = _run_one(tmp_path, file_server)
    assert spec.limits.gpus == 0 and device_requests(spec) == []


def test_fake_runner_without_gpus_refuses_a_gpu_environment(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [env(gpuNumber=1)])
    with pytest.raises(EngineError, match="ask for GPUs"):
        build_engine(settings, backend=FakeBackend())


@pytest.mark.integration
def test_this_docker_engine_has_no_gpu_runtime_and_a_gpu_env_is_refused(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    runner = DockerBackend(docker_client, pull=False)
    reason = runner.gpu_support()
    assert reason is not None and "no GPU runtime" in reason
    settings = settings_for(tmp_path, [env(id="gpu-env", gpuNumber=1)])
    with pytest.raises(EngineError) as caught:
        build_engine(settings, backend=runner)
    assert "gpu-env" in str(caught.value) and "NVIDIA Container Toolkit" in str(caught.value)
