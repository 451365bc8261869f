"""Batches: one per compute environment, its jobs counted by batch state.

:func:`batch_state` is the one owner of the job-status → batch-state mapping:

====================  ==========
job status            state
====================  ==========
1                     submitted
10                    pending
20, 30                runnable (``starting`` once the job's container is being created)
40, 50, 60            running
70                    succeeded
any other (terminal)  failed
====================  ==========
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from operator_engine.db import reading
from operator_engine.statuses import JobStatus
from operator_engine.store import jobs

STATES = ("submitted", "pending", "runnable", "starting", "running", "succeeded", "failed")


def batch_state(status: int, *, has_container: bool = False) -> str:
    """The batch state of a job in ``status`` (see the module docstring)."""
    if status == JobStatus.WARMING_UP:
        return "submitted"
    if status == JobStatus.STARTED:
        return "pending"
    if status in (JobStatus.CONFIGURING, JobStatus.PROVISIONED):
        return "starting" if has_container else "runnable"
    if status in (JobStatus.RUNNING, JobStatus.FILTERING, JobStatus.PUBLISHING):
        return "running"
    if status == JobStatus.FINISHED:
        return "succeeded"
    return "failed"


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat()


def job_rows(db: sa.Engine, env_id: str | None = None) -> list[Any]:
    query = sa.select(jobs).order_by(jobs.c.date_created, jobs.c.job_id)
    if env_id is not None:
        query = query.where(jobs.c.environment == env_id)
    with reading(db) as conn:
        return list(conn.execute(query).all())


def counts(rows: list[Any]) -> dict[str, int]:
    result = dict.fromkeys(STATES, 0)
    for row in rows:
        result[batch_state(row.status, has_container=bool(row.container_id))] += 1
    return result


def hardware(env: Any) -> dict[str, Any]:
    return {
        "cpu": env.cpu_number,
        "memory": int(env.ram_gb * 1024),
        "filesystem_list": [{"mount": "/data", "sizeGB": env.disk_gb}],
    }


def public_request(request: Any) -> dict[str, Any]:
    """The stored request without any ``files`` list: decrypted file objects (the publisher's
    URLs) are never shown, whatever version of the engine stored the row."""
    if not isinstance(request, dict):
        return {}
    shown = dict(request)
    shown["datasets"] = [
        {k: v for k, v in d.items() if k != "files"}
        for d in request.get("datasets") or []
        if isinstance(d, dict)
    ]
    if isinstance(request.get("algorithm"), dict):
        shown["algorithm"] = {k: v for k, v in request["algorithm"].items() if k != "files"}
    return shown


def job_view(row: Any, env: Any | None) -> dict[str, Any]:
    request = public_request(row.request)
    return {
        "job_id": row.job_id,
        "status": batch_state(row.status, has_container=bool(row.container_id)),
        "statusCode": row.status,
        "reason": row.reason,
        "owner": row.owner,
        "create_time": _iso(row.date_created),
        "start_time": _iso(row.date_started),
        "stop_time": _iso(row.date_finished),
        "hardware": None if env is None else hardware(env),
        "args": {
            "algorithm": row.algo_did,
            "datasets": list(row.input_dids or []),
            "request": request,
        },
    }
