"""What the job store reads and writes besides rows: its errors, the stored form of a request
(never its file objects), result records, and jobs assembled from their rows.

The ``request`` column never holds decrypted file objects: :func:`request_to_json` leaves
every ``files`` list out (they live in the job's 0700 folder, see
:mod:`operator_engine.file_objects`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from datastore.schema import job_results
from operator_engine.lifecycle import StopReason
from operator_engine.models import AlgorithmInput, DatasetInput, Job, JobRequest, JobResult
from operator_engine.statuses import JobStatus


class StoreError(RuntimeError):
    """Base of the store's errors."""


class TransitionError(StoreError):
    """A guarded transition changed no row: the job is gone or not in an allowed status."""

    def __init__(self, job_id: str, to: JobStatus, current: JobStatus | None) -> None:
        self.job_id = job_id
        self.to = to
        self.current = current
        where = "does not exist" if current is None else f"is at {int(current)}"
        super().__init__(f"job {job_id} cannot move to {int(to)}: it {where}")


class OrderAlreadyUsed(StoreError):
    """Some of the payments already started another job (or a deleted one)."""

    def __init__(self, tx_ids: Sequence[str]) -> None:
        self.tx_ids = tuple(tx_ids)
        super().__init__(f"order {', '.join(self.tx_ids)} already started a job")


def aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def request_to_json(request: JobRequest) -> dict[str, Any]:
    """The request as stored: every ``files`` list (decrypted file objects) left empty."""
    data = dataclasses.asdict(request)
    for dataset in data["datasets"]:
        dataset["files"] = []
    data["algorithm"]["files"] = []
    return data


def request_from_json(data: Mapping[str, Any]) -> JobRequest:
    return JobRequest(
        owner=data["owner"],
        environment=data["environment"],
        datasets=[DatasetInput(**d) for d in data["datasets"]],
        algorithm=AlgorithmInput(**data["algorithm"]),
        agreement_id=data.get("agreement_id"),
        expire_timestamp=data.get("expire_timestamp"),
        job_id=data.get("job_id"),
        max_duration=data.get("max_duration"),
        chain_id=data.get("chain_id"),
    )


@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """A result as publish records it (``path`` is relative to the job folder)."""

    filename: str
    filesize: int
    type: str
    sha256: str
    path: str


def assemble(rows: Sequence[Any], result_rows: Iterable[Any]) -> list[Job]:
    """Jobs from their ``jobs`` rows and their ``job_results`` rows (ordered by job, index)."""
    results: dict[str, list[JobResult]] = {row.job_id: [] for row in rows}
    for r in result_rows:
        if r.job_id in results:
            results[r.job_id].append(JobResult(r.filename, r.filesize, r.type, r.idx, r.sha256))
    return [job_from(row, results[row.job_id]) for row in rows]


def job_from(row: Any, results: list[JobResult]) -> Job:
    """The Job of a ``jobs`` row (its shown columns) and its results."""
    return Job(
        job_id=row.job_id,
        owner=row.owner,
        environment=row.environment,
        status=JobStatus(row.status),
        date_created=aware(row.date_created),  # type: ignore[arg-type]
        input_dids=list(row.input_dids),
        algo_did=row.algo_did,
        date_finished=aware(row.date_finished),
        agreement_id=row.agreement_id,
        expire_timestamp=row.expire_timestamp,
        stopreq=StopReason(row.stopreq),
        exit_code=row.exit_code,
        oom_killed=bool(row.oom_killed),
        reason=row.reason,
        results=results,
    )


def results_from_json(text: str | None) -> list[JobResult]:
    """A job's results from :func:`datastore.json_rows.json_rows` of ``RESULT_COLUMNS``.

    >>> results_from_json('[["b.txt",2,"output",1,null],["a.txt",1,"output",0,"ab"]]')[0]
    JobResult(filename='a.txt', filesize=1, type='output', index=0, sha256='ab')
    >>> results_from_json(None), results_from_json("[]")
    ([], [])
    """
    if not text:
        return []
    rows = sorted(json.loads(text), key=itemgetter(3))
    return [JobResult(name, size, kind, index, sha256) for name, size, kind, index, sha256 in rows]


#: The columns results_from_json reads, in order.
RESULT_COLUMNS = tuple(job_results.c[name] for name in "filename filesize type idx sha256".split())


def jobs_of(conn: Connection, rows: Sequence[Any]) -> list[Job]:
    """Jobs for ``rows`` (``jobs`` rows), their results read in one query."""
    ids = [row.job_id for row in rows]
    result_rows: list[Any] = []
    if ids:
        # one id: a plain equality (an expanding IN is re-rendered on every execution)
        which = job_results.c.job_id == ids[0] if len(ids) == 1 else job_results.c.job_id.in_(ids)
        result_rows = list(
            conn.execute(
                sa.select(job_results)
                .where(which)
                .order_by(job_results.c.job_id, job_results.c.idx)
            )
        )
    return assemble(rows, result_rows)
