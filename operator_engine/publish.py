"""Stage 60: record results (outputs, then the three logs) with size and sha256.

Also used for every other terminal status: :func:`record_logs` publishes the logs alone, so a
failed or stopped job still answers with its configuration, algorithm and publish logs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from datastore.jobs import JobStore, ResultRecord
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.quota import settle
from operator_engine.workspace import (
    ALGORITHM_LOG,
    CONFIGURE_LOG,
    PUBLISH_LOG,
    JobFolder,
    append_log,
)

LOG_TYPES = (
    (ALGORITHM_LOG, "algorithmLog"),
    (CONFIGURE_LOG, "configrationLog"),  # sic: the type clients read
    (PUBLISH_LOG, "publishLog"),
)


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a regular file, refusing a symlink."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _record(folder: JobFolder, rel: str, type_: str, filename: str) -> ResultRecord | None:
    path = folder.root / rel
    try:
        size, sha = hash_file(path)
    except OSError:
        return None
    return ResultRecord(filename, size, type_, sha, rel)


def log_records(folder: JobFolder) -> list[ResultRecord]:
    records = []
    for name, type_ in LOG_TYPES:
        record = _record(folder, f"logs/{name}", type_, name)
        if record is not None:
            records.append(record)
    return records


def record_logs(
    store: JobStore,
    job_id: str,
    folder: JobFolder,
    reason: str | None,
    extend: Callable[[list[ResultRecord]], list[ResultRecord]] | None = None,
) -> None:
    """Publish only the logs (failed or stopped jobs), with ``reason`` in the publish log;
    ``extend`` may add to them (the receipt)."""
    settle(folder)
    if reason:
        append_log(folder.log(PUBLISH_LOG), f"job ended: {reason}")
    records = log_records(folder)
    store.set_results(job_id, extend(records) if extend is not None else records)


def publish(ctx: JobContext) -> Outcome:
    """Record ``ctx.state['outputs']`` and the logs as the job's results."""
    outputs: list[tuple[str, int]] = ctx.state.get("outputs", [])
    records: list[ResultRecord] = []
    for rel, _size in outputs:
        record = _record(ctx.folder, f"outputs/{rel}", "output", rel)
        if record is None:
            return Outcome(Kind.PUBLISH_FAILED, f"output {rel} could not be read")
        records.append(record)
        ctx.publish_log(f"published {rel}: {record.filesize} bytes, sha256 {record.sha256}")
    ctx.publish_log(f"{len(records)} output file(s) published")
    ctx.state["records"] = records + log_records(ctx.folder)
    return Outcome.ok()
