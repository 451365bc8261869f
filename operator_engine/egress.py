"""Stage 50: what may leave the job. Regular files under ``outputs`` only (listed by the
workspace without following links); symlinks, devices, FIFOs, sockets and unprintable names
are dropped and reported in the publish log; the total is checked against the environment's
egress policy."""

from __future__ import annotations

from operator_engine.context import JobContext, Kind, Outcome


def filter_outputs(ctx: JobContext) -> Outcome:
    """Keep the publishable outputs in ``ctx.state.outputs``; 42 when over the policy."""
    try:
        kept, dropped = ctx.workspace.outputs()
    except OSError as exc:
        return Outcome(Kind.PUBLISH_FAILED, f"outputs could not be read: {exc.strerror}")
    for line in dropped:
        ctx.publish_log(f"not published: {line}")
    total = sum(size for _name, size in kept)
    policy = ctx.env.egress
    ctx.state.outputs = kept
    if total > policy.max_bytes or len(kept) > policy.max_files:
        return Outcome(
            Kind.EGRESS_EXCEEDED,
            f"outputs are {total} bytes in {len(kept)} files; environment {ctx.env.id} allows "
            f"at most {policy.max_bytes} bytes in {policy.max_files} files",
        )
    return Outcome.ok()
