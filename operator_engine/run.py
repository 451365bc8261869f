"""Stage 40: the algorithm container, supervised until it ends, times out or is stopped.

While it runs: stdout/stderr stream into ``logs/algorithm.log``; the store is polled for a
stop; the time limit is the environment's ``maxJobDuration``; ``/data/outputs``,
``/data/logs`` and the captured output share the job's one disk share (see
:mod:`operator_engine.quota`): going past it ends the job at 42.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from typing import BinaryIO

from operator_engine import quota
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.environments import gpu_share, job_share
from operator_engine.runner import ContainerSpec, Mount, RunnerError
from operator_engine.workspace import ALGORITHM_LOG, did_dirname

ALGORITHM_PATH = "/data/transformations/algorithm"
PIDS_LIMIT = 128
POLL_SECONDS = 0.5


def container_spec(ctx: JobContext, area: quota.WritableArea | None = None) -> ContainerSpec:
    """The container of ``ctx``'s job: §10 mounts and environment, the env's share of limits;
    ``/data/outputs`` and ``/data/logs`` are ``area``'s (default: the job folder's)."""
    cpus, ram, _disk = job_share(ctx.env)
    gpus, gpu_devices = gpu_share(ctx.env)
    algo = ctx.request.algorithm
    entrypoint = str(algo.container["entrypoint"])
    folder = ctx.folder
    outputs, logs = (area.outputs, area.logs) if area else (folder.outputs, folder.logs)
    return ContainerSpec(
        job_id=ctx.job_id,
        image=ctx.state["image_id"],
        command=entrypoint.replace("$ALGO", ALGORITHM_PATH),
        environment={
            **dict(ctx.env.container_env),
            "DIDS": json.dumps([did_dirname(d.did) for d in ctx.request.datasets]),
            "TRANSFORMATION_DID": did_dirname(algo.did) if algo.did else "",
            "VOLUME": "/data",
            "INPUTS": "/data/inputs",
            "OUTPUTS": "/data/outputs",
            "LOGS": "/data/logs",
            "secret": secrets.token_hex(16),
        },
        mounts=[
            Mount(folder.inputs, "/data/inputs", True),
            Mount(folder.transformations, "/data/transformations", True),
            Mount(folder.ddos, "/data/ddos", True),
            Mount(outputs, "/data/outputs", False),
            Mount(logs, "/data/logs", False),
        ],
        nano_cpus=int(cpus * 1e9),
        mem_bytes=ram,
        pids_limit=PIDS_LIMIT,
        tmpfs_bytes=min(64 * 1024**2, ram // 4),
        gpus=gpus,
        gpu_devices=gpu_devices,
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
    return max(int(ctx.state.get("disk_left", disk)), 0)


def run(ctx: JobContext) -> Outcome:
    """Start the container in the job's writable area and supervise it to its end."""
    runner = ctx.runner
    for cid, _job in runner.containers(ctx.job_id):  # leftovers of an interrupted attempt
        runner.remove(cid)
    budget = _budget(ctx)
    max_entries = ctx.env.egress.max_files * 10 + 1000
    try:
        area = quota.prepare(ctx.folder, budget, max_entries, ctx.disk_quota)
    except quota.QuotaError as exc:
        return Outcome(Kind.RUN_FAILED, str(exc))
    ctx.configure_log(f"disk share for outputs, logs and output: {budget} bytes ({area.mode})")
    outcome = Outcome(Kind.RUN_FAILED, "the run did not finish")
    try:
        outcome = _run_in(ctx, area)
    finally:
        area.release(keep_outputs=outcome.kind is Kind.OK)
    return outcome


def _over_share(area: quota.WritableArea) -> Outcome:
    return Outcome(
        Kind.EGRESS_EXCEEDED,
        f"the algorithm wrote past the job's disk share ({area.budget} bytes for "
        f"/data/outputs, /data/logs and its output; at most {area.max_entries} entries)",
    )


def _run_in(ctx: JobContext, area: quota.WritableArea) -> Outcome:
    runner = ctx.runner
    try:
        spec = container_spec(ctx, area)
    except (KeyError, ValueError) as exc:
        return Outcome(Kind.RUN_FAILED, f"cannot build the container: {exc}")
    log_fd = os.open(
        area.logs / ALGORITHM_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644
    )
    with os.fdopen(log_fd, "ab", buffering=0) as handle:
        sink = ShareSink(handle, area.budget)
        try:
            cid = runner.start(spec)
        except RunnerError as exc:
            return Outcome(Kind.RUN_FAILED, str(exc))
        ctx.on_container(cid)
        follower = threading.Thread(
            target=runner.follow_logs, args=(cid, sink, area.budget + 1), daemon=True
        )
        follower.start()
        outcome = _supervise(ctx, cid, follower, area, sink)
        follower.join(timeout=10)
    try:
        if outcome is None and (sink.exceeded or area.is_exceeded()):
            outcome = _over_share(area)
        if outcome is None:
            info = runner.wait(cid)
            ctx.state["exit_code"] = info.exit_code
            if info.exit_code == 0 and not info.oom_killed:
                outcome = Outcome.ok()
            else:
                why = "killed: out of memory" if info.oom_killed else f"exit code {info.exit_code}"
                outcome = Outcome(
                    Kind.RUN_FAILED, f"algorithm failed ({why})", info.exit_code, info.oom_killed
                )
    except RunnerError as exc:
        outcome = Outcome(Kind.RUN_FAILED, str(exc))
    finally:
        runner.remove(cid)
    return outcome


def _supervise(
    ctx: JobContext,
    cid: str,
    follower: threading.Thread,
    area: quota.WritableArea,
    sink: ShareSink,
) -> Outcome | None:
    """Wait for the log stream to end (= the container ended); None when it ended by itself."""
    env = ctx.env
    limit = min(env.max_job_duration, ctx.request.max_duration or env.max_job_duration)
    deadline = time.monotonic() + limit
    next_stop_check = next_disk_check = 0.0
    while True:
        follower.join(timeout=0.05)
        if not follower.is_alive():
            return None
        now = time.monotonic()
        if now >= deadline:
            ctx.runner.kill(cid)
            return Outcome(Kind.TIMED_OUT, f"time limit of {limit}s (maxJobDuration) reached")
        if now >= next_stop_check:
            next_stop_check = now + POLL_SECONDS
            if ctx.is_cancelled():
                ctx.runner.kill(cid)
                return Outcome(Kind.CANCELLED)
        if sink.exceeded or (now >= next_disk_check and area.is_exceeded()):
            ctx.runner.kill(cid)
            return _over_share(area)
        if now >= next_disk_check:
            next_disk_check = now + area.check_seconds
