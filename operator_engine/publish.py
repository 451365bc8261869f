"""Stage 60: record results (outputs, then the three logs) with size and sha256.

Also used for every other terminal status: :func:`record_logs` publishes the logs alone, so a
failed or stopped job still answers with its configuration, algorithm and publish logs.
"""

from __future__ import annotations

from collections.abc import Callable

from datastore.jobs import JobStore, ResultRecord
from operator_engine.backends.base import JobWorkspace, StoredFile, Volume
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.workspace import ALGORITHM_LOG, CONFIGURE_LOG, PUBLISH_LOG

LOG_TYPES = (
    (ALGORITHM_LOG, "algorithmLog"),
    (CONFIGURE_LOG, "configrationLog"),  # sic: the type clients read
    (PUBLISH_LOG, "publishLog"),
)


def result_record(stored: StoredFile, type_: str, filename: str) -> ResultRecord:
    """The store's entry of a result file."""
    return ResultRecord(filename, stored.size, type_, stored.sha256, stored.rel)


def _record(workspace: JobWorkspace, volume: Volume, name: str, type_: str) -> ResultRecord | None:
    try:
        return result_record(workspace.result(volume, name), type_, name)
    except (OSError, ValueError):
        return None


def log_records(workspace: JobWorkspace) -> list[ResultRecord]:
    records = []
    for name, type_ in LOG_TYPES:
        record = _record(workspace, "logs", name, type_)
        if record is not None:
            records.append(record)
    return records


def record_logs(
    store: JobStore,
    workspace: JobWorkspace,
    reason: str | None,
    extend: Callable[[list[ResultRecord]], list[ResultRecord]] | None = None,
) -> None:
    """Publish only the logs (failed or stopped jobs), with ``reason`` in the publish log;
    ``extend`` may add to them (the receipt)."""
    workspace.settle()
    if reason:
        workspace.append_log(PUBLISH_LOG, f"job ended: {reason}")
    records = log_records(workspace)
    store.set_results(workspace.job_id, extend(records) if extend is not None else records)


def publish(ctx: JobContext) -> Outcome:
    """Record ``ctx.state.outputs`` and the logs as the job's results."""
    records: list[ResultRecord] = []
    for rel, _size in ctx.state.outputs:
        record = _record(ctx.workspace, "outputs", rel, "output")
        if record is None:
            return Outcome(Kind.PUBLISH_FAILED, f"output {rel} could not be read")
        records.append(record)
        ctx.publish_log(f"published {rel}: {record.filesize} bytes, sha256 {record.sha256}")
    ctx.publish_log(f"{len(records)} output file(s) published")
    ctx.state.records = records + log_records(ctx.workspace)
    return Outcome.ok()
