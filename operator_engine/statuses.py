"""Job statuses (docs/protocol.md §9): the codes, their texts, and the one transition table.

Every status write in the engine goes through the store's guarded ``transition``, which
consults :data:`TRANSITIONS`; a terminal status never changes.
"""

from __future__ import annotations

from enum import IntEnum


class JobStatus(IntEnum):
    WARMING_UP = 1
    STOPPED = 7
    DELETED = 8
    STARTED = 10
    CONFIGURING = 20
    PROVISIONED = 30
    DATA_PROVISIONING_FAILED = 31
    ALGO_PROVISIONING_FAILED = 32
    RUNNING = 40
    RUN_FAILED = 41
    EGRESS_EXCEEDED = 42
    FILTERING = 50
    PUBLISHING = 60
    UPLOAD_FAILED = 62
    FINISHED = 70
    SETTLING = 71

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


STATUS_TEXT: dict[JobStatus, str] = {
    JobStatus.WARMING_UP: "Warming up",
    JobStatus.STOPPED: "Job stopped",
    JobStatus.DELETED: "Job deleted successfully",
    JobStatus.STARTED: "Job started",
    JobStatus.CONFIGURING: "Configuring volumes",
    JobStatus.PROVISIONED: "Provisioning success",
    JobStatus.DATA_PROVISIONING_FAILED: "Data provisioning failed",
    JobStatus.ALGO_PROVISIONING_FAILED: "Algorithm provisioning failed",
    JobStatus.RUNNING: "Running algorithm ",
    JobStatus.RUN_FAILED: "Failed to run algorithm",
    JobStatus.EGRESS_EXCEEDED: "Error: disk quota exceeded",
    JobStatus.FILTERING: "Filtering results",
    JobStatus.PUBLISHING: "Publishing results",
    JobStatus.UPLOAD_FAILED: "Failed to upload results to storage",
    JobStatus.FINISHED: "Job finished",
    JobStatus.SETTLING: "Job settling",
}

TERMINAL: frozenset[JobStatus] = frozenset(
    {
        JobStatus.STOPPED,
        JobStatus.DELETED,
        JobStatus.DATA_PROVISIONING_FAILED,
        JobStatus.ALGO_PROVISIONING_FAILED,
        JobStatus.RUN_FAILED,
        JobStatus.EGRESS_EXCEEDED,
        JobStatus.UPLOAD_FAILED,
        JobStatus.FINISHED,
    }
)

S = JobStatus
#: Allowed moves. Any live status may also move to STOPPED (stop at any stage). A run killed
#: for filling its disk quota ends 40 -> 42; results that cannot be checked or stored, 62.
#: A job paid through an escrow lock (C2D v2) passes 60 -> 71 -> 70: it waits at 71 ("Job
#: settling", results already published) until its claim is settled on chain; it has finished
#: running, so it can no longer be stopped. A job resumed after losing its worker repeats the
#: stages of its resume point (:func:`operator_engine.lifecycle.resume_stage`) at the status it
#: was found at, so their failures are allowed from there too: provisioning's 31 and 32 from 30,
#: filtering's 42 from 60.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.WARMING_UP: frozenset({S.STARTED, S.STOPPED}),
    S.STARTED: frozenset({S.CONFIGURING, S.STOPPED}),
    S.CONFIGURING: frozenset(
        {S.PROVISIONED, S.DATA_PROVISIONING_FAILED, S.ALGO_PROVISIONING_FAILED, S.STOPPED}
    ),
    S.PROVISIONED: frozenset(
        {
            S.RUNNING,
            S.RUN_FAILED,
            S.DATA_PROVISIONING_FAILED,
            S.ALGO_PROVISIONING_FAILED,
            S.STOPPED,
        }
    ),
    # On Kubernetes the pod moves the data while the job is at 40: its input fetch (31), the
    # algorithm image pull (32) and the outputs upload (62) can fail there.
    S.RUNNING: frozenset(
        {
            S.FILTERING,
            S.RUN_FAILED,
            S.EGRESS_EXCEEDED,
            S.STOPPED,
            S.DATA_PROVISIONING_FAILED,
            S.ALGO_PROVISIONING_FAILED,
            S.UPLOAD_FAILED,
        }
    ),
    S.FILTERING: frozenset({S.PUBLISHING, S.EGRESS_EXCEEDED, S.UPLOAD_FAILED, S.STOPPED}),
    S.PUBLISHING: frozenset(
        {S.FINISHED, S.SETTLING, S.EGRESS_EXCEEDED, S.UPLOAD_FAILED, S.STOPPED}
    ),
    S.SETTLING: frozenset({S.FINISHED}),
    **{terminal: frozenset() for terminal in TERMINAL},
}
del S

#: Statuses a job is in while a worker owns it (they hold a lease).
IN_FLIGHT: frozenset[JobStatus] = frozenset(
    s for s in JobStatus if s not in TERMINAL and s is not JobStatus.WARMING_UP
)

#: In-flight statuses that hold a share of their environment (a settling job's container is
#: gone: it does not count against ``maxJobs``).
OCCUPYING: frozenset[JobStatus] = IN_FLIGHT - {JobStatus.SETTLING}


def status_text(status: JobStatus) -> str:
    """The statusText clients know for ``status``."""
    return STATUS_TEXT[status]


def sources_of(to: JobStatus) -> frozenset[JobStatus]:
    """Every status from which ``to`` may be reached (for ``UPDATE … WHERE status IN``)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to in targets)
