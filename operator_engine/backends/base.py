"""The backend seam: everything the job pipeline needs from the place algorithms run.

The contract, for whoever writes a backend (Docker and a fake today, Kubernetes next):

* A :class:`Backend` runs one hardened container per job for one ``platform`` (the compute
  environment's ``platform``: ``docker`` or ``kubernetes``). The pipeline never names a host
  path, a Docker or a Kubernetes field: it describes the container as a :class:`ContainerSpec`
  made of logical volumes (:data:`VOLUMES`, mounted at :data:`MOUNT_POINTS`) and neutral
  :class:`Limits`, and the backend translates (Docker: bind mounts, ``nano_cpus``,
  ``pids_limit``, the local image id; Kubernetes: a Job, volumes, requests = limits, a digest).
* Job data moves only through the :class:`JobWorkspace` the backend hands out
  (:meth:`Backend.workspace`). Stage 20 creates it; provisioning writes the inputs, the
  algorithm and the DDOs into it (:meth:`JobWorkspace.stage`); the run opens a :class:`RunArea`
  (the job's one disk share for ``outputs``, ``logs`` and the captured output, measured by the
  backend however it can) and passes it to :meth:`Backend.start`, which may prepare the
  container while the share is still being made and lets it run only once
  :meth:`RunArea.ready` returns; afterwards the workspace lists
  the outputs (:meth:`JobWorkspace.outputs`) and digests the files that become results
  (:meth:`JobWorkspace.result`), which the provider then serves by the ``rel`` path of each
  :class:`StoredFile`, relative to the job's folder in the engine's data dir (every backend
  brings its results there: Docker directly, Kubernetes through its finisher's upload).
* The engine calls :meth:`Backend.bind` once with its scope (a label on every container, so
  engines sharing a host reconcile only their own) and its data dir. Containers carry
  :data:`JOB_LABEL` (the job id) and :data:`SCOPE_LABEL`; :meth:`Backend.containers` lists them
  so the sweep reconciles what runs against the store, never the other way.
* Errors: :class:`BackendError` (backend unreachable, a request refused), its subclass
  :class:`ImageError` (image missing, not pullable, not allowed, digest mismatch: status 32),
  :class:`BackendNotConfigured` (no backend for an environment's platform on this engine).
* :class:`BackendRegistry` finds an environment's backend by platform. A platform's backend is
  built by ``from_config(config: EngineConfig) -> Backend`` in the module
  :data:`BACKEND_MODULES` names (raise :class:`BackendNotConfigured` when its configuration is
  absent; the application shell fills :class:`operator_engine.config.EngineConfig`).
* The behaviour every backend must show is pinned by ``tests/engine/backend_conformance``: the
  same job table gives the same statuses and results on each.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

if TYPE_CHECKING:
    from operator_engine.config import EngineConfig

JOB_LABEL = "tidewater.job_id"
#: Which engine (store + data dir) a container belongs to: engines sharing one Docker host or
#: namespace reconcile only their own containers.
SCOPE_LABEL = "tidewater.scope"

Platform = Literal["docker", "kubernetes"]
PLATFORMS: tuple[Platform, ...] = ("docker", "kubernetes")
#: the platform of an environment that names none, and the backend an engine is built with
DEFAULT_PLATFORM: Platform = "docker"
#: platform -> the module whose ``from_config(config)`` builds its backend
BACKEND_MODULES: dict[str, str] = {
    "docker": "operator_engine.backends.docker",
    "kubernetes": "operator_engine.backends.kubernetes",
}

#: The job's logical volumes. ``inputs``: one folder per dataset (``<did>/<n>``) and
#: ``algoCustomData.json``; ``algorithm``: the file ``algorithm``; ``ddos``: one file per DID;
#: ``outputs`` and ``logs``: written by the algorithm (with the engine's logs in ``logs``).
Volume = Literal["inputs", "algorithm", "ddos", "outputs", "logs"]
VOLUMES: tuple[Volume, ...] = ("inputs", "algorithm", "ddos", "outputs", "logs")
#: where the algorithm sees each volume (docs/protocol.md §10)
MOUNT_POINTS: dict[Volume, str] = {
    "inputs": "/data/inputs",
    "algorithm": "/data/transformations",
    "ddos": "/data/ddos",
    "outputs": "/data/outputs",
    "logs": "/data/logs",
}
#: the volumes the pipeline stages before the run (read-only for the algorithm)
INPUT_VOLUMES: tuple[Volume, ...] = ("inputs", "algorithm", "ddos")
#: the name of the algorithm's file in the ``algorithm`` volume
ALGORITHM_FILE = "algorithm"


class BackendError(RuntimeError):
    """The backend failed (daemon or API server down, a request refused…)."""


class ImageError(BackendError):
    """The image is missing and cannot be pulled, not allowed, or fails its digest check."""


class BackendNotConfigured(BackendError):
    """No backend for a platform is configured on this engine (the message says what to set)."""


class RunFailed(BackendError):
    """What :meth:`Backend.wait` raises when the run failed outside the algorithm's exit (the
    Kubernetes backend saw the pod's input fetch, deadline, eviction or upload fail):
    ``status`` (an Ocean job status: 7, 31, 41, 42, 62) is where the job ends."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Mount:
    """A logical volume at its mount point; only ``outputs`` and ``logs`` are writable."""

    volume: Volume
    target: str
    read_only: bool


def standard_mounts() -> tuple[Mount, ...]:
    """Every volume at its §10 mount point, the input volumes read-only."""
    return tuple(Mount(v, MOUNT_POINTS[v], v in INPUT_VOLUMES) for v in VOLUMES)


@dataclass(frozen=True)
class Limits:
    """One job's share of its environment, in neutral units."""

    cpu: float  # CPUs (fractions allowed)
    memory: int  # bytes of RAM (no extra swap)
    disk: int  # bytes for outputs + logs + captured output (the run's share)
    duration: float  # seconds the algorithm may run (the run stage enforces it too)
    pids: int = 128  # processes and threads
    tmp: int = 64 * 1024**2  # bytes of scratch ``/tmp`` (noexec)
    gpus: int = 0  # GPUs requested (a count), unless ``gpu_devices`` names them
    gpu_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    """One algorithm container: what runs, what it sees, what it may use."""

    job_id: str
    image: str  # the immutable reference :meth:`Backend.resolve_image` returned (opaque)
    command: str  # run by ``sh -c`` with working dir ``/``
    environment: Mapping[str, str]
    limits: Limits
    mounts: tuple[Mount, ...] = field(default_factory=standard_mounts)


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool


@dataclass(frozen=True)
class StoredFile:
    """A file of the job's results store: ``rel`` (to the job's folder) is what the provider
    serves; ``size`` and ``sha256`` what the result list says."""

    rel: str
    size: int
    sha256: str


class RunArea(Protocol):
    """Where the algorithm writes during one run: the ``outputs`` and ``logs`` volumes and the
    captured stdout/stderr share ``budget`` bytes and ``max_entries`` files."""

    mode: str  # how the share is held, for the configure log (e.g. ``loop``, ``poll``)
    budget: int
    max_entries: int

    def ready(self) -> None:
        """Wait until the share is in place (raise :class:`BackendError` when it cannot be
        made). :meth:`Backend.start` calls it before the container can write: the area may be
        made while the backend prepares the container; nothing else is asked of it before."""

    @property
    def check_seconds(self) -> float:
        """How often :meth:`is_exceeded` should be asked."""

    def is_exceeded(self) -> bool:
        """True when what the algorithm wrote used up or went past the share."""

    def open_log(self) -> BinaryIO:
        """The algorithm log (append, unbuffered) the captured output is written to."""

    def release(self, *, keep_outputs: bool) -> None:
        """End the run: keep the algorithm log, the outputs only if ``keep_outputs``, nothing
        else the algorithm wrote (its own files in ``logs`` are never published). Also ends an
        area that never became ready (its making is waited for first)."""


class JobWorkspace(Protocol):
    """One job's data, wherever the backend keeps it. Names are relative paths of safe
    components (``<did>/0``); nothing is ever followed through a symbolic link."""

    job_id: str

    def exists(self) -> bool:
        """True when the job still has a folder (results or inputs)."""

    def create(self) -> None:
        """(Re)create it empty, the engine logs in place (the file objects saved at submit
        stay): a resumed job starts from a clean tree."""

    def append_log(self, name: str, text: str) -> None:
        """Append timestamped lines to the engine log ``name`` (configure.log, publish.log)."""

    def stage(
        self, volume: Volume, name: str, chunks: Iterable[bytes], *, executable: bool = False
    ) -> tuple[int, str]:
        """Write ``chunks`` as ``name`` in an input volume; (size, sha256 hex). Nothing is left
        when ``chunks`` raises (which propagates)."""

    def input_digests(self, folder: str) -> list[str]:
        """sha256 of every file staged under ``inputs/<folder>``, in path order."""

    def open_run(self, budget: int, max_entries: int) -> RunArea:
        """The writable area of one run, perhaps still being made (:meth:`RunArea.ready`);
        raise :class:`BackendError` when it cannot be made."""

    def settle(self) -> None:
        """Drop a run area a lost worker left, keeping the algorithm log it captured."""

    def outputs(self) -> tuple[list[tuple[str, int]], list[str]]:
        """([(name, size)] of the regular files in ``outputs``, [what was dropped and why]):
        links, devices, FIFOs, sockets and unprintable names are dropped. Raises OSError."""

    def result(self, volume: Volume, name: str) -> StoredFile:
        """The stored result file ``name`` of ``outputs`` or ``logs``; OSError if absent."""

    def put_result(self, name: str, data: bytes) -> StoredFile:
        """Store ``data`` as the result file ``name`` beside the volumes (the receipt)."""

    def remove_inputs(self) -> None:
        """Drop the staged inputs, algorithm, DDOs and file objects (the job is over)."""

    def remove(self) -> None:
        """Drop everything of the job."""


class Backend(Protocol):
    """Runs the algorithm containers of one platform (see the module's contract)."""

    platform: str
    scope: str | None

    def bind(self, *, scope: str, data_dir: Path) -> None:
        """Called once by the engine that uses it (its container label and its data dir)."""

    def ping(self) -> None:
        """Raise :class:`BackendError` (with why) unless the backend answers."""

    def close(self) -> None:
        """Release the backend's connections (idempotent)."""

    def gpu_support(self) -> str | None:
        """None when containers can be given GPUs, else why not (one line)."""

    def resolve_image(
        self,
        image: str,
        tag: str | None,
        checksum: str | None,
        auth: dict[str, str] | None = None,
    ) -> str:
        """The immutable reference to run (pulling with the registry login ``auth`` when the
        image is missing); raise :class:`ImageError`."""

    def workspace(self, job_id: str) -> JobWorkspace:
        """The job's workspace (cheap: nothing is created before :meth:`JobWorkspace.create`)."""

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        """Create and start the container of ``spec`` writing into ``area`` (one from this
        backend's workspace of ``spec.job_id``); return its id. The container is started only
        after ``area.ready()`` returned; when that raises, no container is left and the error
        propagates."""

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


def preload(platform: str = DEFAULT_PLATFORM) -> None:
    """Import the backend module of ``platform`` now (before forking workers)."""
    importlib.import_module(BACKEND_MODULES[platform])


def build(platform: str, config: EngineConfig) -> Backend:
    """The backend of ``platform`` built from ``config`` (see :data:`BACKEND_MODULES`)."""
    module_name = BACKEND_MODULES.get(platform)
    if module_name is None:
        raise BackendNotConfigured(
            f"unknown platform {platform!r} (one of {', '.join(BACKEND_MODULES)})"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendNotConfigured(
            f"no {platform} backend is available in this installation ({exc})"
        ) from exc
    factory: Callable[[EngineConfig], Backend] = module.from_config
    return factory(config)


class BackendRegistry:
    """The engine's backends by platform: those given, and (with ``config``) the others built
    on first use. :meth:`get` raises :class:`BackendNotConfigured` for a platform that has none
    (and remembers why, so a misconfigured platform is not rebuilt at every job)."""

    def __init__(
        self, backends: Iterable[Backend] = (), config: EngineConfig | None = None
    ) -> None:
        self._backends: dict[str, Backend] = {}
        self._refused: dict[str, str] = {}
        self._config = config
        self._scope: str | None = None
        self._data_dir: Path | None = None
        self._lock = threading.Lock()
        self._building = threading.Lock()
        for backend in backends:
            self.add(backend)

    def add(self, backend: Backend) -> None:
        with self._lock:
            self._backends[backend.platform] = backend
            self._refused.pop(backend.platform, None)
            if self._data_dir is not None and self._scope is not None:
                backend.bind(scope=self._scope, data_dir=self._data_dir)

    def bind(self, *, scope: str, data_dir: Path) -> None:
        """Bind every backend, present and future, to the engine's scope and data dir."""
        with self._lock:
            self._scope, self._data_dir = scope, data_dir
            backends = list(self._backends.values())
        for backend in backends:
            backend.bind(scope=scope, data_dir=data_dir)

    def get(self, platform: str) -> Backend:
        with self._lock:
            found = self._known(platform)
        if found is not None:
            return found
        with self._building:  # one build at a time; built backends are served meanwhile
            with self._lock:
                found = self._known(platform)
            if found is not None:
                return found
            assert self._config is not None  # else _known refused
            try:
                built = build(platform, self._config)
            except BackendNotConfigured as exc:
                with self._lock:
                    self._refused[platform] = str(exc)
                raise
            self.add(built)
        return built

    def _known(self, platform: str) -> Backend | None:
        """The backend of ``platform`` if built, None if it may be built; raises when refused
        (called with the lock held)."""
        found = self._backends.get(platform)
        if found is not None:
            return found
        if platform not in self._refused and self._config is None:
            self._refused[platform] = f"no {platform} backend is configured on this engine"
        if platform in self._refused:
            raise BackendNotConfigured(self._refused[platform])
        return None

    def unavailable(self, platform: str) -> str | None:
        """None when ``platform`` has a backend here (building it if need be), else why not."""
        try:
            self.get(platform)
        except BackendError as exc:
            return str(exc)
        return None

    def __iter__(self) -> Iterator[Backend]:
        """The backends built so far."""
        with self._lock:
            return iter(list(self._backends.values()))

    def close(self) -> None:
        for backend in self:
            backend.close()
