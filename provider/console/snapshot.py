"""What the operator console shows, read from the job store in one pass.

:func:`snapshot` is a JSON-able dict: environments (capacity, running and queued jobs, state,
price), the live jobs (stage, start, maxJobDuration), the last :data:`FINISHED` finished jobs
(status, duration, shortened owner, result sizes, reason) and :func:`chart` (jobs finished per
minute and their median duration over the last hour). It carries no wall-clock "now", so two
snapshots are equal when nothing changed; the page counts elapsed time itself. It never
carries a job's request (it held decrypted dataset URLs).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from datastore.jobs import JobStore
from operator_engine.environments import EnvEntry
from operator_engine.lifecycle import EnvState
from operator_engine.statuses import TERMINAL, JobStatus, status_text
from provider.admin.batches import batch_state

FINISHED = 50
#: a running job's log tail in the console: its last lines, read from at most this many bytes
TAIL_LINES = 8
TAIL_BYTES = 4096
CHART_MINUTES = 60
_TERMINAL = [int(s) for s in TERMINAL]
_QUEUED = ("submitted", "pending")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _epoch(moment: datetime | None) -> float | None:
    value = _utc(moment)
    return None if value is None else round(value.timestamp(), 3)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    first, last = _utc(start), _utc(end)
    if first is None or last is None:
        return None
    return round((last - first).total_seconds(), 3)


def short(address: str) -> str:
    """``0x1234…abcd`` for a long address.

    >>> short("0x" + "ab" * 20), short("bob")
    ('0xabab…abab', 'bob')
    """
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


def _price(env: Any) -> list[dict[str, Any]]:
    if env.prices:
        return [{"feeToken": token, "perMinute": price} for token, price in env.prices]
    return [{"feeToken": env.fee_token, "perMinute": env.price_min}]


def _env_view(entry: EnvEntry, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    env = entry.env
    mine = counts.get(env.id, {})
    return {
        "id": env.id,
        "state": "draining" if entry.status is EnvState.DELETING else "available",
        "cpu": env.cpu_number,
        "ramGB": env.ram_gb,
        "diskGB": env.disk_gb,
        "gpu": env.gpu_number,
        "gpuType": env.gpu_type,
        "maxJobs": env.max_jobs,
        "maxJobDuration": env.max_job_duration,
        "running": mine.get("running", 0),
        "queued": mine.get("queued", 0),
        "price": _price(env),
    }


def chart(finished: list[tuple[datetime, float | None]], now: datetime) -> list[dict[str, Any]]:
    """Per minute of the hour before ``now`` (oldest first): jobs finished and their median
    duration in seconds (None without jobs).

    >>> now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    >>> ago = [(now - timedelta(seconds=10), 4.0), (now - timedelta(seconds=20), 2.0)]
    >>> points = chart(ago, now)
    >>> len(points), points[-1]
    (60, {'minute': 1767268800.0, 'jobs': 2, 'medianSeconds': 3.0})
    """
    last_minute = now.replace(second=0, microsecond=0)
    first = last_minute - timedelta(minutes=CHART_MINUTES - 1)
    buckets: list[list[float]] = [[] for _ in range(CHART_MINUTES)]
    counts = [0] * CHART_MINUTES
    for when, duration in finished:
        index = int((when - first).total_seconds() // 60)
        if 0 <= index < CHART_MINUTES:
            counts[index] += 1
            if duration is not None:
                buckets[index].append(duration)
    return [
        {
            "minute": (first + timedelta(minutes=i)).timestamp(),
            "jobs": counts[i],
            "medianSeconds": round(statistics.median(buckets[i]), 3) if buckets[i] else None,
        }
        for i in range(CHART_MINUTES)
    ]


def log_tail(path: Path, *, max_bytes: int = TAIL_BYTES, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the log at ``path`` (at most ``max_bytes`` read; "" when
    there is none yet).

    >>> import tempfile, pathlib
    >>> log = pathlib.Path(tempfile.mkdtemp()) / "a.log"
    >>> _ = log.write_text("".join(f"line {i}\\n" for i in range(20)))
    >>> log_tail(log, lines=2)
    'line 18\\nline 19'
    >>> log_tail(log.with_name("none"))
    ''
    """
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read(max_bytes)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def snapshot(
    db: sa.Engine,
    entries: dict[str, EnvEntry],
    now: datetime,
    tail: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """The console's view of the provider at ``now`` (see the module docstring); ``tail``
    gives a running job's log tail by job id."""
    live, done, hour = JobStore(db).console(
        _TERMINAL, FINISHED, now - timedelta(minutes=CHART_MINUTES + 1)
    )
    counts: dict[str, dict[str, int]] = {}
    for row in live:
        state = batch_state(row.status)
        key = "queued" if state in _QUEUED else "running"
        per_env = counts.setdefault(row.environment, {})
        per_env[key] = per_env.get(key, 0) + 1
    durations = {e.env.id: e.env.max_job_duration for e in entries.values()}
    return {
        "environments": [_env_view(entry, counts) for entry in entries.values()],
        "running": [
            {
                "jobId": row.job_id,
                "owner": short(row.owner),
                "environment": row.environment,
                "status": row.status,
                "stage": status_text(JobStatus(row.status)),
                "state": batch_state(row.status),
                "stopRequested": bool(row.stopreq),
                "createdAt": _epoch(row.date_created),
                "startedAt": _epoch(row.date_started),
                "maxJobDuration": durations.get(row.environment),
                "logTail": tail(row.job_id) if tail is not None else "",
            }
            for row in live
        ],
        "finished": [
            {
                "jobId": row.job_id,
                "owner": short(row.owner),
                "environment": row.environment,
                "status": row.status,
                "statusText": status_text(JobStatus(row.status)),
                "succeeded": row.status == JobStatus.FINISHED,
                "finishedAt": _epoch(row.date_finished),
                "durationSeconds": _seconds(
                    row.date_started or row.date_created, row.date_finished
                ),
                "resultBytes": int(row.bytes or 0),
                "reason": row.reason,
            }
            for row in done
        ],
        "chart": chart(
            [
                (
                    _utc(r.date_finished) or now,
                    _seconds(r.date_started or r.date_created, r.date_finished),
                )
                for r in hour
            ],
            now,
        ),
    }
