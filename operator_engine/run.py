"""Stage 40: the algorithm container, supervised until it ends, times out or is stopped.

While it runs: stdout/stderr stream into ``logs/algorithm.log``; the store is polled for a
stop; the time limit is the environment's ``maxJobDuration``; ``/data/outputs``,
``/data/logs`` and the captured output share the job's one disk share (the backend's
:class:`~operator_engine.backends.base.RunArea`): going past it ends the job at 42.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import BinaryIO

from operator_engine.backends.base import (
    ALGORITHM_FILE,
    MOUNT_POINTS,
    Backend,
    BackendError,
    ContainerSpec,
    ImageError,
    Limits,
    RunArea,
    RunFailed,
)
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.environments import gpu_share, job_share
from operator_engine.lifecycle import FAILURE
from operator_engine.workspace import did_dirname

log = logging.getLogger(__name__)
ALGORITHM_PATH = f"{MOUNT_POINTS['algorithm']}/{ALGORITHM_FILE}"
PIDS_LIMIT = 128
POLL_SECONDS = 0.5


def time_limit(ctx: JobContext) -> int:
    """Seconds the algorithm may run: the environment's maxJobDuration, or less if asked."""
    env = ctx.env
    return min(env.max_job_duration, ctx.request.max_duration or env.max_job_duration)


def container_spec(ctx: JobContext, disk: int | None = None) -> ContainerSpec:
    """The container of ``ctx``'s job: §10 volumes and environment, the env's share of limits
    (``disk``: the run's share, default what provisioning left of the job's)."""
    cpus, ram, _disk = job_share(ctx.env)
    gpus, gpu_devices = gpu_share(ctx.env)
    algo = ctx.request.algorithm
    entrypoint = str(algo.container["entrypoint"])
    if ctx.state.image is None:
        raise ValueError("no image was resolved")
    return ContainerSpec(
        job_id=ctx.job_id,
        image=ctx.state.image,
        command=entrypoint.replace("$ALGO", ALGORITHM_PATH),
        environment={
            **dict(ctx.env.container_env),
            "DIDS": json.dumps([did_dirname(d.did) for d in ctx.request.datasets]),
            "TRANSFORMATION_DID": did_dirname(algo.did) if algo.did else "",
            "VOLUME": "/data",
            "INPUTS": MOUNT_POINTS["inputs"],
            "OUTPUTS": MOUNT_POINTS["outputs"],
            "LOGS": MOUNT_POINTS["logs"],
            "secret": secrets.token_hex(16),
        },
        limits=Limits(
            cpu=cpus,
            memory=ram,
            disk=_budget(ctx) if disk is None else disk,
            duration=time_limit(ctx),
            pids=PIDS_LIMIT,
            tmp=min(64 * 1024**2, ram // 4),
            gpus=gpus,
            gpu_devices=gpu_devices,
        ),
    )


class ShareSink:
    """The captured stdout/stderr: written to the algorithm log until ``budget`` bytes or a
    full disk area; then :attr:`exceeded` is set and the rest is dropped."""

    def __init__(self, handle: BinaryIO, budget: int) -> None:
        self.handle = handle
        self.budget = budget
        self.written = 0
        self.exceeded = False

    def write(self, data: bytes) -> int:
        if self.exceeded:
            return len(data)
        part = bytes(data[: max(self.budget - self.written, 0)])
        try:
            if part:
                self.handle.write(part)
        except OSError:  # ENOSPC: the area is full
            self.exceeded = True
            return len(data)
        self.written += len(part)
        if len(part) < len(data):
            self.exceeded = True
        return len(data)

    def flush(self) -> None:
        try:
            self.handle.flush()
        except OSError:
            self.exceeded = True


def _budget(ctx: JobContext) -> int:
    """What the job may still write: its disk share minus its inputs and algorithm."""
    _cpus, _ram, disk = job_share(ctx.env)
    left = ctx.state.disk_left
    return max(disk if left is None else left, 0)


def run(ctx: JobContext) -> Outcome:
    """Start the container in the job's writable area and supervise it to its end."""
    # No container of the job can exist yet: a job enters 40 once (the store's guarded 30 -> 40
    # move) and a run interrupted at 40 is never repeated (it ends at 41; the sweep removes
    # its container). So no listing of leftovers here.
    budget = _budget(ctx)
    max_entries = ctx.env.egress.max_files * 10 + 1000
    try:
        # perhaps still being made: the backend starts the container once it is ready
        area = ctx.workspace.open_run(budget, max_entries)
    except BackendError as exc:
        return Outcome(Kind.RUN_FAILED, str(exc))
    outcome = Outcome(Kind.RUN_FAILED, "the run did not finish")
    try:
        outcome = _run_in(ctx, area)
    finally:
        area.release(keep_outputs=outcome.kind is Kind.OK)
    return outcome


def _over_share(area: RunArea) -> Outcome:
    return Outcome(
        Kind.EGRESS_EXCEEDED,
        f"the algorithm wrote past the job's disk share ({area.budget} bytes for "
        f"/data/outputs, /data/logs and its output; at most {area.max_entries} entries)",
    )


def _run_in(ctx: JobContext, area: RunArea) -> Outcome:
    backend = ctx.backend
    try:
        spec = container_spec(ctx, area.budget)
    except (KeyError, ValueError) as exc:
        return Outcome(Kind.RUN_FAILED, f"cannot build the container: {exc}")
    try:
        cid = backend.start(spec, area)  # the area is ready once it returns
    except BackendError as exc:
        return Outcome(Kind.RUN_FAILED, str(exc))
    try:
        ctx.configure_log(
            f"disk share for outputs, logs and output: {area.budget} bytes ({area.mode})"
        )
        handle = area.open_log()  # what it prints meanwhile waits in the attached stream
    except BaseException:
        backend.remove(cid)
        raise
    with handle:
        sink = ShareSink(handle, area.budget)
        follower = threading.Thread(
            target=backend.follow_logs, args=(cid, sink, area.budget + 1), daemon=True
        )
        follower.start()
        try:
            ctx.on_container(cid)  # recorded while it runs
        except BaseException:
            backend.remove(cid)
            raise
        outcome = _supervise(ctx, cid, follower, area, sink)
        follower.join(timeout=10)
    try:
        if outcome is None and (sink.exceeded or area.is_exceeded()):
            outcome = _over_share(area)
        if outcome is None:
            info = backend.wait(cid)
            ctx.state.exit_code = info.exit_code
            if info.exit_code == 0 and not info.oom_killed:
                outcome = Outcome.ok()
            else:
                why = "killed: out of memory" if info.oom_killed else f"exit code {info.exit_code}"
                outcome = Outcome(
                    Kind.RUN_FAILED, f"algorithm failed ({why})", info.exit_code, info.oom_killed
                )
    except ImageError as exc:  # a backend that pulls at run time (Kubernetes)
        outcome = Outcome(Kind.ALGO_FAILED, str(exc))
    except RunFailed as exc:
        outcome = _failed_as(exc)
    except BackendError as exc:
        outcome = Outcome(Kind.RUN_FAILED, str(exc))
    finally:
        if outcome is not None and outcome.kind is Kind.OK:
            # it ended by itself and its exit is read: the removal goes on while the disk
            # share is released and the outputs filtered and published (the job ends only
            # once it is done: JobContext.state.container_gone)
            ctx.state.removal = _removing(backend, cid)
        else:
            backend.remove(cid)
    return outcome


def _removing(backend: Backend, cid: str) -> threading.Thread:
    """Remove container ``cid`` in a thread of its own; a failure is left to the sweep."""

    def remove() -> None:
        try:
            backend.remove(cid)
        except BackendError:
            log.warning("container %s not removed; the sweep removes it", cid, exc_info=True)

    thread = threading.Thread(target=remove, name=f"remove-{cid[:12]}", daemon=True)
    thread.start()
    return thread


def _failed_as(exc: RunFailed) -> Outcome:
    """The outcome whose failure status (lifecycle.FAILURE) is ``exc.status``."""
    kind = next((k for k, status in FAILURE.items() if status == exc.status), Kind.RUN_FAILED)
    return Outcome(kind, str(exc))


def _supervise(
    ctx: JobContext,
    cid: str,
    follower: threading.Thread,
    area: RunArea,
    sink: ShareSink,
) -> Outcome | None:
    """Wait for the log stream to end (= the container ended); None when it ended by itself."""
    limit = time_limit(ctx)
    now = time.monotonic()
    deadline = now + limit
    # the pipeline asked the store for a stop just before this stage: the next look is due
    # one poll later (a no-op container is often over by then)
    next_stop_check, next_disk_check = now + POLL_SECONDS, 0.0
    while True:
        follower.join(timeout=0.05)
        if not follower.is_alive():
            return None
        now = time.monotonic()
        if now >= deadline:
            ctx.backend.kill(cid)
            return Outcome(Kind.TIMED_OUT, f"time limit of {limit}s (maxJobDuration) reached")
        if now >= next_stop_check:
            next_stop_check = now + POLL_SECONDS
            if ctx.is_cancelled():
                ctx.backend.kill(cid)
                return Outcome(Kind.CANCELLED)
        if sink.exceeded or (now >= next_disk_check and area.is_exceeded()):
            ctx.backend.kill(cid)
            return _over_share(area)
        if now >= next_disk_check:
            next_disk_check = now + area.check_seconds
