"""Stage 20: the job's folder tree on the host (docs/protocol.md §10 layout)."""

from __future__ import annotations

from operator_engine.context import JobContext, Kind, Outcome


def configure(ctx: JobContext) -> Outcome:
    """Create ``<data_dir>/jobs/<job_id>/`` afresh (a resumed job starts from a clean tree)."""
    try:
        ctx.folder.create()
    except OSError as exc:
        return Outcome(Kind.DATA_FAILED, f"cannot create the job folder: {exc.strerror}")
    env = ctx.env
    ctx.configure_log(
        f"job {ctx.job_id} in environment {env.id}: maxJobDuration {env.max_job_duration}s, "
        f"egress at most {env.egress.max_bytes} bytes in {env.egress.max_files} files"
    )
    return Outcome.ok()
