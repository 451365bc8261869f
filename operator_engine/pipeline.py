"""The walk of a job through its stages.

A job walks ``STEPS`` in order; before each step it enters that stage's status (through the
store's guarded transition, so a stop or delete in between ends the walk with
:class:`~datastore.jobs.TransitionError`). Which status ends a job is the lifecycle's
(:mod:`operator_engine.lifecycle`): a failed step ends the job at ``FAILURE[kind]`` with the
reason in its publish log and its logs as results; a stage that raises ends it at
``CRASH_FAILURE`` of the status it was in. A job paid through an escrow lock then waits at 71
until its claim is settled (:func:`finish`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from datastore.jobs import JobStore, ResultRecord
from operator_engine.backends.base import JobWorkspace
from operator_engine.configure import configure
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.egress import filter_outputs
from operator_engine.lifecycle import CRASH_FAILURE, FAILURE, Stage, ending, stop_reason
from operator_engine.metrics import observe_stage
from operator_engine.models import utcnow
from operator_engine.provision import provision
from operator_engine.publish import publish, record_logs
from operator_engine.receipt_writer import with_receipt
from operator_engine.run import run
from operator_engine.statuses import JobStatus

log = logging.getLogger(__name__)
S = JobStatus
Work = Callable[[JobContext], Outcome]


class Cancelled(Exception):
    """The job was stopped, deleted or taken over while a stage ran."""


class Yielded(Exception):
    """The engine is shutting down before the job's algorithm started: the job stays at a
    resumable status (10-30), lease released."""


#: (stage, its work) in walking order; the settlement (71) follows in :func:`finish`
STEPS: list[tuple[Stage, Work | None]] = [
    (Stage.CONFIGURE, configure),
    (Stage.PROVISION, provision),
    (Stage.START, None),
    (Stage.RUN, run),
    (Stage.FILTER, filter_outputs),
    (Stage.PUBLISH, publish),
]


def steps_from(start: Stage) -> list[tuple[Stage, Work | None]]:
    """The steps a walk from ``start`` takes (none from :attr:`Stage.SETTLE`)."""
    stages = [stage for stage, _work in STEPS]
    return STEPS[stages.index(start) :] if start in stages else []


def execute(
    ctx: JobContext, store: JobStore, current: JobStatus, start: Stage = Stage.CONFIGURE
) -> JobStatus:
    """Walk the job from stage ``start``; return its terminal status. However the walk ends,
    the run's container is gone by then."""
    try:
        return _walk(ctx, store, current, start)
    finally:
        ctx.state.container_gone()


def _walk(ctx: JobContext, store: JobStore, current: JobStatus, start: Stage) -> JobStatus:
    passing: list[JobStatus] = []  # stages with no work: entered with the next, one transaction
    for stage, work in steps_from(start):
        if ctx.should_yield() and current < S.RUNNING:
            raise Yielded  # once the algorithm has run, filtering and publishing finish
        if current < stage.status and work is None:
            passing.append(stage.status)
            continue
        if current < stage.status:
            via = [status for status in passing if status < stage.status]
            store.transition(ctx.job_id, current, stage.status, via=via)
            current, passing = stage.status, []
        if work is None:
            continue
        if ctx.is_cancelled():
            raise Cancelled
        began = time.monotonic()
        try:
            outcome = work(ctx)
        except Exception as exc:  # one place turns surprises into a failed job
            log.exception("job %s: %s failed unexpectedly", ctx.job_id, work.__name__)
            reason = f"internal error in {work.__name__} ({type(exc).__name__})"
            status = CRASH_FAILURE[current]
            ctx.state.container_gone()
            end(
                store,
                ctx.workspace,
                current,
                status,
                Outcome(Kind.RUN_FAILED, reason),
                ctx.env.storage_expiry,
            )
            observe_stage(work.__name__, time.monotonic() - began)
            return status
        observe_stage(work.__name__, time.monotonic() - began)
        if outcome.kind is Kind.CANCELLED:
            raise Cancelled
        if outcome.kind is not Kind.OK:
            return fail(ctx, store, current, outcome)
    if passing:  # the walk ended on a stage with no work (none does today)
        store.transition(ctx.job_id, current, passing[-1], via=passing[:-1])
        current = passing[-1]
    records = None
    if current is not S.SETTLING:
        records = with_receipt(ctx, store, ctx.state.records, S.FINISHED)
        ctx.workspace.remove_inputs()
    return finish(ctx, store, current, records)


def finish(
    ctx: JobContext,
    store: JobStore,
    current: JobStatus,
    records: list[ResultRecord] | None = None,
) -> JobStatus:
    """End a job whose results are published (``records``: written with its next status):
    a paid job passes 71 until its escrow claim is settled (a chain outage leaves it at 71,
    lease released, for the sweep to resume)."""
    ctx.state.container_gone()
    settlement = ctx.settlement
    paid = (
        ctx.paid
        if ctx.paid is not None
        else settlement is not None and settlement.is_paid(ctx.job_id)
    )
    if settlement is not None and (current is S.SETTLING or paid):
        if current is not S.SETTLING:
            store.transition(ctx.job_id, current, S.SETTLING, results=records)
            current, records = S.SETTLING, None
        if not settlement.settle(ctx.job_id):
            raise Yielded
    store.transition(
        ctx.job_id,
        current,
        S.FINISHED,
        results=records,
        results_expire_at=utcnow() + timedelta(seconds=ctx.env.storage_expiry),
    )
    return S.FINISHED


def fail(ctx: JobContext, store: JobStore, current: JobStatus, outcome: Outcome) -> JobStatus:
    """End the job at the status ``outcome`` maps to (if the table allows that move from
    ``current``; else at the crash map's code), logs published, inputs removed."""
    ctx.state.container_gone()
    wanted = FAILURE[outcome.kind]
    status = ending(current, wanted)
    if status is not wanted:
        log.error("job %s: failed at %d, not a move from %d", ctx.job_id, wanted, current)
    receipt = None
    if current >= S.RUNNING:  # the algorithm ran: the owner gets a receipt of what it did

        def receipt(records: list[ResultRecord]) -> list[ResultRecord]:
            return with_receipt(ctx, store, records, status)

    end(store, ctx.workspace, current, status, outcome, ctx.env.storage_expiry, receipt)
    return status


def end(
    store: JobStore,
    workspace: JobWorkspace,
    current: JobStatus,
    status: JobStatus,
    outcome: Outcome,
    storage_expiry: int,
    receipt: Callable[[list[ResultRecord]], list[ResultRecord]] | None = None,
) -> None:
    """Move the job of ``workspace`` from ``current`` to the terminal ``status`` with
    ``outcome``'s reason (``receipt`` adds the signed receipt to the published logs)."""
    reason = outcome.reason or status.name.lower()
    if workspace.exists():
        record_logs(store, workspace, reason, receipt)
        workspace.remove_inputs()
    store.transition(
        workspace.job_id,
        current,
        status,
        detail=reason,
        reason=reason,
        exit_code=outcome.exit_code,
        oom_killed=outcome.oom_killed,
        stopreq=int(stop_reason(outcome.kind)),
        results_expire_at=utcnow() + timedelta(seconds=storage_expiry),
    )
