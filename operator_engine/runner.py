"""The container backend seam: what the run stage needs from Docker (today) or Kubernetes.

:class:`ContainerSpec` is everything one algorithm container is made of; a runner turns it into
a running container labelled ``tidewater.job_id`` so the store can be reconciled against what
is really running. :class:`FakeRunner` runs a Python callable instead, for the fast unit layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

JOB_LABEL = "tidewater.job_id"
#: Which engine (store + data dir) a container belongs to: engines sharing one Docker host
#: reconcile only their own containers.
SCOPE_LABEL = "tidewater.scope"


class RunnerError(RuntimeError):
    """The backend failed (daemon down, create refused…)."""


class ImageError(RunnerError):
    """The image is missing and cannot be pulled, not allowed, or fails its digest check."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    """One algorithm container (see docs/protocol.md §10 and docker_runner for the hardening)."""

    job_id: str
    image: str  # a resolved, immutable image id
    command: str  # run by ``sh -c`` with working dir ``/``
    environment: dict[str, str]
    mounts: list[Mount]
    nano_cpus: int
    mem_bytes: int
    pids_limit: int = 256
    tmpfs_bytes: int = 64 * 1024**2
    gpus: int = 0  # GPUs requested from the backend (count), unless ``gpu_devices`` names them
    gpu_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool


class ContainerRunner(Protocol):
    scope: str | None

    def gpu_support(self) -> str | None:
        """None when containers can be given GPUs, else why not (one line)."""

    def resolve_image(
        self,
        image: str,
        tag: str | None,
        checksum: str | None,
        auth: dict[str, str] | None = None,
    ) -> str:
        """Return the local image id to run (pulling with the registry login ``auth`` when
        the image is missing); raise :class:`ImageError`."""

    def start(self, spec: ContainerSpec) -> str:
        """Create and start the container; return its id."""

    def follow_logs(self, container_id: str, sink: BinaryIO, limit: int) -> None:
        """Copy stdout+stderr into ``sink`` (at most ``limit`` bytes) until the container ends."""

    def wait(self, container_id: str) -> ExitInfo:
        """The exit of a container that has ended."""

    def kill(self, container_id: str) -> None:
        """Kill it now (no error if already gone)."""

    def remove(self, container_id: str) -> None:
        """Force-remove it (no error if already gone)."""

    def containers(self, job_id: str | None = None) -> list[tuple[str, str]]:
        """(container id, job id) of this scope's containers, or of one job's."""


@dataclass
class _FakeContainer:
    spec: ContainerSpec
    thread: threading.Thread
    killed: threading.Event = field(default_factory=threading.Event)
    exit: ExitInfo | None = None
    output: bytes = b""


#: A fake algorithm: gets the spec, host folders by target path, and an event set on kill;
#: returns (exit code, oom killed, log bytes).
FakeAlgorithm = Callable[[ContainerSpec, dict[str, Path], threading.Event], tuple[int, bool, bytes]]


def _default_algorithm(
    spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event
) -> tuple[int, bool, bytes]:
    (dirs["/data/outputs"] / "result.txt").write_text("ok\n")
    return 0, False, b"fake run\n"


class FakeRunner:
    """Runs a Python function per container in a thread (no isolation: unit tests only)."""

    def __init__(
        self, algorithm: FakeAlgorithm = _default_algorithm, *, gpus: bool = False
    ) -> None:
        self.scope: str | None = None
        self.gpus = gpus
        self.algorithm = algorithm
        self.started: list[ContainerSpec] = []
        self.auths: list[dict[str, str] | None] = []  # the registry login of each resolve
        self.images: dict[str, str] = {"tidewater/fake:1": "sha256:" + "f" * 64}
        self._containers: dict[str, _FakeContainer] = {}
        self._lock = threading.Lock()

    def gpu_support(self) -> str | None:
        return None if self.gpus else "the fake runner was built without GPUs"

    def resolve_image(
        self,
        image: str,
        tag: str | None,
        checksum: str | None,
        auth: dict[str, str] | None = None,
    ) -> str:
        self.auths.append(auth)
        ref = f"{image}:{tag or 'latest'}"
        image_id = self.images.get(ref)
        if image_id is None:
            raise ImageError(f"image {ref} is not present and cannot be pulled")
        if checksum and checksum != image_id:
            raise ImageError(f"image {ref} has id {image_id}, not {checksum}")
        return image_id

    def start(self, spec: ContainerSpec) -> str:
        cid = f"fake-{len(self.started)}-{spec.job_id}"
        dirs = {m.target: m.source for m in spec.mounts}
        box: _FakeContainer

        def body() -> None:
            code, oom, out = self.algorithm(spec, dirs, box.killed)
            if box.killed.is_set():
                code, oom = 137, False
            box.output = out
            box.exit = ExitInfo(code, oom)

        box = _FakeContainer(spec, threading.Thread(target=body, daemon=True))
        with self._lock:
            self.started.append(spec)
            self._containers[cid] = box
        box.thread.start()
        return cid

    def follow_logs(self, container_id: str, sink: BinaryIO, limit: int) -> None:
        box = self._containers[container_id]
        box.thread.join()
        sink.write(box.output[:limit])
        sink.flush()

    def wait(self, container_id: str) -> ExitInfo:
        box = self._containers[container_id]
        box.thread.join()
        assert box.exit is not None
        return box.exit

    def kill(self, container_id: str) -> None:
        box = self._containers.get(container_id)
        if box is not None:
            box.killed.set()

    def remove(self, container_id: str) -> None:
        with self._lock:
            box = self._containers.pop(container_id, None)
        if box is not None:
            box.killed.set()

    def containers(self, job_id: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return [
                (cid, box.spec.job_id)
                for cid, box in self._containers.items()
                if job_id is None or box.spec.job_id == job_id
            ]
