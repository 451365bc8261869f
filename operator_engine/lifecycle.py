"""The job lifecycle's rules, in one place.

:mod:`operator_engine.statuses` holds the codes, their texts and the transition table; this
module decides *which* status a job moves to: what a stage's outcome or an unexpected error
ends it at, where a job found without its worker resumes, why a job was stopped, which
columns a move stamps. It also owns the states an environment passes through and when a
drain finishes. The store's one status write (:func:`datastore.job_writes.write_status`)
checks moves with :func:`is_allowed`, applies :func:`stamps` and writes the event row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum, IntEnum, StrEnum
from typing import Any, Protocol

from operator_engine.statuses import TERMINAL, TRANSITIONS, JobStatus

S = JobStatus


class Kind(Enum):
    """How a stage ended; :data:`FAILURE` maps the failed ones to statuses."""

    OK = "ok"
    DATA_FAILED = "data_failed"
    ALGO_FAILED = "algo_failed"
    RUN_FAILED = "run_failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"  # stopped or deleted by someone else while the stage ran
    EGRESS_EXCEEDED = "egress_exceeded"
    PUBLISH_FAILED = "publish_failed"


class StopReason(IntEnum):
    """Why a job was stopped: the ``stopreq`` a job carries (a V4 status field)."""

    NONE = 0  # not stopped on request (it ran to its end, or failed)
    OWNER = 1  # its owner (or an operator acting for the provider) asked
    TIME_LIMIT = 2  # its run reached the environment's or the order's time limit

    @property
    def text(self) -> str:
        """The reason a job stopped this way shows when no other reason is given."""
        return _STOP_TEXT[self]


_STOP_TEXT = {
    StopReason.NONE: "",
    StopReason.OWNER: "stopped by its owner",
    StopReason.TIME_LIMIT: "stopped: time limit reached",
}


class EnvState(StrEnum):
    """The states of a store-managed compute environment (file environments are AVAILABLE)."""

    CREATING = "CREATING"  # being checked (images, GPUs) before it is offered
    AVAILABLE = "AVAILABLE"  # offered, takes jobs
    ERRORED = "ERRORED"  # its health check failed: not offered
    INVALID = "INVALID"  # its configuration or credentials are unusable: not offered
    DELETING = "DELETING"  # draining: runs its queued jobs, takes no new ones, then goes

    @property
    def accepts_jobs(self) -> bool:
        """True when new jobs may be submitted to an environment in this state."""
        return self is EnvState.AVAILABLE

    @property
    def schedulable(self) -> bool:
        """True when workers run queued jobs of an environment in this state."""
        return self in (EnvState.AVAILABLE, EnvState.DELETING)


class EnvironmentRows(Protocol):
    """The store's environments, as :func:`finish_drains` reads and deletes them."""

    def rows(self) -> Sequence[Any]: ...

    def delete(self, env_id: str) -> bool: ...


class DrainableStore(Protocol):
    """What :func:`finish_drains` needs of the job store."""

    def live_counts(self) -> dict[str, int]: ...

    @property
    def environments(self) -> EnvironmentRows: ...


def finish_drains(store: DrainableStore) -> list[str]:
    """Delete the draining (DELETING) environments whose jobs have all ended; their ids. The
    one place a drain finishes: the engine's sweep and the admin API both call it (a draining
    environment takes no new jobs, so none can arrive between the count and the delete)."""
    live = store.live_counts()
    done = [
        r.id
        for r in store.environments.rows()
        if r.status == EnvState.DELETING and not live.get(r.id)
    ]
    for env_id in done:
        store.environments.delete(env_id)
    return done


class Stage(StrEnum):
    """The pipeline's named steps, in order; each is worked at :attr:`status`."""

    CONFIGURE = "configure"
    PROVISION = "provision"
    START = "start"  # provisioned: the run is next (no work of its own)
    RUN = "run"
    FILTER = "filter"
    PUBLISH = "publish"
    SETTLE = "settle"  # results published: a paid job's escrow claim is settled

    @property
    def status(self) -> JobStatus:
        """The status a job enters before this stage's work begins."""
        return _STAGE_STATUS[self]

    @property
    def needs_inputs(self) -> bool:
        """True when a walk from this stage provisions inputs (so needs the file objects)."""
        return self.status is S.CONFIGURING


_STAGE_STATUS = {
    Stage.CONFIGURE: S.CONFIGURING,
    Stage.PROVISION: S.CONFIGURING,
    Stage.START: S.PROVISIONED,
    Stage.RUN: S.RUNNING,
    Stage.FILTER: S.FILTERING,
    Stage.PUBLISH: S.PUBLISHING,
    Stage.SETTLE: S.SETTLING,
}

#: What a failed stage ends a job at, by how it failed. A job resumed at 30 provisions its
#: inputs again, so 31 and 32 are reachable from 30 as well as from 20.
FAILURE: dict[Kind, JobStatus] = {
    Kind.DATA_FAILED: S.DATA_PROVISIONING_FAILED,
    Kind.ALGO_FAILED: S.ALGO_PROVISIONING_FAILED,
    Kind.RUN_FAILED: S.RUN_FAILED,
    Kind.TIMED_OUT: S.STOPPED,
    Kind.EGRESS_EXCEEDED: S.EGRESS_EXCEEDED,
    Kind.PUBLISH_FAILED: S.UPLOAD_FAILED,
}


def stop_reason(kind: Kind) -> StopReason:
    """The ``stopreq`` a job ended by a stage outcome of ``kind`` carries."""
    return StopReason.TIME_LIMIT if kind is Kind.TIMED_OUT else StopReason.NONE


#: The one map of what an unexpected error (a crash inside a stage, or in the worker around
#: it) ends a job at, by the in-flight status it was in; the pipeline and the worker both use
#: it. At 30 provisioning has succeeded and the run is what comes next: a crash there is a
#: failure to run the algorithm (41), never a provisioning failure. A job at 71 has published
#: its results: a crash there is not a failure, the sweep resumes the settlement.
CRASH_FAILURE: dict[JobStatus, JobStatus] = {
    S.STARTED: S.STOPPED,
    S.CONFIGURING: S.DATA_PROVISIONING_FAILED,
    S.PROVISIONED: S.RUN_FAILED,
    S.RUNNING: S.RUN_FAILED,
    S.FILTERING: S.UPLOAD_FAILED,
    S.PUBLISHING: S.UPLOAD_FAILED,
}


def unworkable_failure(status: JobStatus) -> JobStatus:
    """What a job found at in-flight ``status`` ends at when it cannot be worked at all (its
    environment or its file objects are gone): before its run, a data-provisioning failure
    (31; a job at 10 enters 20 first); after it, the crash map's code. A job at 71 needs
    neither: it only settles (``KeyError`` here)."""
    if status <= S.PROVISIONED:
        return S.DATA_PROVISIONING_FAILED
    return CRASH_FAILURE[status]


def resume_stage(status: JobStatus) -> Stage | None:
    """Where a job found at in-flight ``status`` without a live worker resumes; None = it
    cannot (its algorithm run was interrupted and is not repeated behind the owner's back: it
    ends at :data:`CRASH_FAILURE` of its status).
    Up to 30 the job provisions again; filtering and publishing are repeatable; at 71 only
    the settlement is left."""
    if status <= S.PROVISIONED:
        return Stage.CONFIGURE
    return _RESUME.get(status)


_RESUME = {S.FILTERING: Stage.FILTER, S.PUBLISHING: Stage.FILTER, S.SETTLING: Stage.SETTLE}


def stamps(to: JobStatus, now: datetime) -> dict[str, Any]:
    """The columns a move to ``to`` sets besides the status: the start and finish dates, and
    the private request scrubbed once a job ends."""
    if to in TERMINAL:
        return {"date_finished": now, "request": None}
    if to is S.STARTED:
        return {"date_started": now}
    return {}


def ending(current: JobStatus, wanted: JobStatus) -> JobStatus:
    """The status a job at in-flight ``current`` ends at when a stage asks for ``wanted``:
    ``wanted`` when the table allows the move, else the crash map's code for ``current`` (a
    stage that asks for a move the table refuses is a bug; the job must still end, not wait
    at ``current`` for a sweep that would refuse it again).

    >>> ending(S.RUNNING, S.RUN_FAILED).value, ending(S.CONFIGURING, S.RUN_FAILED).value
    (41, 31)
    """
    if is_allowed(current, wanted):
        return wanted
    return CRASH_FAILURE.get(current, S.STOPPED)


def is_allowed(from_: JobStatus | None, to: JobStatus) -> bool:
    """True when a job may move ``from_`` → ``to`` (``None``: a new job, queued at 1)."""
    if from_ is None:
        return to is S.WARMING_UP
    return to in TRANSITIONS[from_]
