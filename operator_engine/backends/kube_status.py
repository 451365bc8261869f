"""Where a job's pod is, read from its API objects: one pure function, :func:`pod_verdict`.

The input is the pod (and its Job) as the API serves them (JSON, camelCase). The verdict says
which step the pod is at — the engine closes the network after ``FETCHING``, arms the outputs
token and reopens it after ``RUNNING`` — and, once it failed, the job status it ends at:

======================================================  ====
Job ``DeadlineExceeded`` (activeDeadlineSeconds)          7
``fetch-inputs`` failed (inputs could not be received)   31
algorithm image: ErrImagePull, ImagePullBackOff,          32
InvalidImageName, ErrImageNeverPull
algorithm OOMKilled, non-zero exit, not creatable;       41
the network gate or a tidewater image failed; evicted
evicted for ephemeral storage; upload over the share     42
``publish-outputs`` failed otherwise                     62
======================================================  ====
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from operator_engine.backends.kube_manifests import ALGORITHM, FETCH, OFFLINE, PUBLISH
from operator_engine.statuses import JobStatus

IMAGE_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CREATE_ERRORS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


class Step(Enum):
    WAITING = "waiting"  # not scheduled or not started yet
    FETCHING = "fetching"  # fetch-inputs runs: the network is open to the provider
    GATING = "gating"  # inputs are in: the engine must close the network
    RUNNING = "running"  # the algorithm runs, offline
    PUBLISHING = "publishing"  # the algorithm ended well: the engine arms and reopens
    SUCCEEDED = "succeeded"  # outputs are uploaded
    FAILED = "failed"


@dataclass(frozen=True)
class PodVerdict:
    step: Step
    status: JobStatus | None = None  # the failure status when FAILED
    reason: str = ""
    exit_code: int | None = None
    oom_killed: bool = False


def _failed(status: JobStatus, reason: str, **kw: Any) -> PodVerdict:
    return PodVerdict(Step.FAILED, status, reason, **kw)


def _states(pod: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s.get("state") or {} for s in (pod.get("status") or {}).get(key) or []}


def _message(state: dict[str, Any]) -> str:
    text = str(state.get("message") or state.get("reason") or "").strip()
    return text.splitlines()[-1][:300] if text else ""


def _job_failure(job: dict[str, Any] | None) -> PodVerdict | None:
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            if condition.get("reason") == "DeadlineExceeded":
                limit = ((job or {}).get("spec") or {}).get("activeDeadlineSeconds")
                return _failed(
                    JobStatus.STOPPED, f"time limit of {limit}s (maxJobDuration) reached"
                )
    return None


def _waiting_failure(name: str, waiting: dict[str, Any]) -> PodVerdict | None:
    reason = waiting.get("reason", "")
    detail = f"{reason}: {waiting.get('message', '')}".strip(": ")
    if reason in IMAGE_ERRORS:
        if name == ALGORITHM:
            return _failed(JobStatus.ALGO_PROVISIONING_FAILED, f"algorithm image: {detail}")
        return _failed(JobStatus.RUN_FAILED, f"tidewater image ({name}): {detail}")
    if reason in CREATE_ERRORS:
        return _failed(JobStatus.RUN_FAILED, f"container {name} could not start: {detail}")
    return None


def _init_failure(name: str, done: dict[str, Any]) -> PodVerdict:
    code = int(done.get("exitCode", -1))
    why = _message(done) or f"exit code {code}"
    if name == FETCH:
        return _failed(JobStatus.DATA_PROVISIONING_FAILED, f"inputs not received: {why}")
    return _failed(JobStatus.RUN_FAILED, f"{name} failed: {why}")


def _algorithm_failure(done: dict[str, Any]) -> PodVerdict:
    code = int(done.get("exitCode", -1))
    if done.get("reason") == "OOMKilled":
        return _failed(
            JobStatus.RUN_FAILED,
            "algorithm failed (killed: out of memory)",
            exit_code=code,
            oom_killed=True,
        )
    return _failed(JobStatus.RUN_FAILED, f"algorithm failed (exit code {code})", exit_code=code)


def _publish_failure(done: dict[str, Any]) -> PodVerdict:
    why = _message(done) or f"exit code {done.get('exitCode')}"
    if "413" in why or "too_large" in why:
        return _failed(JobStatus.EGRESS_EXCEEDED, f"outputs over the job's disk share: {why}")
    return _failed(JobStatus.UPLOAD_FAILED, f"outputs not uploaded: {why}")


def _eviction(status: dict[str, Any]) -> PodVerdict:
    message = str(status.get("message") or "evicted")
    if "ephemeral" in message.lower() or "emptydir" in message.lower():
        return _failed(JobStatus.EGRESS_EXCEEDED, f"the job went past its disk share: {message}")
    return _failed(JobStatus.RUN_FAILED, f"the pod was evicted: {message}")


def pod_verdict(pod: dict[str, Any] | None, job: dict[str, Any] | None = None) -> PodVerdict:
    """The step of a job's ``pod`` (None: not created yet), given its ``job``."""
    deadline = _job_failure(job)
    if deadline is not None:
        return deadline
    if pod is None:
        return PodVerdict(Step.WAITING)
    status = pod.get("status") or {}
    if status.get("reason") == "DeadlineExceeded":
        return _failed(JobStatus.STOPPED, "time limit (activeDeadlineSeconds) reached")
    if status.get("reason") == "Evicted":
        return _eviction(status)
    inits, mains = _states(pod, "initContainerStatuses"), _states(pod, "containerStatuses")
    for name, state in [*inits.items(), *mains.items()]:
        failure = _waiting_failure(name, state.get("waiting") or {})
        if failure is not None:
            return failure
    for name in (FETCH, OFFLINE):
        done = (inits.get(name) or {}).get("terminated")
        if done is not None and int(done.get("exitCode", -1)) != 0:
            return _init_failure(name, done)
    algorithm = (mains.get(ALGORITHM) or {}).get("terminated")
    if algorithm is not None and (
        int(algorithm.get("exitCode", -1)) != 0 or algorithm.get("reason") == "OOMKilled"
    ):
        return _algorithm_failure(algorithm)
    published = (mains.get(PUBLISH) or {}).get("terminated")
    if published is not None:
        if int(published.get("exitCode", -1)) != 0:
            return _publish_failure(published)
        if algorithm is not None:
            return PodVerdict(Step.SUCCEEDED, exit_code=0)
    if status.get("phase") == "Failed":
        why = status.get("message") or status.get("reason") or "the pod failed"
        return _failed(JobStatus.RUN_FAILED, str(why))
    return PodVerdict(_step(inits, algorithm, mains), exit_code=0 if algorithm else None)


def _step(
    inits: dict[str, dict[str, Any]],
    algorithm: dict[str, Any] | None,
    mains: dict[str, dict[str, Any]],
) -> Step:
    if algorithm is not None:
        return Step.PUBLISHING
    if ALGORITHM in mains and "running" in mains[ALGORITHM]:
        return Step.RUNNING
    if (inits.get(OFFLINE) or {}).get("terminated") is not None:
        return Step.RUNNING  # the algorithm's container is being created
    if (inits.get(FETCH) or {}).get("terminated") is not None:
        return Step.GATING
    if "running" in (inits.get(FETCH) or {}):
        return Step.FETCHING
    return Step.WAITING
