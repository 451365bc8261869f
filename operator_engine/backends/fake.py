"""The fake backend for the fast unit layer: a Python function per "container", in a thread,
with the job's workspace in a folder of the data dir (no isolation: tests only).

A :data:`FakeAlgorithm` gets the spec, the host folder of each logical volume and an event set
when the container is killed; it returns (exit code, OOM-killed, what it printed). It serves
the ``docker`` platform unless told otherwise, so environments run on it unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from operator_engine.backends.base import (
    Backend,
    BackendError,
    ContainerSpec,
    ExitInfo,
    ImageError,
    JobWorkspace,
    RunArea,
    Volume,
)
from operator_engine.backends.folder import FolderBackend, FolderWorkspace, area_paths
from operator_engine.backends.quota import WritableArea


@dataclass
class _FakeContainer:
    spec: ContainerSpec
    thread: threading.Thread
    killed: threading.Event = field(default_factory=threading.Event)
    exit: ExitInfo | None = None
    output: bytes = b""


#: A fake algorithm: gets the spec, the host folder of each volume, and an event set on kill;
#: returns (exit code, oom killed, log bytes).
FakeAlgorithm = Callable[
    [ContainerSpec, dict[Volume, Path], threading.Event], tuple[int, bool, bytes]
]


def _default_algorithm(
    spec: ContainerSpec, dirs: dict[Volume, Path], killed: threading.Event
) -> tuple[int, bool, bytes]:
    (dirs["outputs"] / "result.txt").write_text("ok\n")
    return 0, False, b"fake run\n"


class FakeBackend(FolderBackend):
    """Runs a Python function per container in a thread (no isolation: unit tests only)."""

    def __init__(
        self,
        algorithm: FakeAlgorithm = _default_algorithm,
        *,
        gpus: bool = False,
        platform: str = "docker",
        disk_quota: str = "poll",
    ) -> None:
        self.platform = platform
        self.disk_quota = disk_quota
        self.closed = False
        self.gpus = gpus
        self.algorithm = algorithm
        self.started: list[ContainerSpec] = []
        self.auths: list[dict[str, str] | None] = []  # the registry login of each resolve
        self.images: dict[str, str] = {"tidewater/fake:1": "sha256:" + "f" * 64}
        self._containers: dict[str, _FakeContainer] = {}
        self._lock = threading.Lock()

    def ping(self) -> None:
        if self.closed:
            raise BackendError("the fake backend is closed")

    def close(self) -> None:
        self.closed = True

    def gpu_support(self) -> str | None:
        return None if self.gpus else "the fake backend was built without GPUs"

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
            raise ImageError(f"image {ref} is not present and could not be pulled")
        if checksum and checksum != image_id:
            raise ImageError(f"image {ref} is {image_id}, which does not match checksum {checksum}")
        return image_id

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        if not isinstance(area, WritableArea):
            raise BackendError("the fake backend runs only in its own workspaces' areas")
        area.ready()
        cid = f"fake-{len(self.started)}-{spec.job_id}"
        dirs = area_paths(area)
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


if TYPE_CHECKING:  # the fake backend and its workspaces keep the seam's contract

    def _conforms(backend: FakeBackend, workspace: FolderWorkspace) -> tuple[Backend, JobWorkspace]:
        return backend, workspace
