"""The Docker backend: hardened algorithm containers on the local Docker engine.

It translates the neutral :class:`~operator_engine.backends.base.ContainerSpec`: volumes become
bind mounts of the job's folder (:class:`~operator_engine.backends.folder.FolderWorkspace`),
``outputs`` and ``logs`` those of the run's disk-share area (``TIDEWATER_DISK_QUOTA``, see
:mod:`~operator_engine.backends.quota`); limits become ``nano_cpus``, ``mem_limit`` (=
``memswap_limit``), ``pids_limit``, a tmpfs size and GPU device requests; the image is the local
image id :meth:`DockerBackend.resolve_image` verified.

Every container gets (see the README's isolation table): no network, a read-only root, a
small noexec tmpfs ``/tmp``, no capabilities, ``no-new-privileges``, the ``nobody`` user, PID,
memory (no extra swap) and CPU limits, and only ``/data/outputs`` and ``/data/logs`` writable.
Images are run by their verified id, never by a mutable tag. Output is not logged by the
daemon (log driver ``none``: no copy on the host outside the job's disk share): the engine
attaches to the container before starting it and streams everything it prints, with
back-pressure, into the job's algorithm log.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import docker
import docker.errors
import requests
from docker.types import DeviceRequest, LogConfig, Ulimit
from docker.types import Mount as DockerMount

from contracts_abi.checksums import is_sha256_digest
from operator_engine.backends.base import (
    JOB_LABEL,
    SCOPE_LABEL,
    Backend,
    BackendError,
    ContainerSpec,
    ExitInfo,
    ImageError,
    RunArea,
    Volume,
)
from operator_engine.backends.docker_api import stream_client, tune
from operator_engine.backends.folder import FolderBackend, area_paths
from operator_engine.backends.quota import WritableArea

if TYPE_CHECKING:
    from operator_engine.config import EngineConfig

ALGORITHM_USER = "65534:65534"


def _image_ref(image: str, tag: str | None) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image
    return f"{image}:{tag or 'latest'}"


def from_config(config: EngineConfig) -> DockerBackend:
    """The Docker backend of ``config`` (its ``pull_images`` and ``disk_quota``)."""
    return DockerBackend(pull=config.pull_images, disk_quota=config.disk_quota)


class DockerBackend(FolderBackend):
    """Runs algorithm containers on the local Docker engine."""

    platform = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        pull: bool = True,
        disk_quota: str = "auto",
    ) -> None:
        self._own_client = client is None
        try:
            self.client = client or docker.from_env(timeout=60)
            #: the SDK's low-level client: one HTTP call per Docker operation (the high-level
            #: models inspect the container again after create, get and reload)
            self.api = tune(self.client.api)
            self._stream = stream_client()  # for log streams: no read timeout
        except docker.errors.DockerException as exc:
            raise BackendError(f"Docker is not reachable ({exc}): start dockerd") from exc
        self.pull = pull
        self.disk_quota = disk_quota
        self._attached: dict[str, Any] = {}  # container id -> its output stream
        self._attached_lock = threading.Lock()

    def ping(self) -> None:
        try:
            self.client.ping()
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BackendError(
                f"Docker is not reachable ({type(exc).__name__}): start dockerd"
            ) from exc

    def close(self) -> None:
        self._stream.close()
        if self._own_client:
            self.client.close()

    # -- images ------------------------------------------------------------------------------

    def _local(self, ref: str) -> dict[str, Any] | None:
        """The local image ``ref``'s inspect data, None when absent."""
        try:
            return dict(self.api.inspect_image(ref))
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 404):
                return None
            raise BackendError(f"Docker image lookup failed: {exc.explanation}") from exc

    @staticmethod
    def _matches(img: dict[str, Any], checksum: str) -> bool:
        digests = {d.split("@", 1)[-1] for d in img.get("RepoDigests") or []}
        return checksum == img.get("Id") or checksum in digests

    def _pull(self, ref: str, auth: dict[str, str] | None = None) -> dict[str, Any] | None:
        if not self.pull:
            return None
        try:
            return dict(self.client.images.pull(ref, auth_config=auth).attrs)
        except (docker.errors.APIError, requests.RequestException):
            return None

    def resolve_image(
        self,
        image: str,
        tag: str | None,
        checksum: str | None,
        auth: dict[str, str] | None = None,
    ) -> str:
        ref = _image_ref(image, tag)
        if checksum:
            if not is_sha256_digest(checksum):
                raise ImageError(f"container checksum {checksum!r} must start with 'sha256:'")
            name = image.split("@", 1)[0]
            for candidate in (ref, f"{name}@{checksum}"):
                img = self._local(candidate)
                if img is not None and self._matches(img, checksum):
                    return str(img["Id"])
            pulled = self._pull(f"{name}@{checksum}", auth)
            if pulled is not None and self._matches(pulled, checksum):
                return str(pulled["Id"])
            present = self._local(ref)
            if present is not None:
                raise ImageError(
                    f"image {ref} is {present['Id']}, which does not match checksum {checksum}"
                )
            raise ImageError(f"image {name}@{checksum} is not present and could not be pulled")
        img = self._local(ref) or self._pull(ref, auth)
        if img is None:
            raise ImageError(f"image {ref} is not present and could not be pulled")
        return str(img["Id"])

    def gpu_support(self) -> str | None:
        """None when this Docker engine has the NVIDIA runtime that GPU device requests need."""
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except (docker.errors.APIError, requests.RequestException) as exc:
            return f"the Docker engine did not answer ({type(exc).__name__})"
        if "nvidia" in runtimes:
            return None
        return (
            f"the Docker engine has no GPU runtime (runtimes: {', '.join(sorted(runtimes))}); "
            "install the NVIDIA Container Toolkit and restart dockerd"
        )

    # -- containers --------------------------------------------------------------------------

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        """Create the container and attach to it while ``area``'s disk share is being made
        (Docker checks that a bind mount's source exists at create and resolves it at start),
        then start it once the share is ready."""
        if not isinstance(area, WritableArea):
            raise BackendError("the Docker backend runs only in its own workspaces' areas")
        paths = area_paths(area)
        try:
            container_id = self._create(spec, paths)
            try:
                self._attach(container_id)
                area.ready()
                if area_paths(area) != paths:  # auto fell back to polling the job's folders
                    self.remove(container_id)
                    container_id = self._create(spec, area_paths(area))
                    self._attach(container_id)
                self.api.start(container_id)
            except BaseException:
                with contextlib.suppress(BackendError):  # no container the job cannot name
                    self.remove(container_id)
                raise
        except docker.errors.ImageNotFound as exc:
            raise ImageError(
                f"image {spec.image} vanished before the run: {exc.explanation}"
            ) from exc
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BackendError(f"Docker could not start the algorithm container: {exc}") from exc
        return container_id

    def _attach(self, container_id: str) -> None:
        """Attach to its output before the start: nothing it prints is missed."""
        output = self._stream.attach(container_id, stdout=True, stderr=True, stream=True)
        with self._attached_lock:
            self._attached[container_id] = output

    def _create(self, spec: ContainerSpec, paths: dict[Volume, Path]) -> str:
        """Create (not start) the hardened container of ``spec`` with its volumes at ``paths``."""
        limits = spec.limits
        api = self.api
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmp}"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            ipc_mode="private",
            pids_limit=limits.pids,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            nano_cpus=int(limits.cpu * 1e9),
            oom_score_adj=500,
            ulimits=[
                Ulimit(name="core", soft=0, hard=0),
                Ulimit(name="nofile", soft=1024, hard=1024),
            ],
            log_config=LogConfig(type="none"),
            mounts=[
                DockerMount(m.target, str(paths[m.volume]), type="bind", read_only=m.read_only)
                for m in spec.mounts
            ],
            device_requests=device_requests(spec),
        )
        created = api.create_container(
            image=spec.image,
            entrypoint=["/bin/sh", "-c", spec.command],
            working_dir="/",
            environment=dict(spec.environment),
            labels={JOB_LABEL: spec.job_id, **({SCOPE_LABEL: self.scope} if self.scope else {})},
            user=ALGORITHM_USER,
            hostname="algorithm",
            host_config=host_config,
            detach=True,
        )
        return str(created["Id"])

    def follow_logs(self, container_id: str, sink: BinaryIO, limit: int) -> None:
        written = 0
        truncated = False
        with self._attached_lock:
            output = self._attached.pop(container_id, None)
        if output is None:
            return
        try:
            for chunk in output:
                if written < limit:
                    part = chunk[: limit - written]
                    sink.write(part)
                    sink.flush()
                    written += len(part)
                elif not truncated:
                    truncated = True
                    sink.write(f"\n[tidewater: log truncated at {limit} bytes]\n".encode())
                    sink.flush()
        except (docker.errors.APIError, requests.RequestException, OSError, ValueError):
            pass  # container removed under us (stop/delete): the supervisor knows why
        finally:
            output.close()

    def wait(self, container_id: str) -> ExitInfo:
        """Its exit code and OOM flag from one inspect (``wait`` does not say whether the
        kernel killed it for memory); only a container not yet seen ended is waited for
        first. Called once its output stream ended, it has nearly always ended too: the
        daemon answers the inspect once it has recorded the exit."""
        try:
            state = self.api.inspect_container(container_id).get("State", {})
            if state.get("Running") or state.get("Status") in ("created", "restarting"):
                self.api.wait(container_id, timeout=60)
                state = self.api.inspect_container(container_id).get("State", {})
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BackendError(f"cannot read the container's exit: {exc}") from exc
        return ExitInfo(int(state.get("ExitCode", -1)), bool(state.get("OOMKilled")))

    def kill(self, container_id: str) -> None:
        try:
            self.api.kill(container_id)
        except docker.errors.APIError:
            pass  # already stopped or gone

    def remove(self, container_id: str) -> None:
        with self._attached_lock:
            output = self._attached.pop(container_id, None)
        if output is not None:
            output.close()
        try:
            self.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise BackendError(f"cannot remove container {container_id}: {exc}") from exc

    def containers(self, job_id: str | None = None) -> list[tuple[str, str]]:
        labels = [JOB_LABEL if job_id is None else f"{JOB_LABEL}={job_id}"]
        if self.scope:
            labels.append(f"{SCOPE_LABEL}={self.scope}")
        try:
            found = self.api.containers(all=True, filters={"label": labels})
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise BackendError(f"cannot list containers: {exc}") from exc
        return [(c["Id"], c["Labels"].get(JOB_LABEL, "")) for c in found]


def device_requests(spec: ContainerSpec) -> list[DeviceRequest]:
    """The GPU request of ``spec``: its device ids, else a count, with the ``gpu`` capability.

    >>> from operator_engine.backends.base import Limits
    >>> spec = ContainerSpec("j", "i", "c", {}, Limits(1, 1, 1, 1, gpus=2))
    >>> [(r["Count"], r["Capabilities"]) for r in device_requests(spec)]
    [(2, [['gpu']])]
    """
    limits = spec.limits
    if limits.gpu_devices:
        return [DeviceRequest(device_ids=list(limits.gpu_devices), capabilities=[["gpu"]])]
    if limits.gpus > 0:
        return [DeviceRequest(count=limits.gpus, capabilities=[["gpu"]])]
    return []


if TYPE_CHECKING:  # the Docker backend and its workspaces keep the seam's contract

    def _conforms(backend: DockerBackend, area: WritableArea) -> tuple[Backend, RunArea]:
        return backend, area
