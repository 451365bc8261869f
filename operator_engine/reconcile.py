"""The sweep's reconcile steps: Docker, the disk, result expiry and draining environments
brought in line with the store (the store row is the one truth, never the other way).

Each step runs on its own (:func:`reconcile`): one that fails is logged and the others still
run; inside a step each container or folder is handled on its own.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from operator_engine.lifecycle import finish_drains
from operator_engine.statuses import TERMINAL, JobStatus
from operator_engine.workspace import JobFolder, jobs_root

if TYPE_CHECKING:
    from operator_engine.worker import Services

log = logging.getLogger(__name__)

#: A job folder without a row is removed only when older than this: a submit saves the job's
#: file objects before it inserts the row.
ORPHAN_GRACE_SECONDS = 600.0


def reconcile(svc: Services) -> None:
    """Each step on its own: one that fails is logged and the others still run."""
    for step in (reconcile_containers, reconcile_folders, expire_results, finish_drains_of):
        try:
            step(svc)
        except Exception:
            log.exception("sweep: %s failed; the other steps still ran", step.__name__)


def reconcile_containers(svc: Services) -> None:
    """Remove containers of jobs that are gone, ended, or not at 40."""
    for cid, job_id in svc.runner.containers():
        try:
            row = svc.store.row(job_id)
            if row is None or row.status != int(JobStatus.RUNNING):
                svc.runner.remove(cid)
        except Exception:
            log.exception("sweep: cannot reconcile container %s of job %s", cid, job_id)


def reconcile_folders(svc: Services) -> None:
    """Remove folders of jobs that are gone (unless just saved by a submit that is still
    inserting its row) and the inputs of ended jobs."""
    terminal = {int(s) for s in TERMINAL}
    root = jobs_root(svc.data_dir)
    if not root.is_dir():
        return
    for child in root.iterdir():
        try:
            row = svc.store.row(child.name)
            if row is None:
                if time.time() - child.lstat().st_mtime > ORPHAN_GRACE_SECONDS:
                    JobFolder(child.resolve()).remove()
            elif row.status in terminal:
                JobFolder(child.resolve()).remove_inputs()
        except Exception:
            log.exception("sweep: cannot reconcile folder %s", child)


def expire_results(svc: Services) -> None:
    """Remove the folders and result rows of jobs whose results passed their expiry."""
    for job_id in svc.store.expired():
        try:
            svc.folder(job_id).remove()
            svc.store.clear_results(job_id)
        except Exception:
            log.exception("sweep: cannot expire the results of job %s", job_id)


def finish_drains_of(svc: Services) -> None:
    """Delete draining environments whose jobs have all ended (:func:`finish_drains`)."""
    finish_drains(svc.store)
