"""Stage 40: the algorithm container, supervised until it ends, times out or is stopped.

While it runs: stdout/stderr stream into ``logs/algorithm.log``; the store is polled for a
stop; the time limit is the environment's ``maxJobDuration``; ``outputs/`` is measured so an
algorithm cannot fill the host's disk beyond its share (that ends the job at 42).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path

from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.environments import gpu_share, job_share
from operator_engine.runner import ContainerSpec, Mount, RunnerError
from operator_engine.workspace import ALGORITHM_LOG, did_dirname

ALGORITHM_PATH = "/data/transformations/algorithm"
LOG_LIMIT = 16 * 1024**2
PIDS_LIMIT = 128
POLL_SECONDS = 0.5


def container_spec(ctx: JobContext) -> ContainerSpec:
    """The container of ``ctx``'s job: §10 mounts and environment, the env's share of limits."""
    cpus, ram, _disk = job_share(ctx.env)
    gpus, gpu_devices = gpu_share(ctx.env)
    algo = ctx.request.algorithm
    entrypoint = str(algo.container["entrypoint"])
    folder = ctx.folder
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
            Mount(folder.outputs, "/data/outputs", False),
            Mount(folder.logs, "/data/logs", False),
        ],
        nano_cpus=int(cpus * 1e9),
        mem_bytes=ram,
        pids_limit=PIDS_LIMIT,
        tmpfs_bytes=min(64 * 1024**2, ram // 4),
        gpus=gpus,
        gpu_devices=gpu_devices,
    )


def disk_used(root: Path, max_entries: int) -> tuple[int, int]:
    """(bytes, entries) under ``root`` without following links; stops after ``max_entries``."""
    total = entries = 0
    stack = [root]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total, entries


def run(ctx: JobContext) -> Outcome:
    """Start the container and supervise it to its end."""
    runner = ctx.runner
    for cid, _job in runner.containers(ctx.job_id):  # leftovers of an interrupted attempt
        runner.remove(cid)
    try:
        spec = container_spec(ctx)
    except (KeyError, ValueError) as exc:
        return Outcome(Kind.RUN_FAILED, f"cannot build the container: {exc}")
    log_fd = os.open(
        ctx.folder.log(ALGORITHM_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644
    )
    with os.fdopen(log_fd, "ab", buffering=0) as sink:
        try:
            cid = runner.start(spec)
        except RunnerError as exc:
            return Outcome(Kind.RUN_FAILED, str(exc))
        ctx.on_container(cid)
        follower = threading.Thread(
            target=runner.follow_logs, args=(cid, sink, LOG_LIMIT), daemon=True
        )
        follower.start()
        outcome = _supervise(ctx, cid, follower)
        follower.join(timeout=10)
    try:
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


def _supervise(ctx: JobContext, cid: str, follower: threading.Thread) -> Outcome | None:
    """Wait for the log stream to end (= the container ended); None when it ended by itself."""
    env = ctx.env
    _cpus, _ram, disk = job_share(env)
    max_entries = env.egress.max_files * 10 + 1000
    limit = min(env.max_job_duration, ctx.request.max_duration or env.max_job_duration)
    deadline = time.monotonic() + limit
    next_check = 0.0
    while True:
        follower.join(timeout=0.05)
        if not follower.is_alive():
            return None
        now = time.monotonic()
        if now >= deadline:
            ctx.runner.kill(cid)
            return Outcome(Kind.TIMED_OUT, f"time limit of {limit}s (maxJobDuration) reached")
        if now >= next_check:
            next_check = now + POLL_SECONDS
            if ctx.is_cancelled():
                ctx.runner.kill(cid)
                return Outcome(Kind.CANCELLED)
            used, entries = disk_used(ctx.folder.outputs, max_entries)
            if used > disk or entries > max_entries:
                ctx.runner.kill(cid)
                return Outcome(
                    Kind.EGRESS_EXCEEDED,
                    f"outputs exceeded the job's disk quota ({disk} bytes, {max_entries} entries)",
                )
