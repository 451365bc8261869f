"""Batches (document 001): one per compute environment, its jobs counted by batch state.

:func:`batch_state` is the one owner of the job-status → batch-state mapping:

====================  ==========
job status            state
====================  ==========
1                     submitted
10                    pending (queued for a slot)
20                    runnable (claimed; inputs being fetched)
30                    starting (inputs and image ready; the container is being created)
40, 50, 60, 71        running (71: settling an escrow payment)
70                    succeeded
any other (terminal)  failed
====================  ==========

Job views never carry the job's request: it held decrypted dataset URLs, which only the
engine may see.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from datastore.jobs import JobStore
from operator_engine.statuses import JobStatus
from provider.admin.envs import iso

STATES = ("submitted", "pending", "runnable", "starting", "running", "succeeded", "failed")

#: the tool that runs a batch's jobs, per platform (document 001's ``batch_tool``)
TOOLS = {
    "docker": {
        "tool_id": "docker",
        "tool_name": "Docker Engine",
        "tool_description": "one hardened container per job: no network, read-only root, "
        "non-root, no capabilities, resource-limited",
    },
    "kubernetes": {
        "tool_id": "kubernetes",
        "tool_name": "Kubernetes Jobs",
        "tool_description": "one Job per job: a hardened pod (non-root, read-only root, no "
        "capabilities, requests = limits) behind a deny-all NetworkPolicy",
    },
}


def batch_state(status: int) -> str:
    """The batch state of a job in ``status`` (see the module docstring)."""
    if status == JobStatus.WARMING_UP:
        return "submitted"
    if status == JobStatus.STARTED:
        return "pending"
    if status == JobStatus.CONFIGURING:
        return "runnable"
    if status == JobStatus.PROVISIONED:
        return "starting"
    if status in (
        JobStatus.RUNNING,
        JobStatus.FILTERING,
        JobStatus.PUBLISHING,
        JobStatus.SETTLING,
    ):
        return "running"
    if status == JobStatus.FINISHED:
        return "succeeded"
    return "failed"


def job_rows(db: sa.Engine, env_id: str | None = None) -> list[Any]:
    return JobStore(db).all_rows(env_id)


def counts(rows: list[Any]) -> dict[str, int]:
    result = dict.fromkeys(STATES, 0)
    for row in rows:
        result[batch_state(row.status)] += 1
    return result


def tool(platform: str) -> dict[str, str]:
    return TOOLS.get(platform, {"tool_id": platform, "tool_name": platform, "tool_description": ""})


def filesystem_id(env: Any) -> str:
    return f"{env.id}-data"


def hardware(env: Any) -> dict[str, Any]:
    """The batch's hardware (document 001): CPUs, memory in MiB, and its one filesystem, the
    job's ``/data`` volume of the environment's disk size."""
    return {
        "filesystem_list": [
            {"filesystem_id": filesystem_id(env), "filesystem_name": f"/data ({env.disk_gb} GB)"}
        ],
        "cpu": env.cpu_number,
        "memory": int(env.ram_gb * 1024),
    }


def batch_view(env: Any, platform: str, n_jobs: int) -> dict[str, Any]:
    return {
        "batch_id": env.id,
        "batch_tool": tool(platform),
        "n_jobs": n_jobs,
        "hardware": hardware(env),
    }


def _arguments(row: Any) -> dict[str, str]:
    return {
        "algorithm": row.algo_did or "",
        "datasets": ",".join(row.input_dids or []),
        "environment": row.environment,
        "owner": row.owner,
    }


def job_summary(row: Any, platform: str) -> dict[str, Any]:
    """One item of ``GET /api/batches/<id>/jobs`` (document 001's Job object, plus status)."""
    return {
        "job_id": row.job_id,
        "job_tool": tool(platform),
        "job_log_id": row.job_id,
        "job_argument_list": [
            {"argument_key": k, "argument_value": v} for k, v in _arguments(row).items()
        ],
        **_outcome(row),
    }


def _outcome(row: Any) -> dict[str, Any]:
    """State, status code, reason and times: what both job views end with."""
    return {
        "status": batch_state(row.status),
        "statusCode": row.status,
        "reason": row.reason,
        "create_time": iso(row.date_created),
        "start_time": iso(row.date_started),
        "stop_time": iso(row.date_finished),
    }


def job_detail(row: Any, env: Any | None) -> list[dict[str, Any]]:
    """``GET /api/batches/<id>/jobs/<job>``: document 001's one-item list."""
    return [
        {
            "job_id": row.job_id,
            "log_id": row.job_id,
            "hardware": {
                "filesystems": [] if env is None else [filesystem_id(env)],
                "memory": None if env is None else int(env.ram_gb * 1024),
                "cpu": None if env is None else env.cpu_number,
            },
            "args": _arguments(row),
            **_outcome(row),
        }
    ]
