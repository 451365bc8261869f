"""An engine's worker threads: running them in-process, recovering jobs, and stopping.

:class:`WorkerThreads` is the part of :class:`operator_engine.api.Engine` that runs jobs:
embedded worker threads (``start``/``shutdown``), synchronous processing for tests
(``run_until_idle``), and the container and lease handling a stop needs. The facade's job and
environment calls live in :mod:`operator_engine.api`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from datastore.jobs import JobStore, TransitionError
from operator_engine.backends.base import BackendError, BackendRegistry
from operator_engine.leases import worker_is_dead
from operator_engine.lifecycle import Stage
from operator_engine.metrics import WORKERS
from operator_engine.statuses import TERMINAL, JobStatus
from operator_engine.wakeup import WakeListener, WakeSignal
from operator_engine.worker import Services, Worker

log = logging.getLogger("operator_engine.api")

#: Why a job whose algorithm still ran when the engine stopped ended at 7.
SHUTDOWN_REASON = "stopped: the provider shut down while the algorithm ran"
#: How long a stop waits for jobs that have not run yet to reach their next stage boundary.
PRE_RUN_GRACE = 2.0


class WorkerThreads:
    """Worker threads and stopping, mixed into the engine (which sets these attributes)."""

    store: JobStore
    backends: BackendRegistry
    services: Services
    wake_scope: str
    poll_seconds: float
    sweep_seconds: float
    _stopping: threading.Event
    _wake: WakeSignal
    _listener: WakeListener | None
    _cut_short: threading.Event
    _recovered: queue.SimpleQueue[tuple[str, JobStatus, Stage, str]]
    _threads: list[threading.Thread]
    _workers: list[Worker]
    _sync_worker: Worker | None

    def _kill(self, job_id: str, *, remove: bool = False) -> None:
        for backend in self.backends:
            try:
                for cid, _job in backend.containers(job_id):
                    backend.remove(cid) if remove else backend.kill(cid)
            except BackendError:
                log.warning("cannot reach the %s backend for job %s", backend.platform, job_id)

    def _await_release(self, job_id: str, wait: float) -> None:
        """Give the job's worker a moment to publish the logs of a stopped job; a dead worker's
        job is cleaned up here."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            row = self.store.row(job_id)
            if row is None or row.worker_id is None:
                return
            if worker_is_dead(row, self.services.lease_seconds):
                break
            time.sleep(0.05)
        helper = self._sync_worker or Worker(self.services, 99)
        helper.cleanup_interrupted(job_id)
        if helper is not self._sync_worker:
            helper.retire()

    # -- workers -----------------------------------------------------------------------------

    def start(self, workers: int) -> None:
        """Run ``workers`` background worker threads in this process and return at once: the
        first one sweeps (recovers abandoned jobs) before it claims, so a restart serves its API
        while recovered jobs run."""
        self._stopping.clear()
        self._cut_short.clear()
        self._listener = WakeListener(self.wake_scope, self._wake.set)
        self._listener.start()
        for n in range(workers):
            worker = Worker(self.services, n)
            thread = threading.Thread(
                target=self._loop, args=(worker, n == 0), name=f"tidewater-worker-{n}", daemon=True
            )
            self._workers.append(worker)
            self._threads.append(thread)
            thread.start()

    def _safe_sweep(self, worker: Worker) -> None:
        try:
            worker.sweep()
        except Exception:
            log.exception("sweep failed")

    def _hand_off(self, job_id: str, status: JobStatus, start: Stage, holder: str) -> bool:
        """Queue a job the sweep recovered for the next free worker thread (so recovered jobs
        run side by side and the sweep goes on); False without threads."""
        if not self._threads or self._stopping.is_set():
            return False
        self._recovered.put((job_id, status, start, holder))
        self._wake.set()
        return True

    def _run_recovered(self, worker: Worker) -> bool:
        try:
            job_id, status, start, holder = self._recovered.get_nowait()
        except queue.Empty:
            return False
        if holder != worker.id and not self.store.take_over(job_id, holder, worker.id):
            return True  # stopped, deleted or taken meanwhile: nothing to run
        worker.process(job_id, status, start)
        return True

    def _loop(self, worker: Worker, sweeper: bool) -> None:
        WORKERS.inc()
        try:
            self._work(worker, sweeper)
        finally:
            WORKERS.dec()

    def _work(self, worker: Worker, sweeper: bool) -> None:
        """Claim and run jobs back to back: a worker that ends a job looks for the next one at
        once; an idle one waits for a nudge (a job queued, capacity freed) or the poll."""
        next_sweep = time.monotonic()  # the sweeper's first act: recover what was abandoned
        while not self._stopping.is_set():
            seen = self._wake.mark()
            try:
                if self._run_recovered(worker) or worker.step():
                    self._wake.set()  # capacity freed: let the others look
                    continue
            except Exception:
                log.exception("worker %s: claim failed", worker.id)
            if sweeper and time.monotonic() >= next_sweep:
                self._safe_sweep(worker)
                next_sweep = time.monotonic() + self.sweep_seconds
            self._wake.wait(seen, self.poll_seconds)

    def shutdown(self, grace: float = 30.0) -> dict[str, str]:
        """Stop the worker threads; returns (and logs) what became of each job they held.

        No job is claimed any more. A job that has not run yet stops at its next stage boundary
        (10-30, lease released; waited for up to :data:`PRE_RUN_GRACE` s) and the next engine
        resumes it; a job past its run (50, 60) finishes. A running algorithm (40) gets
        ``grace`` seconds (none after :meth:`cut_short`) to finish; then its container is
        stopped and the job ends at 7 with the reason
        :data:`SHUTDOWN_REASON` and its logs as results. A stage still busy after that (a slow
        download) is left to the process exit: its lease dies with the process and the next
        engine resumes the job."""
        self._stopping.set()
        self._wake.set()
        mine = {worker.id for worker in self._workers}
        held = self._held(mine)
        if held:
            log.info(
                "engine stopping with %d job(s) in progress; running algorithms get %.0f s",
                len(held),
                grace,
            )
        began = time.monotonic()
        while self._alive() and not self._cut_short.is_set():
            waited = time.monotonic() - began
            if waited >= grace:
                break
            now_held = self._held(mine)
            held = {**now_held, **held}  # first seen status kept for the report
            if waited >= min(grace, PRE_RUN_GRACE) and all(
                s < JobStatus.RUNNING for s in now_held.values()
            ):
                break  # only jobs that have not run are left: they resume, no need to wait
            time.sleep(0.1)
        held = {**self._held(mine), **held}
        stopped = set()
        for job_id, status in self._held(mine).items():
            if status is JobStatus.RUNNING and self._stop_at_shutdown(job_id):
                stopped.add(job_id)
        # Idle threads leave within a poll; one still inside a stage (a slow download) is left
        # to the process exit: its job keeps its status and the next engine resumes it.
        release_by = time.monotonic() + 1.0
        for thread in self._threads:
            thread.join(max(release_by - time.monotonic(), 0))
        for worker in self._workers:
            worker.retire()
        self._threads.clear()
        self._workers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._sync_worker is not None:
            self._sync_worker.retire()
            self._sync_worker = None
        return self._report(held, stopped)

    def cut_short(self) -> None:
        """Make a running :meth:`shutdown` stop running algorithms now instead of waiting."""
        self._cut_short.set()

    def _alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _held(self, workers: set[str]) -> dict[str, JobStatus]:
        try:
            rows = self.store.in_flight_rows()
        except Exception:  # a store outage must not keep the process from stopping
            log.warning("cannot list the jobs in progress", exc_info=True)
            return {}
        return {row.job_id: JobStatus(row.status) for row in rows if row.worker_id in workers}

    def _stop_at_shutdown(self, job_id: str) -> bool:
        """End a job whose algorithm is still running at 7, container stopped, logs kept."""
        try:
            self.store.transition(
                job_id,
                JobStatus.RUNNING,
                JobStatus.STOPPED,
                detail=SHUTDOWN_REASON,
                reason=SHUTDOWN_REASON,
            )
        except TransitionError:
            return False  # it moved on by itself meanwhile
        self._kill(job_id)
        self._await_release(job_id, 10.0)
        return True

    def _report(self, held: dict[str, JobStatus], stopped: set[str]) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for job_id, was in held.items():
            row = self.store.row(job_id)
            if row is None:
                outcome = "deleted"
            elif job_id in stopped:
                outcome = f"stopped at shutdown: status 7 ({SHUTDOWN_REASON}), container removed"
            elif JobStatus(row.status) in TERMINAL:
                outcome = f"ended at status {row.status} before the shutdown"
            else:
                outcome = f"left at status {row.status}: it resumes when an engine starts"
            outcomes[job_id] = outcome
            log.info("job %s (at %d when the stop began): %s", job_id, int(was), outcome)
        return outcomes

    def run_until_idle(self, timeout: float = 120.0) -> int:
        """Process queued jobs in the calling thread until none is left that could run (tests).
        Returns how many jobs this call ran; raises TimeoutError past ``timeout``."""
        if self._sync_worker is None:
            self._sync_worker = Worker(self.services, 1000)
            self._safe_sweep(self._sync_worker)
        deadline = time.monotonic() + timeout
        ran = 0
        while True:
            if self._sync_worker.step():
                ran += 1
                continue
            if not self._has_pending_work():
                return ran
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still pending after {timeout}s")
            time.sleep(0.05)

    def _has_pending_work(self) -> bool:
        schedulable = self.services.schedulable_envs()
        live = {int(s) for s in JobStatus if s not in TERMINAL}
        for job_id in self.store.job_ids([JobStatus(s) for s in live]):
            row = self.store.row(job_id)
            if row is not None and row.environment in schedulable:
                return True
        return False
