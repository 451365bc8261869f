"""Stage 20: the job's workspace, created afresh by its backend (docs/protocol.md §10 layout)."""

from __future__ import annotations

from operator_engine.backends.base import BackendError
from operator_engine.context import JobContext, Kind, Outcome


def configure(ctx: JobContext) -> Outcome:
    """Create the job's workspace afresh (a resumed job starts from a clean tree)."""
    try:
        ctx.workspace.create()
    except OSError as exc:
        return Outcome(Kind.DATA_FAILED, f"cannot create the job folder: {exc.strerror}")
    except BackendError as exc:
        return Outcome(Kind.DATA_FAILED, f"cannot create the job's workspace: {exc}")
    env = ctx.env
    ctx.configure_log(
        f"job {ctx.job_id} in environment {env.id}: maxJobDuration {env.max_job_duration}s, "
        f"egress at most {env.egress.max_bytes} bytes in {env.egress.max_files} files"
    )
    return Outcome.ok()
