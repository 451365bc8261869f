"""Workers: claim a job, hold its lease (heartbeat, see :mod:`operator_engine.leases`), walk
it through the pipeline on the backend of its environment's platform; and the sweep that
recovers jobs of dead workers and reconciles the backends' containers and the disk against the
store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datastore.jobs import JobStore, TransitionError
from operator_engine import file_objects, pipeline
from operator_engine.backends.base import (
    Backend,
    BackendError,
    BackendNotConfigured,
    BackendRegistry,
    JobWorkspace,
)
from operator_engine.backends.folder import FolderWorkspace
from operator_engine.context import JobContext, Kind, Outcome
from operator_engine.credentials import Credential, CredentialsError, CredentialStore
from operator_engine.environments import EnvEntry, EnvironmentRegistry
from operator_engine.leases import hold, release, worker_id, worker_is_dead
from operator_engine.lifecycle import CRASH_FAILURE, Stage, resume_stage, unworkable_failure
from operator_engine.models import ComputeEnvironment, utcnow
from operator_engine.publish import record_logs
from operator_engine.reconcile import reconcile
from operator_engine.statuses import TERMINAL, JobStatus
from operator_engine.storage import StorageConfig
from operator_engine.workspace import PUBLISH_LOG, JobFolder

if TYPE_CHECKING:
    from operator_engine.receipt_writer import Signer
    from operator_engine.settlement import Settlement

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What workers share."""

    store: JobStore
    backends: BackendRegistry
    registry: EnvironmentRegistry
    data_dir: Path
    allow_non_public_ip: bool
    lease_seconds: float  # EngineConfig's (one default, in the shell's Settings)
    fetch_timeout: float
    storage: StorageConfig | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    settlement: Settlement | None = None  # escrow-paid jobs
    credentials: CredentialStore | None = None
    #: Set by an engine with worker threads: takes a recovered job (id, status, resume stage,
    #: holder) for one of its threads to run; False = run it in the sweeping thread.
    hand_off: Callable[[str, JobStatus, Stage, str], bool] | None = None
    receipt_signer: Signer | None = None  # None: no provider key, no receipts

    def folder(self, job_id: str) -> JobFolder:
        """The job's folder in the data dir (where every backend brings its results)."""
        return JobFolder.of(self.data_dir, job_id)

    def workspace(self, job_id: str, platform: str | None = None) -> JobWorkspace:
        """The job's workspace on the backend of ``platform``; without one (the job's platform
        is unknown or has no backend here), its folder in the data dir."""
        if platform is not None:
            try:
                return self.backends.get(platform).workspace(job_id)
            except BackendError:
                pass
        return FolderWorkspace(self.folder(job_id))

    def workspace_of(self, job_id: str, environment: str | None) -> JobWorkspace:
        """The workspace of ``job_id``, which runs in ``environment``."""
        entry = self.registry.entries().get(environment) if environment else None
        return self.workspace(job_id, entry.env.platform if entry else None)

    def credential(self, credentials_id: str) -> Credential | None:
        """The stored credential ``credentials_id`` (None: none named, missing or unreadable,
        so the pull goes without a login and a private image fails as image-not-found)."""
        if not credentials_id or self.credentials is None:
            return None
        try:
            return self.credentials.get(credentials_id)
        except CredentialsError as exc:
            log.warning("credentials %s: %s", credentials_id, exc.message)
            return None

    def schedulable_envs(self) -> dict[str, Any]:
        return {k: e.env for k, e in self.registry.entries().items() if e.schedulable}


class Worker:
    """One worker: :meth:`step` claims and runs at most one job."""

    def __init__(self, services: Services, index: int = 0) -> None:
        self.services = services
        self.id = worker_id(index)
        hold(self.id)

    def retire(self) -> None:
        release(self.id)

    def step(self) -> bool:
        """Claim one queued job and run it; False when nothing could be claimed."""
        svc = self.services
        job = svc.store.claim(self.id, svc.schedulable_envs(), svc.lease_seconds)
        if job is None:
            return False
        self.process(job.job_id, JobStatus.STARTED, Stage.CONFIGURE)
        return True

    # -- one job -----------------------------------------------------------------------------

    def _cancelled(self, job_id: str, lost: threading.Event) -> bool:
        if lost.is_set():
            return True
        held = self.services.store.holder(job_id)
        return held is None or held[0] in TERMINAL or held[1] != self.id

    def _heartbeat(self, job_id: str, done: threading.Event, lost: threading.Event) -> None:
        interval = max(self.services.lease_seconds / 3, 0.2)
        while not done.wait(interval):
            try:
                if not self.services.store.heartbeat(job_id, self.id, self.services.lease_seconds):
                    lost.set()
                    return
            except Exception:  # a store hiccup must not kill the heartbeat
                log.warning("heartbeat of job %s failed", job_id, exc_info=True)

    def process(self, job_id: str, current: JobStatus, start: Stage) -> None:
        """Walk ``job_id`` (held by this worker) from ``start``; always releases the lease."""
        svc = self.services
        done, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, done, lost), daemon=True)
        beat.start()
        paid: bool | None = None  # None: not known (then asked again where it matters)
        try:
            # an escrow lock is recorded before its job is queued: paid or not, it stays so
            paid = svc.settlement is not None and bool(svc.settlement.is_paid(job_id))
            request = svc.store.request_of(job_id)
            if request is None:
                raise pipeline.Cancelled
            entry = svc.registry.entries().get(request.environment)
            reason = f"environment {request.environment} no longer exists"
            backend: Backend | None = None
            if entry is not None:
                try:
                    backend = svc.backends.get(entry.env.platform)
                except BackendNotConfigured as exc:
                    entry, reason = None, str(exc)
            if entry is not None and start.needs_inputs:
                try:
                    request = file_objects.load(svc.folder(job_id), request)
                except file_objects.FileObjectsMissing as exc:
                    entry, reason = None, str(exc)
            if entry is None and current is JobStatus.SETTLING:
                # its results are published: the escrow claim left needs no environment
                entry = EnvEntry(ComputeEnvironment(id=request.environment))
                backend = next(iter(svc.backends))  # nor a backend: no stage runs
            if entry is None or backend is None:
                if current < JobStatus.CONFIGURING:
                    svc.store.transition(job_id, current, JobStatus.CONFIGURING)
                    current = JobStatus.CONFIGURING
                outcome = Outcome(Kind.DATA_FAILED, reason)
                target = unworkable_failure(current)
                pipeline.end(svc.store, svc.workspace(job_id), current, target, outcome, 0)
                return
            workspace = backend.workspace(job_id)
            unpaid = self._unpaid_reason(job_id, current) if paid else None
            if unpaid is not None:
                pipeline.end(
                    svc.store,
                    workspace,
                    current,
                    JobStatus.STOPPED,
                    Outcome(Kind.DATA_FAILED, unpaid),
                    entry.env.storage_expiry,
                )
                return
            ctx = JobContext(
                job_id=job_id,
                request=request,
                env=entry.env,
                workspace=workspace,
                backend=backend,
                allow_non_public_ip=svc.allow_non_public_ip,
                is_cancelled=lambda: self._cancelled(job_id, lost),
                on_container=lambda cid: svc.store.update(job_id, container_id=cid),
                fetch_timeout=svc.fetch_timeout,
                storage=svc.storage,
                should_yield=svc.stopping.is_set,
                settlement=svc.settlement,
                registry_credential=svc.credential(entry.env.credentials_id),
                receipt_signer=svc.receipt_signer,
                paid=paid,
            )
            pipeline.execute(ctx, svc.store, current, start)
        except pipeline.Yielded:
            log.info("job %s left at a resumable status for another worker", job_id)
        except (TransitionError, pipeline.Cancelled):
            self.cleanup_interrupted(job_id)
        except Exception:
            log.exception("job %s failed in the worker", job_id)
            self.fail_unexpectedly(job_id)
        finally:
            done.set()
            svc.store.release(job_id, self.id)
            if paid is not False:
                self.settle_ended(job_id)

    def _unpaid_reason(self, job_id: str, current: JobStatus) -> str | None:
        """Why a paid job must not start (its escrow lock is gone or would expire before its
        longest run is claimed); None for unpaid jobs, jobs already past the start, and jobs
        whose lock holds."""
        settlement = self.services.settlement
        if settlement is None or current is not JobStatus.STARTED:
            return None
        return settlement.start_refusal(job_id)  # type: ignore[no-any-return]

    def settle_ended(self, job_id: str) -> None:
        """Settle the escrow lock of a paid job that ended at a terminal status (stopped,
        failed); a finished job settled at 71 already. Chain trouble leaves it to the sweep."""
        settlement = self.services.settlement
        if settlement is None:
            return
        try:
            row = self.services.store.row(job_id)
            if (row is None or JobStatus(row.status) in TERMINAL) and settlement.is_paid(job_id):
                settlement.settle(job_id)
        except Exception:
            log.warning("job %s: escrow settlement postponed", job_id, exc_info=True)

    def cleanup_interrupted(self, job_id: str) -> None:
        """After a stop or delete: remove containers; keep logs of a stopped job, nothing of a
        deleted one; touch nothing of a job another worker took over."""
        svc = self.services
        row = svc.store.row(job_id)
        if row is not None and row.status not in {int(s) for s in TERMINAL}:
            return  # taken over by another worker: it owns the job now
        self._remove_containers(job_id)
        if row is None:
            svc.workspace(job_id).remove()
            return
        workspace = svc.workspace_of(job_id, row.environment)
        if workspace.exists():
            record_logs(svc.store, workspace, f"{row.reason or 'stopped'} (status {row.status})")
            workspace.remove_inputs()
        entry = svc.registry.entries().get(row.environment)
        expiry = entry.env.storage_expiry if entry else 0
        svc.store.update(job_id, results_expire_at=utcnow() + timedelta(seconds=expiry))

    def fail_unexpectedly(self, job_id: str) -> None:
        svc = self.services
        row = svc.store.row(job_id)
        if row is None or JobStatus(row.status) in TERMINAL:
            self.cleanup_interrupted(job_id)
            return
        current = JobStatus(row.status)
        if current is JobStatus.SETTLING:
            return  # results are published; the sweep resumes the settlement
        self._remove_containers(job_id)
        target = CRASH_FAILURE[current]
        try:
            pipeline.end(
                svc.store,
                svc.workspace_of(job_id, row.environment),
                current,
                target,
                Outcome(Kind.RUN_FAILED, "internal engine error"),
                0,
            )
        except TransitionError:
            self.cleanup_interrupted(job_id)

    def _remove_containers(self, job_id: str) -> None:
        for backend in self.services.backends:
            try:
                for cid, _job in backend.containers(job_id):
                    backend.remove(cid)
            except BackendError:
                log.warning("cannot remove containers of job %s", job_id, exc_info=True)

    # -- recovery ----------------------------------------------------------------------------

    def sweep(self) -> int:
        """Recover abandoned jobs, then reconcile containers, folders, expiry and draining
        environments against the store. Returns how many jobs it recovered."""
        svc = self.services
        recovered = 0
        try:
            rows = svc.store.in_flight_rows()
        except Exception:
            log.exception("sweep: cannot read in-flight jobs")
            rows = []
        for row in rows:
            try:
                if not worker_is_dead(row, svc.lease_seconds):
                    continue
                if not svc.store.take_over(row.job_id, row.worker_id, self.id, svc.lease_seconds):
                    continue
                recovered += 1
                self.recover(row.job_id, JobStatus(row.status), row.worker_id)
            except Exception:
                log.exception("sweep: cannot recover job %s", row.job_id)
        reconcile(svc)
        if svc.settlement is not None:
            svc.settlement.sweep(self._job_status)
        return recovered

    def _job_status(self, job_id: str) -> JobStatus | None:
        row = self.services.store.row(job_id)
        return None if row is None else JobStatus(row.status)

    def recover(self, job_id: str, status: JobStatus, old_worker: str | None) -> None:
        """Resume a job this worker just took over, or end it with a reason."""
        svc = self.services
        start = resume_stage(status)
        log.warning("job %s at %d lost its worker %s; recovering", job_id, status, old_worker)
        request = svc.store.request_of(job_id)
        workspace = svc.workspace_of(job_id, request.environment if request else None)
        if start is not None:
            if workspace.exists():
                note = f"resumed at status {int(status)} after its worker was lost"
                workspace.append_log(PUBLISH_LOG, note)
            if svc.hand_off is None or not svc.hand_off(job_id, status, start, self.id):
                self.process(job_id, status, start)
            return
        self._remove_containers(job_id)
        entry = svc.registry.entries().get(request.environment) if request else None
        outcome = Outcome(
            Kind.RUN_FAILED,
            "the worker running this job was lost while the algorithm ran; "
            "the run was interrupted and is not repeated",
        )
        try:
            pipeline.end(
                svc.store,
                workspace,
                status,
                CRASH_FAILURE[status],  # an interrupted run: 41
                outcome,
                entry.env.storage_expiry if entry else 0,
            )
        except TransitionError:
            self.cleanup_interrupted(job_id)
        finally:
            svc.store.release(job_id, self.id)
