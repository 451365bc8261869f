"""Kubernetes behind :class:`~operator_engine.backends.base.Backend`: one Job per compute job.

The job's data stays in the engine's data dir (a :class:`FolderWorkspace`, as on Docker); the
pod moves it over the provider's internal endpoints with one-time tokens (docs/kubernetes.md).
:meth:`KubernetesBackend.start` mints the tokens, creates the two NetworkPolicies and the Job
(:mod:`.kube_manifests`) and starts a watcher thread that follows the pod
(:func:`.kube_status.pod_verdict`): once the inputs are in it closes the pod's network (label
``tidewater.io/network=closed``), once the algorithm has ended it arms the outputs token and
reopens it for the upload. ``follow_logs`` streams the algorithm container's log; ``wait``
returns when the outputs are uploaded, or raises :class:`RunFailed` with the job's status.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from operator_engine import transfer_tokens
from operator_engine.backends.base import (
    JOB_LABEL,
    SCOPE_LABEL,
    BackendError,
    BackendNotConfigured,
    ContainerSpec,
    ExitInfo,
    ImageError,
    RunArea,
    RunFailed,
)
from operator_engine.backends.folder import FolderBackend
from operator_engine.backends.kube_manifests import (
    ALGORITHM,
    PULL_WAIT,
    PUSH_GRACE,
    KubeSite,
    job_name,
    job_objects,
)
from operator_engine.backends.kube_status import PodVerdict, Step, pod_verdict
from operator_engine.statuses import JobStatus
from operator_engine.transfer import NETWORK_LABEL

if TYPE_CHECKING:
    from operator_engine.config import EngineConfig

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
#: how long :meth:`KubernetesBackend.remove` waits for a deleted Job's pod to go
REMOVE_SECONDS = 60.0
#: how many times the algorithm's log is asked for while its container is being created
LOG_ATTEMPTS = 60
_ENDED = (Step.SUCCEEDED, Step.FAILED)


def from_config(config: EngineConfig) -> KubernetesBackend:
    """The backend of ``config`` (the shell's KUBECONFIG, TIDEWATER_KUBERNETES_*)."""
    from operator_engine.backends.kube_client import KubeClient, load_api_client

    if not config.kubernetes_image or not config.kubernetes_internal_url:
        raise BackendNotConfigured(
            "the kubernetes backend needs TIDEWATER_KUBERNETES_IMAGE (the tidewater image by "
            "digest) and TIDEWATER_KUBERNETES_INTERNAL_URL (where job pods reach the provider)"
        )
    namespace = config.kubernetes_namespace
    client = KubeClient(load_api_client(config.kubeconfig), namespace)
    return KubernetesBackend(
        client, image=config.kubernetes_image, internal_url=config.kubernetes_internal_url
    )


def digest_reference(image: str, checksum: str | None) -> str:
    """``image`` pinned to ``checksum`` (``name@sha256:…``); ImageError without a digest.

    >>> digest_reference("docker.io/library/python:3.12", "sha256:" + "a" * 64)[:40]
    'docker.io/library/python@sha256:aaaaaaaa'
    """
    if "@" in image:
        name, _, digest = image.partition("@")
        checksum = checksum or digest
    else:
        last = image.rsplit("/", 1)[-1]
        name = image[: -len(last)] + last.split(":", 1)[0]
    if not checksum or not checksum.startswith("sha256:") or len(checksum) != 71:
        raise ImageError(
            f"Kubernetes runs algorithm images by digest only: {image} needs its container "
            "checksum (sha256:<64 hex digits>)"
        )
    return f"{name}@{checksum}"


class _Watch:
    """One job's pod as the watcher thread last saw it."""

    def __init__(self, name: str, job_id: str, outputs_token: str) -> None:
        self.name, self.job_id, self.outputs_token = name, job_id, outputs_token
        self.verdict = PodVerdict(Step.WAITING)
        self.pod_name: str | None = None
        self.network = "transfer"
        self.stop = threading.Event()
        self.changed = threading.Condition()

    def see(self, verdict: PodVerdict) -> None:
        with self.changed:
            self.verdict = verdict
            self.changed.notify_all()

    def until(self, steps: tuple[Step, ...], timeout: float | None = None) -> PodVerdict:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while self.verdict.step not in steps and not self.stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.changed.wait(timeout=min(left, 1.0) if left is not None else 1.0)
            return self.verdict


class KubernetesBackend(FolderBackend):
    """Runs each job as a Job in one namespace (see the module docstring). Its workspaces are
    the jobs' folders in the engine's data dir, as on Docker: the provider serves the staged
    inputs from there and the finisher's upload lands there; the disk share is the pod's own
    (``ephemeral-storage`` and the emptyDir's ``sizeLimit``), so the folder is only polled."""

    platform = "kubernetes"
    disk_quota = "poll"

    def __init__(
        self, client: Any, *, image: str, internal_url: str, poll_seconds: float = POLL_SECONDS
    ) -> None:
        self.client = client
        self.image, self.internal_url = image, internal_url
        self.poll_seconds = poll_seconds
        self.scope: str | None = None
        self.data_dir: Path | None = None
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()

    @property
    def site(self) -> KubeSite:
        return KubeSite(self.client.namespace, self.image, self.internal_url, self.scope)

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        for watch in list(self._watches.values()):
            watch.stop.set()
        self.client.close()

    def gpu_support(self) -> str | None:
        return None  # the scheduler places a pod asking nvidia.com/gpu on a node that has them

    def resolve_image(
        self,
        image: str,
        tag: str | None,
        checksum: str | None,
        auth: dict[str, str] | None = None,
    ) -> str:
        if auth:
            raise ImageError(
                "registry logins are not passed to Kubernetes: give the namespace's default "
                "service account an imagePullSecret instead"
            )
        return digest_reference(
            image if tag is None or "@" in image else f"{image}:{tag}", checksum
        )

    # -- one job ---------------------------------------------------------------------------

    def _staged_bytes(self, job_id: str) -> int:
        folder = self.workspace(job_id).folder
        return sum(
            path.stat().st_size
            for top in (folder.inputs, folder.transformations, folder.ddos)
            for path in top.rglob("*")
            if path.is_file() and not path.is_symlink()
        )

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        """Mint the job's tokens, create its policies and Job, and watch its pod."""
        assert self.data_dir is not None, "bind() first"
        area.ready()  # a polled folder area: ready at once
        job_id, limits = spec.job_id, spec.limits
        life = PULL_WAIT + limits.duration + PUSH_GRACE
        tokens = (
            transfer_tokens.mint(self.data_dir, job_id, "inputs", PULL_WAIT + 60),
            transfer_tokens.mint(
                self.data_dir,
                job_id,
                "outputs",
                life,
                armed=False,
                max_bytes=area.budget,
                max_entries=area.max_entries,
            ),
        )
        objects = job_objects(self.site, spec, tokens, inputs_bytes=self._staged_bytes(job_id))
        name = job_name(job_id)
        try:
            for body in objects:
                self.client.create(body)
        except BackendError:
            self.remove(name)
            raise
        watch = _Watch(name, job_id, tokens[1])
        with self._lock:
            self._watches[name] = watch
        threading.Thread(target=self._follow, args=(watch,), daemon=True).start()
        return name

    def _follow(self, watch: _Watch) -> None:
        """The watcher: read the pod every ``poll_seconds``, act on its step, until it ends."""
        while not watch.stop.is_set():
            try:
                pod = self.client.pod_of(watch.name)
                verdict = pod_verdict(pod, self.client.job(watch.name))
                if pod is not None:
                    watch.pod_name = pod["metadata"]["name"]
                    self._steer(watch, verdict)
            except BackendError as exc:  # a blip of the API server: ask again
                log.warning("job %s: %s", watch.job_id, exc)
                verdict = watch.verdict
            watch.see(verdict)
            if verdict.step in _ENDED:
                return
            watch.stop.wait(self.poll_seconds)

    def _steer(self, watch: _Watch, verdict: PodVerdict) -> None:
        """Close the pod's network once the inputs are in; arm the outputs token and reopen
        it once the algorithm has ended."""
        assert watch.pod_name is not None and self.data_dir is not None
        if verdict.step is Step.GATING and watch.network == "transfer":
            self.client.label_pod(watch.pod_name, {NETWORK_LABEL: "closed"})
            watch.network = "closed"
        elif verdict.step is Step.PUBLISHING and watch.network == "closed":
            transfer_tokens.arm(self.data_dir, watch.outputs_token)
            self.client.label_pod(watch.pod_name, {NETWORK_LABEL: "transfer"})
            watch.network = "reopened"

    def _watch(self, name: str) -> _Watch:
        with self._lock:
            found = self._watches.get(name)
        if found is None:
            raise BackendError(f"no job {name} is being watched by this engine")
        return found

    def follow_logs(self, container_id: str, sink: BinaryIO, limit: int) -> None:
        watch = self._watch(container_id)
        verdict = watch.until((Step.RUNNING, Step.PUBLISHING, *_ENDED))
        if watch.pod_name is None or (verdict.step is Step.FAILED and verdict.exit_code is None):
            watch.until(_ENDED)  # no algorithm output: it never started
            return
        written = attempts = 0
        while True:
            attempts += 1
            try:
                for chunk in self.client.log_stream(watch.pod_name, ALGORITHM):
                    part = chunk[: max(limit - written, 0)]
                    if part:
                        sink.write(part)
                        sink.flush()
                        written += len(part)
                    if written >= limit:
                        sink.write(f"\n[tidewater: log truncated at {limit} bytes]\n".encode())
                        break
                break
            except (BackendError, OSError, ValueError) as exc:
                # before the container runs the API refuses its log: ask again while it starts
                if written or attempts >= LOG_ATTEMPTS or watch.stop.is_set():
                    log.warning("job %s: algorithm log cut short: %s", watch.job_id, exc)
                    break
                watch.stop.wait(max(self.poll_seconds, 0.05))
        watch.until((Step.PUBLISHING, *_ENDED))

    def wait(self, container_id: str) -> ExitInfo:
        """The algorithm's exit once the pod is done (outputs uploaded), or :class:`RunFailed`
        (:class:`ImageError` for 32) when it failed elsewhere."""
        verdict = self._watch(container_id).until(_ENDED)
        if verdict.step is Step.SUCCEEDED:
            return ExitInfo(0, False)
        if verdict.status is JobStatus.ALGO_PROVISIONING_FAILED:
            raise ImageError(verdict.reason)
        if verdict.status is JobStatus.RUN_FAILED and verdict.exit_code is not None:
            return ExitInfo(verdict.exit_code, verdict.oom_killed)
        if verdict.status is None:
            raise BackendError(f"job {container_id} was stopped before its pod ended")
        raise RunFailed(verdict.status, verdict.reason)

    def kill(self, container_id: str) -> None:
        self.client.delete("Job", container_id)
        with self._lock:
            watch = self._watches.get(container_id)
        if watch is not None:
            watch.stop.set()

    def remove(self, container_id: str) -> None:
        with self._lock:
            watch = self._watches.pop(container_id, None)
        if watch is not None:
            watch.stop.set()
        self.client.delete("Job", container_id)
        if self.data_dir is not None and watch is not None:
            transfer_tokens.revoke_job(self.data_dir, watch.job_id)
        # The policies go only once the pod is gone: a pod no policy selects has the
        # namespace's default network, and a killed algorithm may still be running.
        deadline = time.monotonic() + REMOVE_SECONDS
        while self.client.pod_of(container_id) is not None:
            if time.monotonic() > deadline:
                log.warning("job %s: pod still there; its NetworkPolicies are kept", container_id)
                return
            time.sleep(self.poll_seconds)
        for suffix in ("-deny", "-transfer"):
            self.client.delete("NetworkPolicy", container_id + suffix)

    def containers(self, job_id: str | None = None) -> list[tuple[str, str]]:
        selector = [JOB_LABEL if job_id is None else f"{JOB_LABEL}={job_id}"]
        if self.scope:
            selector.append(f"{SCOPE_LABEL}={self.scope}")
        return [
            (job["metadata"]["name"], job["metadata"]["labels"].get(JOB_LABEL, ""))
            for job in self.client.jobs(",".join(selector))
        ]
